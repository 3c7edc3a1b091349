//! Replays every input of each fuzz target's minimised corpus (fuzz/corpus/<target>/, kept in
//! the tree) and every input a target ever failed on (tests/fuzz/<target>/, one file each)
//! through the same property the target checks (tests/it/support/fuzz_props.rs). A new crash
//! found by `cargo fuzz run` is copied to tests/fuzz, fixed, and stays fixed; the corpus makes
//! plain `cargo test` walk what the fuzzer reached. docs/fuzzing.md.

use crate::support::{fuzz_props, repo};

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut inputs: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    inputs.sort();
    inputs
}

fn replay(target: &str, property: fn(&[u8])) {
    let corpus = inputs(&repo().join("fuzz/corpus").join(target));
    // A corpus that is gone would make this a test of nothing.
    assert!(
        corpus.len() >= 20,
        "fuzz/corpus/{target} holds {} inputs: it is the target's minimised corpus \
         (docs/fuzzing.md says how to make it)",
        corpus.len()
    );
    let regressions = inputs(&repo().join("tests/fuzz").join(target));
    for input in regressions.iter().chain(&corpus) {
        let data = std::fs::read(input).unwrap();
        let outcome = std::panic::catch_unwind(|| property(&data));
        assert!(
            outcome.is_ok(),
            "{} breaks the {target} property",
            input.display()
        );
    }
    eprintln!(
        "{target}: {} regression inputs and {} corpus inputs replayed",
        regressions.len(),
        corpus.len()
    );
}

#[test]
fn parse_check_corpus_and_regressions() {
    replay("parse_check", fuzz_props::parse_check);
}

#[test]
fn fix_corpus_and_regressions() {
    replay("fix", fuzz_props::fix_recheck);
}

#[test]
fn hook_verdict_corpus_and_regressions() {
    replay("hook", fuzz_props::hook_verdict);
}
