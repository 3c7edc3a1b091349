//! `phbguard fix` on every rule case and example domain, against golden files beside them:
//! `<name>.xml` is the input, `<name>.fix` what fix must say and do with it: its exit code, the
//! changes it lists, and the unified diff it prints. Compliant inputs have no `.fix` file and
//! must come out byte-identical.
//!
//! `PHBGUARD_BLESS=1 cargo test --test it fix_cases::` rewrites the `.fix` files that differ from
//! what the binary does now, and fails naming them (crates/testkit/src/golden.rs); review the diff before
//! committing it.

use crate::support::{self, golden};

use std::path::{Path, PathBuf};

fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "xml"))
        .flat_map(|p| if p.is_dir() { xml_files(&p) } else { vec![p] })
        .collect();
    files.sort();
    files
}

/// The path as the test names it on the command line: relative to the repository, which is
/// the directory cargo runs tests in, so diff headers do not depend on the checkout.
fn relative(path: &Path) -> String {
    path.strip_prefix(support::repo())
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// What the `.fix` file holds for one run of `fix --diff`.
fn golden_text(file: &str, out: &std::process::Output) -> String {
    let prefix = format!("phbguard: {file}: ");
    let mut text = format!("exit {}\n", out.status.code().unwrap());
    for line in support::stderr(out).lines() {
        text.push_str(line.strip_prefix(&prefix).unwrap_or(line));
        text.push('\n');
    }
    let diff = support::stdout(out);
    if !diff.is_empty() {
        text.push('\n');
        text.push_str(&diff);
    }
    text
}

fn fix_cases(files: &[PathBuf], sysfs: &str) -> usize {
    let mut failures = Vec::new();
    let mut fixed_count = 0;
    for path in files {
        let file = relative(path);
        let input = std::fs::read(path).unwrap();
        let check = support::run(&["check", "--sysfs-root", sysfs, &file], b"");
        let golden_file = path.with_extension("fix");
        let plain = support::run(&["fix", "--sysfs-root", sysfs, &file], b"");
        if check.status.code() == Some(0) {
            // It says so, and nothing else.
            let said = format!("phbguard: {file}: already compliant, nothing to change\n");
            if plain.stdout != input || support::stderr(&plain) != said || plain.status.code() != Some(0) {
                failures.push(format!(
                    "{file}: compliant, but fix changed it or said more: {}",
                    support::stderr(&plain)
                ));
            }
            if golden_file.exists() {
                failures.push(format!(
                    "{file}: compliant, but has a stale {}",
                    golden_file.display()
                ));
            }
            continue;
        }
        let diff = support::run(&["fix", "--diff", "--sysfs-root", sysfs, &file], b"");
        if let Err(e) = golden::check(&golden_file, &golden_text(&file, &diff)) {
            failures.push(e);
            continue;
        }
        match plain.status.code() {
            Some(0) => {
                fixed_count += 1;
                // What fix prints must check clean but for the host's state (drivers), which
                // fix does not change; its diff must turn the input into it.
                let recheck = support::run(
                    &["check", "--format", "json", "--sysfs-root", sysfs, "-"],
                    &plain.stdout,
                );
                let json: serde_json::Value = serde_json::from_slice(&recheck.stdout).unwrap();
                let errors: Vec<String> = support::finding_lines(&json)
                    .into_iter()
                    .filter(|l| l.starts_with("error ") && !l.starts_with("error iommu-group-not-viable "))
                    .collect();
                if !errors.is_empty() {
                    failures.push(format!("{file}: fixed XML still fails: {errors:?}"));
                }
                let patched = golden::apply_patch(&input, &diff.stdout);
                if patched != plain.stdout {
                    failures.push(format!("{file}: the diff does not produce the fixed XML"));
                }
            }
            Some(1) => {
                if !plain.stdout.is_empty() {
                    failures.push(format!("{file}: cannot be fixed, yet XML was printed"));
                }
            }
            other => failures.push(format!("{file}: exit {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    fixed_count
}

#[test]
fn rule_cases_are_fixed_as_their_fix_files_say() {
    let host = support::case_host();
    let files = xml_files(&support::repo().join("tests/cases"));
    let fixed = fix_cases(&files, host.path_str());
    assert!(fixed >= 10, "only {fixed} rule cases were fixed");
}

#[test]
fn example_domains_are_fixed_as_their_fix_files_say() {
    let examples = support::repo().join("examples");
    let files = xml_files(&examples.join("domains"));
    let fixed = fix_cases(&files, examples.join("sysfs").to_str().unwrap());
    assert!(fixed >= 6, "only {fixed} examples were fixed");
}
