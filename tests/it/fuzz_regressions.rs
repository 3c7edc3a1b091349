//! Replays every input a fuzz target ever failed on (tests/fuzz/<target>/, one file each)
//! through the same property the target checks (tests/it/support/fuzz_props.rs). A new crash
//! found by `cargo fuzz run` is copied here, fixed, and stays fixed. docs/fuzzing.md.

use crate::support::fuzz_props;

use std::path::Path;

fn replay(target: &str, property: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    inputs.sort();
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        let outcome = std::panic::catch_unwind(|| property(&data));
        assert!(
            outcome.is_ok(),
            "{} breaks the {target} property",
            input.display()
        );
    }
    eprintln!("{target}: {} regression inputs replayed", inputs.len());
}

#[test]
fn parse_check_regressions() {
    replay("parse_check", fuzz_props::parse_check);
}

#[test]
fn fix_regressions() {
    replay("fix", fuzz_props::fix_recheck);
}

#[test]
fn hook_verdict_regressions() {
    replay("hook", fuzz_props::hook_verdict);
}
