//! The manifest's user-facing messages as reviewable text, like Spin's
//! manifest UI tests: every `ui/invalid/*.toml` is refused with exactly the
//! message in the `.err` file next to it, and every `ui/valid/*.toml` loads.
//!
//! Adding a case is adding a `.toml`; run `UI_BLESS=1 cargo test -p
//! ping-manifest --test ui` to write its `.err`, then review the message.
//! Component sources resolve against a directory holding `c.wasm`, shown as
//! `$DIR` in messages.

use std::path::{Path, PathBuf};

use ping_manifest::manifest;

fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ui")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/ui exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    files
}

/// Parses `case` as `spin.toml` next to a `c.wasm`; the error with the
/// directory written as `$DIR`.
fn outcome(case: &Path) -> Result<ping_manifest::app::App, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.wasm"), b"\0asm").expect("write");
    let text = std::fs::read_to_string(case).expect("read case");
    manifest::parse(&text, Path::new("spin.toml"), dir.path()).map_err(|e| {
        e.to_string()
            .replace(&dir.path().display().to_string(), "$DIR")
    })
}

#[test]
fn invalid_manifests_are_refused_with_the_recorded_message() {
    let bless = std::env::var_os("UI_BLESS").is_some();
    let mut wrong = Vec::new();
    for case in cases("invalid") {
        let expected_file = case.with_extension("err");
        let Err(message) = outcome(&case) else {
            wrong.push(format!("{}: was accepted", case.display()));
            continue;
        };
        if bless {
            std::fs::write(&expected_file, format!("{message}\n")).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if expected.trim_end() != message {
            wrong.push(format!(
                "{}:\n  expected: {}\n  got:      {message}",
                case.display(),
                expected.trim_end()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n(UI_BLESS=1 rewrites the .err files)",
        wrong.join("\n")
    );
}

#[test]
fn valid_manifests_load() {
    for case in cases("valid") {
        if let Err(e) = outcome(&case) {
            panic!("{}: {e}", case.display());
        }
    }
}
