//! Where an installed binary finds its files at run time. Nothing here depends on where the
//! source was compiled: a binary copied to another machine looks beside itself, then in the
//! working directory and the directories above it (a checkout, wherever it lives).

use std::path::{Path, PathBuf};

use crate::CATALOGUE;

/// Environment variable that overrides the models directory.
pub const DIR_ENV: &str = "POLYLINK_MODELS_DIR";

/// The first directory `rel` (e.g. `models`, `data/tiqe`) that `is_ours` accepts, among, in
/// order: `<exe dir>/../share/polylink/<rel>` (an installed prefix), `<exe dir>/<rel>` (an
/// unpacked archive), and `<rel>` under the working directory or any directory above it (a
/// checkout). `is_ours` tells this project's directory from a namesake (`crates/models` is not
/// the models directory).
pub fn find_installed(rel: &str, is_ours: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    let cwd = std::env::current_dir().ok();
    candidates(rel, exe_dir.as_deref(), cwd.as_deref()).find(|p| p.is_dir() && is_ours(p))
}

/// The places [`find_installed`] tries, best first.
fn candidates<'a>(
    rel: &'a str,
    exe_dir: Option<&'a Path>,
    cwd: Option<&'a Path>,
) -> impl Iterator<Item = PathBuf> + 'a {
    let beside_exe =
        exe_dir.into_iter().flat_map(move |d| [d.join("../share/polylink").join(rel), d.join(rel)]);
    let above_cwd = cwd.into_iter().flat_map(Path::ancestors).map(move |d| d.join(rel));
    beside_exe.chain(above_cwd)
}

/// The models directory: `$POLYLINK_MODELS_DIR`, else the first `models/` holding a catalogue
/// model that [`find_installed`] finds, else `models/` in the working directory (where
/// `polylink models fetch` creates it).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DIR_ENV) {
        return PathBuf::from(dir);
    }
    let holds_a_model = |d: &Path| CATALOGUE.iter().any(|m| d.join(m.id).is_dir());
    let dir = find_installed("models", holds_a_model).unwrap_or_else(|| PathBuf::from("models"));
    // Tidy the path for messages when it exists; the plain form works either way.
    dir.canonicalize().unwrap_or(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_beside_the_binary_first_then_up_from_the_working_directory() {
        let tried: Vec<PathBuf> =
            candidates("data/tiqe", Some(Path::new("/opt/pl/bin")), Some(Path::new("/home/u/src"))).collect();
        let want = [
            "/opt/pl/bin/../share/polylink/data/tiqe",
            "/opt/pl/bin/data/tiqe",
            "/home/u/src/data/tiqe",
            "/home/u/data/tiqe",
            "/home/data/tiqe",
            "/data/tiqe",
        ];
        assert_eq!(tried, want.map(PathBuf::from));
    }

    #[test]
    fn finds_this_checkouts_data_from_a_crate_directory() {
        // Tests run in the crate's directory; the checkout's `data/tiqe` is two levels up.
        let found = find_installed("data/tiqe", |d| d.join("SHA256SUMS").is_file());
        assert!(found.is_some_and(|p| p.ends_with("data/tiqe")));
        // This crate's own directory is a `models` above the working directory; only the test
        // of what it holds keeps it from being taken for the models directory.
        let namesake = find_installed("models", |d| d.join("Cargo.toml").is_file());
        assert!(namesake.is_some_and(|p| p.ends_with("crates/models")));
        assert!(!default_dir().ends_with("crates/models"));
        assert_eq!(find_installed("no/such/dir/anywhere", |_| true), None);
    }
}
