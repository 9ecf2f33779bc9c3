#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The fetch pipeline end to end through real pip, against a local package index built by the
//! test (no traffic leaves the machine): download, unpack, join, verify, atomic install,
//! idempotence and repair of a corrupted file.

use polylink_models::{Error, FileSpec, ModelSpec, Outcome, Package, PipOptions, fetch_with, sha256_file};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const PART_A: &[u8] = b"first half of a model file\n";
const PART_B: &[u8] = b"second half of a model file\n";

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Writes `name-1.0.0-py3-none-any.whl` into `index`, holding `files` (path, bytes).
fn build_wheel(index: &Path, name: &str, files: &[(&str, &[u8])]) {
    let module = name.replace('-', "_");
    let root = index.join(format!("src-{module}"));
    let dist_info = root.join(format!("{module}-1.0.0.dist-info"));
    fs::create_dir_all(&dist_info).unwrap();
    fs::write(dist_info.join("METADATA"), format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n"))
        .unwrap();
    fs::write(dist_info.join("WHEEL"), "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        .unwrap();
    fs::write(dist_info.join("RECORD"), "").unwrap();
    for (path, bytes) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    let wheel = index.join(format!("{module}-1.0.0-py3-none-any.whl"));
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "zipfile", "-c"]).arg(&wheel);
    for entry in fs::read_dir(&root).unwrap() {
        cmd.arg(entry.unwrap().path());
    }
    assert!(cmd.status().unwrap().success(), "building the test wheel failed");
}

struct Setup {
    _tmp: tempfile::TempDir,
    index: PathBuf,
    models: PathBuf,
    pip: PipOptions,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let models = tmp.path().join("models");
    fs::create_dir_all(&index).unwrap();
    let joined = [PART_A, PART_B].concat();
    let sums = format!("{}  tiny.gguf\n", sha_hex(&joined));
    build_wheel(&index, "polylink-tiny-meta", &[("polylink_tiny_meta/SHA256SUMS", sums.as_bytes())]);
    build_wheel(&index, "polylink-tiny-part1", &[("polylink_tiny_part1/tiny.gguf.part00", PART_A)]);
    build_wheel(&index, "polylink-tiny-part2", &[("polylink_tiny_part2/tiny.gguf.part01", PART_B)]);
    let pip = PipOptions {
        extra_args: vec!["--no-index".into(), "--find-links".into(), index.display().to_string()],
    };
    Setup { _tmp: tmp, index, models, pip }
}

fn spec(sha256: &'static str) -> ModelSpec {
    ModelSpec {
        id: "tiny",
        description: "test model",
        packages: &[
            Package { name: "polylink-tiny-meta", version: "1.0.0" },
            Package { name: "polylink-tiny-part1", version: "1.0.0" },
            Package { name: "polylink-tiny-part2", version: "1.0.0" },
        ],
        files: Box::leak(Box::new([FileSpec {
            name: "tiny.gguf",
            members: &["polylink_tiny_part1/tiny.gguf.part00", "polylink_tiny_part2/tiny.gguf.part01"],
            sha256,
            upstream_sums: Some("polylink_tiny_meta/SHA256SUMS"),
        }])),
    }
}

fn only_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn fetches_once_then_does_nothing_then_repairs_corruption() {
    let s = setup();
    let joined = [PART_A, PART_B].concat();
    let spec = spec(leak(sha_hex(&joined)));
    let installed = s.models.join("tiny/tiny.gguf");

    let out = fetch_with(&s.models, &[spec], &s.pip, &mut |_| {}).unwrap();
    assert_eq!(out, vec![("tiny", Outcome::Fetched)]);
    assert_eq!(fs::read(&installed).unwrap(), joined);
    assert_eq!(only_entries(&s.models), vec![".fetch.lock", "tiny"], "no staging left behind");

    // Second run: with the index gone, any download attempt would fail, so success proves a no-op.
    fs::remove_dir_all(&s.index).unwrap();
    let out = fetch_with(&s.models, &[spec], &s.pip, &mut |_| {}).unwrap();
    assert_eq!(out, vec![("tiny", Outcome::Present)]);

    // Corrupt one byte: the next run must notice; with no index it reports the download failure
    // and leaves the corrupt file where it was rather than a half-written one.
    let mut bytes = fs::read(&installed).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&installed, &bytes).unwrap();
    let err = fetch_with(&s.models, &[spec], &s.pip, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::DownloadFailed { ref package, .. } if package == "polylink-tiny-meta"),
        "{err}"
    );
    assert_eq!(only_entries(&s.models), vec![".fetch.lock", "tiny"]);

    // With the index back, the corrupt file is replaced by a verified one.
    let s2 = setup();
    let out = fetch_with(&s.models, &[spec], &s2.pip, &mut |_| {}).unwrap();
    assert_eq!(out, vec![("tiny", Outcome::Replaced(vec!["tiny.gguf".to_string()]))]);
    assert_eq!(sha256_file(&installed).unwrap(), sha_hex(&joined));
}

#[test]
fn a_checksum_that_does_not_match_the_pin_installs_nothing() {
    let s = setup();
    let wrong = leak("0".repeat(64));
    let err = fetch_with(&s.models, &[spec(wrong)], &s.pip, &mut |_| {}).unwrap_err();
    match err {
        Error::ChecksumMismatch { expected, actual, .. } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, sha_hex(&[PART_A, PART_B].concat()));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(!s.models.join("tiny/tiny.gguf").exists(), "an unverified file must never be installed");
    assert_eq!(only_entries(&s.models), vec![".fetch.lock", "tiny"]);
}

#[test]
fn the_package_checksum_list_is_checked_too() {
    let s = setup();
    // Rebuild the meta wheel with a checksum list that disagrees with the parts.
    fs::remove_dir_all(&s.index).unwrap();
    fs::create_dir_all(&s.index).unwrap();
    let bogus = format!("{}  tiny.gguf\n", "f".repeat(64));
    build_wheel(&s.index, "polylink-tiny-meta", &[("polylink_tiny_meta/SHA256SUMS", bogus.as_bytes())]);
    build_wheel(&s.index, "polylink-tiny-part1", &[("polylink_tiny_part1/tiny.gguf.part00", PART_A)]);
    build_wheel(&s.index, "polylink-tiny-part2", &[("polylink_tiny_part2/tiny.gguf.part01", PART_B)]);
    let spec = spec(leak(sha_hex(&[PART_A, PART_B].concat())));
    let err = fetch_with(&s.models, &[spec], &s.pip, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { ref what, .. } if what.contains("SHA256SUMS")), "{err}");
    assert!(!s.models.join("tiny/tiny.gguf").exists());
}

#[test]
fn an_unknown_package_is_a_clear_download_error() {
    let s = setup();
    let mut spec = spec(leak(sha_hex(&[PART_A, PART_B].concat())));
    spec.packages = &[Package { name: "polylink-no-such-package", version: "9.9.9" }];
    let err = fetch_with(&s.models, &[spec], &s.pip, &mut |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("polylink-no-such-package==9.9.9"), "{text}");
}

#[test]
fn locate_points_at_the_fetch_command_when_a_model_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let err =
        polylink_models::locate(tmp.path(), polylink_models::SMOLLM2_135M, "SmolLM2-135M-Instruct.Q4_1.gguf")
            .unwrap_err();
    assert!(err.to_string().contains("polylink models fetch"), "{err}");
    let err = polylink_models::locate(tmp.path(), "gpt-5", "x").unwrap_err();
    assert!(matches!(err, Error::UnknownModel(_)));
}
