//! The rule cases: `tests/cases/<rule>/<name>.xml` beside `<name>.findings`, the findings
//! `phbguard check` must report (`SEVERITY RULE DEVICE` per line), and `<name>.report`, its whole
//! text report (as clippy keeps a `.stderr`: a reworded message or a moved line shows in review),
//! and `<name>.topology`, the `topology` of its JSON report (PHBs, bridges, devices),
//! judged by the real binary on a fake sysfs built from `tests/cases/host.txt`. The example
//! domains under `examples/` are held to the same standard with their own sysfs tree.
//!
//! `PHBGUARD_BLESS=1 cargo test --test it cases::` rewrites the `.findings`, `.report` and
//! `.topology` files that differ from what the binary reports now, and fails naming them
//! (crates/testkit/src/golden.rs); review the diff before committing it.

use crate::support::{self, golden};

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A `.findings` file's text for these findings: one per line.
fn findings_text(findings: &[String]) -> String {
    findings.iter().map(|f| format!("{f}\n")).collect()
}

fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    files
}

/// The text report of `phbguard check` on `xml`, run from its directory so that the report
/// names it as an admin would have typed it.
fn text_report(sysfs: &str, xml: &Path) -> String {
    let out = support::Run::new(support::bin())
        .args(["check", "--sysfs-root", sysfs])
        .arg(xml.file_name().unwrap())
        .current_dir(xml.parent().unwrap())
        .output();
    support::stdout(&out)
}

/// Checks every XML file under `dirs` against its `.findings`; returns what each reported.
fn check_cases(dirs: &[PathBuf], sysfs: &str) -> Vec<(PathBuf, Vec<String>)> {
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for xml in dirs.iter().flat_map(|d| xml_files(d)) {
        let (out, json) = support::check_json(sysfs, xml.to_str().unwrap());
        let got = support::finding_lines(&json);
        let report = text_report(sysfs, &xml);
        failures.extend(golden::check(&xml.with_extension("report"), &report).err());
        // The `topology` of the JSON report, as the rules saw it: what a drawing of the guest
        // (the Cockpit page) and scripts read.
        let topology = format!(
            "{}\n",
            serde_json::to_string_pretty(&json["results"][0]["topology"]).unwrap()
        );
        failures.extend(golden::check(&xml.with_extension("topology"), &topology).err());
        failures.extend(golden::check(&xml.with_extension("findings"), &findings_text(&got)).err());
        let want_code = if got.iter().any(|l| l.starts_with("error ")) {
            1
        } else {
            0
        };
        if out.status.code() != Some(want_code) {
            failures.push(format!(
                "{}: exit {:?}, expected {want_code}",
                xml.display(),
                out.status.code()
            ));
        }
        seen.push((xml, got));
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    seen
}

#[test]
fn every_rule_case_reports_exactly_its_findings() {
    let root = support::repo().join("tests/cases");
    let host = support::case_host();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let results = check_cases(&dirs, host.path_str());

    // Every rule of the catalogue has a folder with a case that fires it and one that does not.
    let rules = support::run(&["rules", "--format", "json"], b"");
    let rules: Value = serde_json::from_slice(&rules.stdout).unwrap();
    for rule in rules["rules"].as_array().unwrap() {
        let id = rule["id"].as_str().unwrap();
        let severity = rule["severity"].as_str().unwrap();
        // Judged through a libvirt connection only: crates/libvirt/tests/it/audit.rs has their cases.
        if rule["needs_libvirt"] == Value::Bool(true) {
            continue;
        }
        let dir = root.join(id);
        let cases: Vec<&(PathBuf, Vec<String>)> =
            results.iter().filter(|(p, _)| p.starts_with(&dir)).collect();
        let fires = |(_, got): &&(PathBuf, Vec<String>)| {
            got.iter().any(|l| l.starts_with(&format!("{severity} {id} ")))
        };
        assert!(
            cases.iter().any(fires),
            "no case in {} reports {id}",
            dir.display()
        );
        assert!(
            !cases.iter().all(fires),
            "no case in {} passes {id}",
            dir.display()
        );
    }
}

#[test]
fn example_domains_report_what_their_findings_files_say() {
    let examples = support::repo().join("examples");
    let domains = examples.join("domains");
    if !domains.is_dir() {
        panic!("examples/domains is missing");
    }
    let results = check_cases(&[domains], examples.join("sysfs").to_str().unwrap());
    assert!(results.len() >= 8, "only {} examples", results.len());
}
