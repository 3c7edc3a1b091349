//! A newcomer's first hour: README's commands work as written (read from README.md, so the
//! test and the page cannot drift apart), and the CLI explains itself when asked loosely.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;
use support::{run, stderr, stdout};

/// The first line of each ```sh block of README.md, in order.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(support::repo().join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let first = lines.next().expect("a command after ```sh");
            commands.push(first.trim().to_string());
        }
    }
    commands
}

#[test]
fn readmes_first_command_prints_findings_as_written() {
    let commands = readme_commands();
    let first = &commands[0];
    assert!(first.starts_with("cargo run"), "README's first command: {first}");
    // As a user types it: the shell expands the glob, cargo picks the binary and builds it.
    let out = Command::new("sh")
        .args(["-c", first])
        .current_dir(support::repo())
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let text = stdout(&out);
    // The examples hold non-compliant domains on purpose: exit 1, findings, a summary.
    assert_eq!(out.status.code(), Some(1), "{first}\n{text}{}", stderr(&out));
    assert!(text.contains(": error[hostdev-on-default-phb]: "), "{text}");
    let domains = std::fs::read_dir(support::repo().join("examples/domains"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "xml"))
        .count();
    assert!(text.contains(&format!("{domains} domains checked: ")), "{text}");
}

#[test]
fn readmes_second_command_is_the_test_command_ci_runs() {
    let commands = readme_commands();
    let second = &commands[1];
    let path = support::repo().join(second);
    let mode = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("README's second command {second}: {e}"))
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "{second} is not executable");
    let ci = std::fs::read_to_string(support::repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == format!("exec {second}")),
        ".ci/run does not run {second}"
    );
}

#[test]
fn explain_takes_a_rule_as_a_finding_names_it() {
    let plain = run(&["explain", "hostdev-on-default-phb"], b"");
    assert_eq!(plain.status.code(), Some(0));
    for pasted in [
        "error[hostdev-on-default-phb]",
        "error[hostdev-on-default-phb]:",
        "warning[phb-numa-mismatch]",
    ] {
        let out = run(&["explain", pasted], b"");
        assert_eq!(out.status.code(), Some(0), "{pasted}: {}", stderr(&out));
        let id = pasted.split(['[', ']']).nth(1).unwrap();
        assert!(stdout(&out).starts_with(&format!("{id} (")), "{pasted}");
    }
    assert_eq!(
        stdout(&run(&["explain", "error[hostdev-on-default-phb]"], b"")),
        stdout(&plain)
    );
    // Any other text: the one rule it names; a text naming two is not guessed at.
    assert_eq!(
        stdout(&run(&["explain", "[hostdev-on-default-phb]"], b"")),
        stdout(&plain)
    );
    let two = run(
        &[
            "explain",
            "hostdev-on-default-phbs or phb-numa-mismatch, pci-bridge-on-pseries",
        ],
        b"",
    );
    assert_eq!(two.status.code(), Some(2), "{}", stdout(&two));
    assert!(
        stderr(&two).contains("unknown rule 'hostdev-on-default-phbs'"),
        "{}",
        stderr(&two)
    );
}

/// A whole line pasted as phbguard printed it: `check`'s (from stdin, as docs/admin.md's
/// loop gives it), a syslog line, audit's details and the hook's refusal in virsh's error.
#[test]
fn explain_takes_a_whole_pasted_finding_line() {
    let xml = std::fs::read(support::repo().join("examples/domains/hostdev-on-default-phb.xml")).unwrap();
    let sysfs = support::repo().join("examples/sysfs");
    let checked = run(&["check", "--sysfs-root", sysfs.to_str().unwrap(), "-"], &xml);
    let line = stdout(&checked)
        .lines()
        .find(|l| l.starts_with("<stdin>:"))
        .expect("a finding line")
        .to_string();
    assert!(line.contains(": error[hostdev-on-default-phb]: "), "{line}");
    let plain = stdout(&run(&["explain", "hostdev-on-default-phb"], b""));
    for pasted in [
        line.as_str(),
        "phbguard[25528]: warned domain=web02 uuid=7bec op=prepare rule=hostdev-on-default-phb \
         device=\"hostdev 0001:01:00.0 at 0000:00:05.0\" severity=error mode=warn: hostdev ...",
        "  error hostdev-on-default-phb: hostdev 0003:03:00.0 at 0000:00:05.0 is on the default PHB",
        "hostdev-on-default-phb: hostdev 0001:01:00.0 at 0000:00:05.0 is on the default PHB, ...",
        // What `virsh start` shows, and the hook's own refusal line.
        "error: Hook script execution failed: internal error: Child process (LC_ALL=C \
         /etc/libvirt/hooks/qemu.d/phbguard web02 prepare begin -) unexpected exit status 1: \
         hostdev-on-default-phb: hostdev 0001:01:00.0 at 0000:00:05.0 is on the default PHB",
        "phbguard: refused to start 'web02': 1 error; 'phbguard explain hostdev-on-default-phb' \
         tells why and how to fix it",
    ] {
        let out = run(&["explain", pasted], b"");
        assert_eq!(out.status.code(), Some(0), "{pasted}: {}", stderr(&out));
        assert_eq!(stdout(&out), plain, "{pasted}");
    }
    let out = run(
        &[
            "explain",
            "pci-bridge-on-pseries (warning): controller pci index 1 is a pci-bridge",
        ],
        b"",
    );
    assert!(
        stdout(&out).starts_with("pci-bridge-on-pseries ("),
        "{}",
        stderr(&out)
    );
    // An id that is none of the rules is named as the user wrote it.
    let out = run(&["explain", "x.xml:3: error[no-such-rule]: something"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'no-such-rule'"), "{}", stderr(&out));
}

#[test]
fn explain_without_a_rule_lists_the_rules_and_says_how() {
    let out = run(&["explain"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("phbguard explain 'error[hostdev-on-default-phb]'"),
        "{err}"
    );
    let rules = stdout(&run(&["rules"], b""));
    assert!(err.ends_with(&rules), "{err}");
}

#[test]
fn rules_puts_every_summary_in_one_column() {
    let out = run(&["rules", "--format", "json"], b"");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = stdout(&run(&["rules"], b""));
    let lines: Vec<&str> = text.lines().collect();
    let rules = json["rules"].as_array().unwrap();
    assert_eq!(lines.len(), rules.len());
    let mut columns = std::collections::BTreeSet::new();
    for (line, rule) in lines.iter().zip(rules) {
        let summary = rule["summary"].as_str().unwrap();
        let column = line.find(summary).unwrap_or_else(|| panic!("{line}"));
        columns.insert(column);
    }
    assert_eq!(columns.len(), 1, "{text}");
    assert!(text.contains(" warning "), "{text}");
}

#[test]
fn check_json_gives_an_unreadable_file_an_entry_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.xml");
    std::fs::write(&bad, "<domain type='kvm'><name>x</name>").unwrap();
    let sysfs = support::repo().join("examples/sysfs");
    let good = support::repo().join("examples/domains/compliant-db01.xml");
    let args = [
        "check",
        "--sysfs-root",
        sysfs.to_str().unwrap(),
        "--format",
        "json",
        "no-such-file.xml",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ];
    let out = run(&args, b"");
    assert_eq!(out.status.code(), Some(2));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = json["results"].as_array().unwrap();
    let files: Vec<&str> = results.iter().map(|r| r["file"].as_str().unwrap()).collect();
    assert_eq!(files, &args[5..], "every file, in command-line order");
    assert!(results[0]["error"].as_str().unwrap().contains("No such file"));
    assert!(results[0].get("findings").is_none());
    assert!(results[1].get("error").is_none());
    assert_eq!(results[1]["findings"], serde_json::json!([]));
    assert!(!results[2]["error"].as_str().unwrap().is_empty());
    // The same reason as the stderr line.
    let err = stderr(&out);
    let reason = results[2]["error"].as_str().unwrap();
    assert!(err.contains(reason), "{err} / {reason}");
}
