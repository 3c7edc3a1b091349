//! `phbguard fix` with several files, as `check` takes them: where each result goes, and an
//! exit code that reports the worst file.

use crate::support::{self, golden};

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

const BROKEN: &str = "examples/domains/hostdev-on-default-phb.xml";
const BROKEN_TOO: &str = "examples/domains/phb-mixes-iommu-groups.xml";
const COMPLIANT: &str = "examples/domains/compliant-db01.xml";

fn fix(args: &[&str]) -> Output {
    let sysfs = support::repo().join("examples/sysfs");
    let mut all = vec!["fix", "--sysfs-root", sysfs.to_str().unwrap()];
    all.extend(args);
    support::run(&all, b"")
}

/// Copies of examples in one fresh directory, named as the examples are.
fn scratch(examples: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = examples
        .iter()
        .map(|e| {
            let path = dir.path().join(PathBuf::from(e).file_name().unwrap());
            fs::copy(support::repo().join(e), &path).unwrap();
            path
        })
        .collect();
    (dir, paths)
}

#[test]
fn several_files_without_in_place_or_diff_is_a_usage_error_naming_the_ways() {
    let out = fix(&[BROKEN, BROKEN_TOO]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = support::stderr(&out);
    for way in ["--in-place", "--diff", "--format json"] {
        assert!(err.contains(way), "{err}");
    }
}

#[test]
fn in_place_rewrites_every_file_and_leaves_a_compliant_one_alone() {
    let (_dir, paths) = scratch(&[BROKEN, BROKEN_TOO, COMPLIANT]);
    let names: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let compliant_before = fs::metadata(&paths[2]).unwrap().modified().unwrap();
    let mut args = vec!["-i"];
    args.extend(&names);
    let out = fix(&args);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert!(out.stdout.is_empty());
    let err = support::stderr(&out);
    assert!(err.contains(&format!("{}: already compliant", names[2])), "{err}");
    for (path, example) in paths.iter().zip([BROKEN, BROKEN_TOO]) {
        // Each file gets what fixing it alone gives: what its `.fix` golden file says.
        let xml = support::repo().join(example);
        let alone = golden::fixed(&xml, &fs::read(&xml).unwrap());
        assert_eq!(fs::read(path).unwrap(), alone, "{}", path.display());
    }
    assert_eq!(
        fs::metadata(&paths[2]).unwrap().modified().unwrap(),
        compliant_before
    );
}

#[test]
fn diff_of_several_files_is_one_patch_with_a_header_per_file() {
    let out = fix(&["--diff", BROKEN, COMPLIANT, BROKEN_TOO]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let text = support::stdout(&out);
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("--- ")).collect();
    assert_eq!(headers, [format!("--- {BROKEN}"), format!("--- {BROKEN_TOO}")]);
    // Each file's diff as fixing it alone gives it: what its `.fix` golden file holds.
    let alone: String = [BROKEN, BROKEN_TOO]
        .iter()
        .map(|e| golden::fix_diff(&support::repo().join(e)))
        .collect();
    assert_eq!(text, alone);
}

#[test]
fn the_worst_file_decides_the_exit_code_and_the_others_are_still_fixed() {
    let (dir, paths) = scratch(&[BROKEN]);
    let missing = dir.path().join("missing.xml");
    let out = fix(&["-i", missing.to_str().unwrap(), paths[0].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::stderr(&out).contains("missing.xml"));
    let xml = support::repo().join(BROKEN);
    assert_eq!(
        fs::read(&paths[0]).unwrap(),
        golden::fixed(&xml, &fs::read(&xml).unwrap())
    );

    // An x86 guest with two pci-roots cannot be fixed: 1.
    let unfixable = "tests/cases/multiple-pci-roots/fail-x86-i440fx.xml";
    assert_eq!(fix(&[unfixable]).status.code(), Some(1));
    assert_eq!(fix(&["--diff", unfixable, BROKEN]).status.code(), Some(1));
    assert_eq!(
        fix(&["--diff", unfixable, missing.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn json_gives_one_object_per_line_and_an_unreadable_file_its_error() {
    let out = fix(&["--format", "json", BROKEN, "no-such-file.xml", COMPLIANT]);
    assert_eq!(out.status.code(), Some(2));
    let reports: Vec<Value> = support::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0]["file"], BROKEN);
    assert_eq!(reports[0]["changed"], true);
    assert_eq!(reports[1]["file"], "no-such-file.xml");
    assert!(
        reports[1]["error"].as_str().unwrap().contains("No such file"),
        "{}",
        reports[1]
    );
    assert_eq!(reports[2]["file"], COMPLIANT);
    assert_eq!(reports[2]["changed"], false);
}

#[test]
fn standard_input_is_refused_twice_and_with_in_place() {
    assert_eq!(fix(&["--diff", "-", "-"]).status.code(), Some(2));
    assert_eq!(fix(&["-i", BROKEN, "-"]).status.code(), Some(2));
}
