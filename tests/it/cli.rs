//! The `phbguard` binary as admins and scripts use it: output formats, exit codes, and bad
//! input that must end in one clear line and exit 2, never a panic or a hang.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::{run, stderr, stdout};

const COMPLIANT: &str = "tests/cases/hostdev-on-default-phb/pass-own-phb.xml";
const BAD: &str = "tests/cases/hostdev-on-default-phb/fail-vfio-on-bus0.xml";

fn repo_path(p: &str) -> String {
    support::repo().join(p).to_str().unwrap().to_string()
}

fn host() -> support::FakeSysfs {
    support::FakeSysfs::new()
        .device("0002:02:00.0", Some(8), Some(1))
        .device("0005:90:01.0", Some(7), None)
}

/// Asserts exit 2 with exactly one stderr line that names `file` and contains `what`.
fn assert_bad_input(args: &[&str], stdin: &[u8], file: &str, what: &str) {
    let out = run(args, stdin);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
    assert!(err.contains(file), "{args:?}: {err:?} does not name {file}");
    assert!(err.contains(what), "{args:?}: {err:?} does not say {what:?}");
    assert!(!err.contains("panicked"), "{err}");
}

fn write_temp(dir: &Path, name: &str, content: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn text_report_names_file_line_severity_rule_and_device() {
    let sysfs = host();
    let bad = repo_path(BAD);
    let out = run(&["check", "--sysfs-root", sysfs.path_str(), &bad], b"");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    // Line 27 is the <hostdev> start tag.
    assert!(
        first.starts_with(&format!(
            "{bad}:27: error[hostdev-on-default-phb]: \
             hostdev 0002:02:00.0 at 0000:00:05.0 is on the default PHB"
        )),
        "{first}"
    );
    assert!(
        text.contains("1 domain checked: 1 error, 0 warnings (1 domain not compliant)"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "colour on a pipe: {text:?}");
}

#[test]
fn compliant_domain_exits_zero_with_a_summary() {
    let sysfs = host();
    let out = run(
        &["check", "--sysfs-root", sysfs.path_str(), &repo_path(COMPLIANT)],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1 domain checked: 0 errors, 0 warnings\n");
}

#[test]
fn json_report_has_the_contract_shape() {
    let sysfs = host();
    let bad = repo_path(BAD);
    let out = run(
        &[
            "check",
            "--format",
            "json",
            "--sysfs-root",
            sysfs.path_str(),
            &bad,
            &repo_path(COMPLIANT),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let r = &results[0];
    assert_eq!(r["file"], bad.as_str());
    assert_eq!(r["domain"], "hostdev-on-default-phb-fail-vfio-on-bus0");
    assert_eq!(r["uuid"], "c0ffee00-0000-4000-8000-000000000017");
    assert_eq!(r["pseries"], true);
    let f = &r["findings"][0];
    assert_eq!(f["rule"], "hostdev-on-default-phb");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["device"], "hostdev 0002:02:00.0 at 0000:00:05.0");
    assert_eq!(f["line"], 27);
    assert!(f["message"].as_str().unwrap().contains("default PHB"));
    assert_eq!(results[1]["findings"], serde_json::json!([]));
}

#[test]
fn stdin_is_read_for_dash() {
    let sysfs = host();
    let xml = std::fs::read(repo_path(BAD)).unwrap();
    let out = run(
        &["check", "--format", "json", "--sysfs-root", sysfs.path_str(), "-"],
        &xml,
    );
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["results"][0]["file"], "-");
    let text = run(&["check", "--sysfs-root", sysfs.path_str(), "-"], &xml);
    assert!(
        stdout(&text).starts_with("<stdin>:27: error[hostdev-on-default-phb]: "),
        "{}",
        stdout(&text)
    );
}

#[test]
fn unreadable_file_among_good_ones_exits_2_and_still_reports_the_rest() {
    let sysfs = host();
    let out = run(
        &[
            "check",
            "--sysfs-root",
            sysfs.path_str(),
            "/nonexistent/db.xml",
            &repo_path(BAD),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("error[hostdev-on-default-phb]"));
    assert!(stdout(&out).contains("1 file could not be read"));
    assert!(stderr(&out).starts_with("phbguard: /nonexistent/db.xml: cannot read it: "));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = std::fs::read_to_string(repo_path(BAD)).unwrap();

    let f = write_temp(d, "empty.xml", b"");
    assert_bad_input(&["check", &f], b"", &f, "empty document");

    let f = write_temp(d, "truncated.xml", &good.as_bytes()[..good.len() / 2]);
    assert_bad_input(&["check", &f], b"", &f, "XML");

    let f = write_temp(d, "prose.xml", b"this is not XML at all\n");
    assert_bad_input(&["check", &f], b"", &f, "malformed XML");

    // Where: the line, and the reader's words whole (they name both elements).
    let f = write_temp(
        d,
        "mismatched.xml",
        b"<domain type='kvm'>\n  <devices>\n    <bogus>\n    </source>\n  </devices>\n</domain>\n",
    );
    assert_bad_input(
        &["check", &f],
        b"",
        &f,
        "malformed XML at line 4 (byte 48): ill-formed document: expected `</bogus>`, but `</source>` was found",
    );

    let f = write_temp(d, "binary.xml", &[0xff, 0xfe, 0x00, 0x3c, 0x80]);
    assert_bad_input(&["check", &f], b"", &f, "not UTF-8");

    let f = write_temp(
        d,
        "network.xml",
        b"<network><name>default</name><forward mode='nat'/></network>\n",
    );
    assert_bad_input(
        &["check", &f],
        b"",
        &f,
        "root element is <network>, expected a libvirt <domain>",
    );

    let f = write_temp(
        d,
        "bus.xml",
        good.replace("bus='0x00' slot='0x05'", "bus='zz' slot='0x05'")
            .as_bytes(),
    );
    assert_bad_input(
        &["check", &f],
        b"",
        &f,
        "<hostdev><address> bus='zz' is not a number",
    );

    let f = write_temp(
        d,
        "escape.xml",
        good.replace("domain='0x0002'", "domain='../../etc'").as_bytes(),
    );
    assert_bad_input(
        &["check", &f],
        b"",
        &f,
        "<hostdev><source><address> domain='../../etc' is not a number",
    );

    let f = write_temp(
        d,
        "slot.xml",
        good.replace("slot='0x05'", "slot='0x20'").as_bytes(),
    );
    assert_bad_input(
        &["check", &f],
        b"",
        &f,
        "slot='0x20' is not a number from 0 to 0x1f",
    );

    // libvirt reads a controller index in base 10 and refuses 0x0a (measured on libvirt 9.0).
    let f = write_temp(
        d,
        "hex-index.xml",
        good.replace(
            "<devices>",
            "<devices>\n    <controller type='pci' index='0x0a' model='pci-root'/>",
        )
        .as_bytes(),
    );
    assert_bad_input(
        &["check", &f],
        b"",
        &f,
        "<controller> index='0x0a' is not a number from 0 to 255 (libvirt reads it as decimal only)",
    );
    assert_bad_input(&["fix", &f], b"", &f, "<controller> index='0x0a'");

    // In base 0 a leading 0 is octal: strtoul stops at the 8, libvirt refuses the rest.
    let f = write_temp(
        d,
        "octal.xml",
        good.replace("slot='0x05'", "slot='08'").as_bytes(),
    );
    assert_bad_input(
        &["check", &f],
        b"",
        &f,
        "<hostdev><address> slot='08' is not a number",
    );

    let f = write_temp(
        d,
        "twice.xml",
        good.replace(
            "<devices>",
            "<devices>\n    <controller type='pci' index='0' model='pci-root'/>",
        )
        .as_bytes(),
    );
    assert_bad_input(
        &["check", &f],
        b"",
        &f,
        "two <controller type='pci'> elements have index 0",
    );

    let missing = d.join("missing.xml");
    let missing = missing.to_str().unwrap();
    assert_bad_input(&["check", missing], b"", missing, "cannot read");

    let dir_path = d.to_str().unwrap();
    assert_bad_input(&["check", dir_path], b"", dir_path, "is a directory");

    assert_bad_input(&["check", "-"], b"<domain>", "-", "truncated XML");
}

#[test]
fn a_50_mb_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(repo_path(BAD)).unwrap();
    let padding = format!("<description>{}</description>", "x".repeat(50 << 20));
    let huge = good.replacen("<memory", &format!("{padding}\n  <memory"), 1);
    let f = write_temp(dir.path(), "huge.xml", huge.as_bytes());
    assert_bad_input(&["check", &f], b"", &f, "larger than 16 MiB");
    // The same bound holds on a pipe, where the size is not known up front.
    assert_bad_input(&["check", "-"], huge.as_bytes(), "-", "larger than 16 MiB");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["check"], b"").status.code(), Some(2));
    assert_eq!(
        run(&["check", "--format", "yaml", "x"], b"").status.code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"], b"").status.code(), Some(2));
}

#[test]
fn rules_lists_the_catalogue_and_explain_tells_why() {
    let out = run(&["rules"], b"");
    assert_eq!(out.status.code(), Some(0));
    let list = stdout(&out);
    assert_eq!(list.lines().count(), 18, "{list}");
    for (id, severity) in [
        ("iommu-group-not-viable", "error"),
        ("memlock-limit-too-low", "error"),
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(id) && l.contains(severity)),
            "{list}"
        );
    }
    assert!(
        list.lines()
            .any(|l| l.starts_with("pci-address-duplicate") && l.contains("error"))
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("hostdev-on-default-phb") && l.contains("error"))
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("phb-numa-mismatch") && l.contains("warning"))
    );

    let out = run(&["explain", "hostdev-on-default-phb"], b"");
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.starts_with("hostdev-on-default-phb (error): "), "{text}");
    for needle in ["What:", "Why:", "EEH", "Fix by hand:"] {
        assert!(text.contains(needle), "explain lacks {needle}: {text}");
    }

    let out = run(&["explain", "no-such-rule"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "phbguard: unknown rule 'no-such-rule'; 'phbguard rules' lists them\n"
    );
    let out = run(&["explain", "iommu_group_not_viabel"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "phbguard: unknown rule 'iommu_group_not_viabel' (did you mean 'iommu-group-not-viable'?); \
         'phbguard rules' lists them\n"
    );
}

#[test]
fn explain_as_json_is_the_text_explanation_in_fields() {
    let out = run(
        &["explain", "--format", "json", "error[hostdev-behind-bridge]"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = stdout(&run(&["explain", "hostdev-behind-bridge"], b""));
    assert_eq!(json["id"], "hostdev-behind-bridge");
    assert_eq!(json["severity"], "error");
    assert_eq!(json["needs_libvirt"], false);
    assert!(text.starts_with(&format!(
        "hostdev-behind-bridge (error): {}\n",
        json["summary"].as_str().unwrap()
    )));
    for field in ["explanation", "flagged", "compliant"] {
        let value = json[field].as_str().unwrap();
        let first = value.lines().next().unwrap().trim();
        assert!(!first.is_empty() && text.contains(first), "{field}: {value}");
    }
    assert_eq!(
        json["example_host"][2],
        serde_json::json!({"address": "0002:01:00.0", "iommu_group": 2, "numa_node": 8,
                           "driver": "vfio-pci"})
    );
    let out = run(&["explain", "--format", "json", "no-such-rule"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn every_explanation_says_what_why_and_how_to_fix() {
    let out = run(&["rules", "--format", "json"], b"");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    for rule in json["rules"].as_array().unwrap() {
        let id = rule["id"].as_str().unwrap();
        let text = stdout(&run(&["explain", id], b""));
        for needle in ["What:", "Why:", "Fix by hand:"] {
            assert!(text.contains(needle), "{id}: explanation lacks {needle}");
        }
    }
}

#[test]
fn check_and_fix_refuse_a_sysfs_root_that_is_not_a_directory() {
    // Not "every host device unknown" and exit 0: a mistake, named, exit 2.
    let xml = support::repo().join("tests/cases/hostdev-on-default-phb");
    let file = std::fs::read_dir(&xml)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "xml"))
        .unwrap();
    let file = file.to_str().unwrap();
    for root in ["/nonexistent/sys", "/dev/null"] {
        for cmd in ["check", "fix"] {
            let out = run(&[cmd, "--sysfs-root", root, file], b"");
            assert_eq!(out.status.code(), Some(2), "{cmd} {root}");
            assert_eq!(stdout(&out), "", "{cmd} {root}");
            assert!(
                stderr(&out).starts_with(&format!("phbguard: --sysfs-root: sysfs root {root}")),
                "{cmd}: {}",
                stderr(&out)
            );
        }
    }
}
