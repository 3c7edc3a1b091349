//! `phbguard fix` as a command: where the result goes, what the exit code says, and that a
//! failure at any step leaves the original file as it was.

use crate::support::{self, golden};

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BROKEN: &str = "examples/domains/hostdev-on-default-phb.xml";
const COMPLIANT: &str = "examples/domains/compliant-db01.xml";

/// A copy of an example in a fresh directory, so the test may rewrite it.
fn scratch_copy(example: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.xml");
    fs::copy(support::repo().join(example), &path).unwrap();
    (dir, path)
}

/// What `fix` must print for an example, and `--in-place` write: its `.fix` golden file's diff
/// applied to it (pinned, not what the binary under test says today).
fn fixed_text(example: &str) -> Vec<u8> {
    let xml = support::repo().join(example);
    golden::fixed(&xml, &fs::read(&xml).unwrap())
}

#[test]
fn the_fixed_xml_goes_to_stdout_and_the_changes_to_stderr() {
    let out = support::fix_examples(&[BROKEN]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        support::stderr(&out),
        format!(
            "phbguard: {BROKEN}: added PHB index 1 target 1\n\
             phbguard: {BROKEN}: hostdev 0001:01:00.0: 0000:00:05.0 -> 0000:01:01.0\n"
        )
    );
    assert_eq!(out.stdout, fixed_text(BROKEN));
    let check = support::run(
        &["check", "--sysfs-root", &support::examples_sysfs(), "-"],
        &out.stdout,
    );
    assert_eq!(check.status.code(), Some(0), "{}", support::stdout(&check));
    let quiet = support::fix_examples(&["--quiet", BROKEN]);
    assert!(quiet.stderr.is_empty());
    assert_eq!(quiet.stdout, out.stdout);
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let input = fs::read(support::repo().join(BROKEN)).unwrap();
    let out = support::run(&["fix", "--sysfs-root", &support::examples_sysfs(), "-"], &input);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, fixed_text(BROKEN));
}

#[test]
fn a_compliant_file_comes_out_unchanged_and_its_diff_is_empty() {
    let input = fs::read(support::repo().join(COMPLIANT)).unwrap();
    let out = support::fix_examples(&[COMPLIANT]);
    assert_eq!((out.status.code(), &out.stdout), (Some(0), &input));
    assert_eq!(
        support::stderr(&out),
        format!("phbguard: {COMPLIANT}: already compliant, nothing to change\n")
    );
    assert!(support::fix_examples(&["-q", COMPLIANT]).stderr.is_empty());
    let diff = support::fix_examples(&["--diff", COMPLIANT]);
    assert_eq!(diff.status.code(), Some(0));
    assert!(diff.stdout.is_empty());
}

#[test]
fn json_lists_each_change() {
    let out = support::fix_examples(&["--format", "json", BROKEN]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", support::stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["file"], BROKEN);
    assert_eq!(report["fixed"], true);
    assert_eq!(report["changed"], true);
    assert_eq!(report["problems"], serde_json::json!([]));
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(
        changes[0],
        serde_json::json!({"kind": "add-phb", "index": 1, "target": 1, "node": null,
                           "summary": "added PHB index 1 target 1"})
    );
    assert_eq!(
        changes[1],
        serde_json::json!({"kind": "move", "device": "hostdev 0001:01:00.0", "from": "0000:00:05.0",
                           "to": "0000:01:01.0",
                           "summary": "hostdev 0001:01:00.0: 0000:00:05.0 -> 0000:01:01.0"})
    );
    assert_eq!(changes.len(), 2);
}

#[test]
fn in_place_replaces_the_file_keeping_its_mode_and_leaves_nothing_else() {
    let (dir, path) = scratch_copy(BROKEN);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let out = support::fix_examples(&["--in-place", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(support::stderr(&out).contains("-> 0000:01:01.0"));
    assert_eq!(fs::read(&path).unwrap(), fixed_text(BROKEN));
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(support::entries(dir.path()), ["guest.xml"]);
}

#[test]
fn in_place_with_diff_shows_what_was_written() {
    let (_dir, path) = scratch_copy(BROKEN);
    let file = path.to_str().unwrap();
    let out = support::fix_examples(&["-i", "--diff", file]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let diff = support::stdout(&out);
    assert!(
        diff.starts_with(&format!("--- {file}\n+++ {file}\n@@ ")),
        "{diff}"
    );
    assert!(
        diff.contains("+      <address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/>")
    );
    assert_eq!(fs::read(&path).unwrap(), fixed_text(BROKEN));
}

#[test]
fn in_place_leaves_a_compliant_file_alone() {
    let (_dir, path) = scratch_copy(COMPLIANT);
    let inode = fs::metadata(&path).unwrap().ino();
    let out = support::fix_examples(&["-i", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    // Not even replaced by an identical copy: the same inode is still there.
    assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
}

#[test]
fn in_place_through_a_symlink_rewrites_its_target() {
    let (dir, path) = scratch_copy(BROKEN);
    let link = dir.path().join("link.xml");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let out = support::fix_examples(&["-i", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(&path).unwrap(), fixed_text(BROKEN));
}

#[test]
fn what_cannot_be_fixed_is_said_and_nothing_is_written() {
    // The host has no such device, so its IOMMU group, and the PHB it may share, are unknown.
    let xml = fs::read_to_string(support::repo().join(BROKEN)).unwrap().replace(
        "domain='0x0001' bus='0x01' slot='0x00'",
        "domain='0x0abc' bus='0x01' slot='0x00'",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.xml");
    fs::write(&path, &xml).unwrap();
    let file = path.to_str().unwrap();
    // FILE:LINE of the hostdev's start tag, as findings are reported.
    let source = xml.find("domain='0x0abc'").unwrap();
    let line = xml[..xml[..source].rfind("<hostdev").unwrap()]
        .matches('\n')
        .count()
        + 1;
    for args in [vec![file], vec!["--diff", file], vec!["-i", file]] {
        let out = support::fix_examples(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = support::stderr(&out);
        assert!(
            stderr.contains(&format!(
                "phbguard: {file}:{line}: cannot fix: hostdev 0abc:01:00.0 at 0000:00:05.0: has to move but its \
                 IOMMU group is unknown (the host has no such PCI device)"
            )),
            "{stderr}"
        );
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), xml);
    let json = support::fix_examples(&["--format", "json", file]);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (json.status.code(), &report["fixed"]),
        (Some(1), &Value::Bool(false))
    );
    assert_eq!(report["problems"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_input_and_usage_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.xml");
    let text = fs::read_to_string(support::repo().join(BROKEN)).unwrap();
    fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let dir_name = dir.path().to_str().unwrap();
    let cases: [(Vec<&str>, String); 4] = [
        (vec![dir_name], format!("phbguard: {dir_name}: is a directory")),
        (
            vec!["-i", dir_name],
            format!("phbguard: {dir_name}: is a directory"),
        ),
        (
            vec![truncated.to_str().unwrap()],
            format!("phbguard: {}:", truncated.display()),
        ),
        (vec!["-i", "-"], "phbguard: --in-place needs a file".to_string()),
    ];
    for (args, start) in cases {
        let out = support::fix_examples(&args);
        let stderr = support::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&start) && stderr.lines().count() == 1,
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert_eq!(fs::read_to_string(&truncated).unwrap(), text[..text.len() / 2]);
    let conflict = support::fix_examples(&["--diff", "--format", "json", BROKEN]);
    assert_eq!(conflict.status.code(), Some(2));
}

#[test]
fn yes_and_connect_without_domain_are_usage_errors() {
    // clap skips `requires` when the required argument conflicts with one given
    // (clap-rs/clap#4520), so these conflict with FILE explicitly: the admin who typed -y with a
    // FILE meant something that would not be done. Nothing is fixed or printed.
    for args in [
        vec!["-y", BROKEN],
        vec!["--yes", "-i", BROKEN],
        vec!["-c", "qemu:///system", BROKEN],
        vec!["--connect=test:///default", "--diff", BROKEN],
        vec!["-y"],
        vec!["-c", "qemu:///system"],
    ] {
        let out = support::fix_examples(&args);
        let stderr = support::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--domain") || stderr.contains("cannot be used with '[FILE]...'"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// Runs `fix --in-place` on `file` as an unprivileged user, so that permissions bind even when
/// the tests run as root; the binary is copied where that user can run it.
fn fix_in_place_unprivileged(workdir: &Path, file: &Path) -> Output {
    let bin = workdir.join("phbguard");
    fs::copy(support::bin(), &bin).unwrap();
    let sysfs = workdir.join("sysfs");
    copy_tree(&support::repo().join("examples/sysfs"), &sysfs);
    let args = [
        "fix",
        "--in-place",
        "--sysfs-root",
        sysfs.to_str().unwrap(),
        file.to_str().unwrap(),
    ];
    let root = fs::metadata("/proc/self").unwrap().uid() == 0;
    let run = if root {
        support::Run::as_user(65534, &bin)
    } else {
        support::Run::new(&bin)
    };
    run.args(args).output()
}

/// Copies a tree, symlinks as symlinks (the fake sysfs is made of them).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A directory the unprivileged user owns, reachable by it.
fn unprivileged_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = fs::metadata("/proc/self").unwrap().uid() == 0;
    if root {
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    }
    dir
}

#[test]
fn a_read_only_file_is_not_replaced() {
    let dir = unprivileged_dir();
    let path = dir.path().join("guest.xml");
    fs::copy(support::repo().join(BROKEN), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    let before = fs::read(&path).unwrap();
    let out = fix_in_place_unprivileged(dir.path(), &path);
    let stderr = support::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "phbguard: {}: not rewritten: cannot write it: Permission denied",
            path.display()
        )),
        "{stderr}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(support::entries(dir.path()), ["guest.xml", "phbguard", "sysfs"]);
}

#[test]
fn a_read_only_directory_stops_the_rewrite_before_it_starts() {
    let dir = unprivileged_dir();
    let sub = dir.path().join("ro");
    fs::create_dir(&sub).unwrap();
    let path = sub.join("guest.xml");
    fs::copy(support::repo().join(BROKEN), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o555)).unwrap();
    let before = fs::read(&path).unwrap();
    let out = fix_in_place_unprivileged(dir.path(), &path);
    let stderr = support::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not rewritten: cannot create a temporary file in"),
        "{stderr}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(support::entries(&sub), ["guest.xml"]);
}

#[test]
fn a_full_disk_leaves_the_original_and_no_temporary_file() {
    // A file size limit of one block makes the write fail as a full disk does (EFBIG instead
    // of ENOSPC); SIGXFSZ is ignored so the write returns the error instead of killing us.
    let (dir, path) = scratch_copy(BROKEN);
    let before = fs::read(&path).unwrap();
    assert!(before.len() > 1024);
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1; exec \"$@\"")
        .arg("sh")
        .arg(support::bin())
        .args([
            "fix",
            "-i",
            "--sysfs-root",
            &support::examples_sysfs(),
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = support::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not rewritten: cannot write") && stderr.contains("File too large"),
        "{stderr}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(support::entries(dir.path()), ["guest.xml"]);
}

#[test]
fn raise_hard_limit_raises_it_to_what_the_new_phbs_need_and_nothing_else() {
    let host = support::case_host();
    let file = "tests/cases/hostdev-on-default-phb/fail-new-phb-over-hard-limit.xml";
    let refused = support::run(&["fix", "--sysfs-root", host.path_str(), file], b"");
    assert_eq!(refused.status.code(), Some(1), "{}", support::stderr(&refused));
    assert!(refused.stdout.is_empty());
    let out = support::run(
        &["fix", "--raise-hard-limit", "--sysfs-root", host.path_str(), file],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let fixed = support::stdout(&out);
    assert!(
        fixed.contains("<hard_limit unit='KiB'>4268032</hard_limit>"),
        "{fixed}"
    );
    assert!(
        support::stderr(&out).contains(
            "memtune hard_limit: 4256000 KiB -> 4268032 KiB, what libvirt 9.0 computes QEMU must lock"
        ),
        "{}",
        support::stderr(&out)
    );
    let recheck = support::run(&["check", "--sysfs-root", host.path_str(), "-"], fixed.as_bytes());
    assert_eq!(recheck.status.code(), Some(0), "{}", support::stdout(&recheck));
}

#[test]
fn spare_phbs_are_listed_reported_in_json_and_bounded() {
    let out = support::fix_examples(&["--spare-phbs", "2", BROKEN]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(
        support::stderr(&out),
        format!(
            "phbguard: {BROKEN}: added PHB index 1 target 1\n\
             phbguard: {BROKEN}: added spare PHB index 2 target 2\n\
             phbguard: {BROKEN}: added spare PHB index 3 target 3\n\
             phbguard: {BROKEN}: hostdev 0001:01:00.0: 0000:00:05.0 -> 0000:01:01.0\n"
        )
    );
    let json = support::fix_examples(&["--spare-phbs", "2", "--format", "json", BROKEN]);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        report["spare_phbs"],
        serde_json::json!({"wanted": 2, "kept": 2, "short": null})
    );
    assert_eq!(report["changes"][1]["kind"], "add-spare-phb");
    assert_eq!(report["changes"][1]["index"], 2);
    // Without the option the report is what it always was.
    let plain = support::fix_examples(&["--format", "json", BROKEN]);
    let plain: Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(plain.get("spare_phbs").is_none(), "{plain}");

    // A compliant guest that has them is left byte for byte; 0 asks for none.
    let fixed = support::fix_examples(&["--quiet", "--spare-phbs", "2", BROKEN]).stdout;
    for n in ["0", "1", "2"] {
        let again = support::run(
            &[
                "fix",
                "--spare-phbs",
                n,
                "--sysfs-root",
                &support::examples_sysfs(),
                "-",
            ],
            &fixed,
        );
        assert_eq!(again.stdout, fixed, "--spare-phbs {n}");
        assert!(support::stderr(&again).contains("already compliant, nothing to change"));
    }

    // QEMU's 31 PHBs: as many as fit, and a warning saying how many (the rules are kept: 0).
    let phbs: String = (1..=29)
        .map(|i| {
            format!(
                "<controller type='pci' index='{i}' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='{i}'/></controller>\n"
            )
        })
        .collect();
    // PHBs 1..29, one of them holding an emulated device: 28 spares, room for one more PHB.
    let guest = format!(
        "<domain type='kvm'><name>many</name><os><type arch='ppc64le' machine='pseries'>hvm</type></os>\n<devices>\n{phbs}\
         <rng model='virtio'><backend model='random'>/dev/urandom</backend>\
         <address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/></rng>\n</devices></domain>\n"
    );
    let out = support::run(&["fix", "--spare-phbs", "30", "-"], guest.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(
        support::stderr(&out),
        "phbguard: -: added spare PHB index 30 target 30\n\
         phbguard: -: warning: 29 spare PHBs kept, not the 30 asked for: the guest already has 31, the most QEMU allows is 31\n"
    );

    let out = support::fix_examples(&["--spare-phbs", "31", BROKEN]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::stderr(&out).contains("31"), "{}", support::stderr(&out));
}

#[test]
fn check_config_knows_fix_spare_phbs() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("phbguard.toml");
    let file = policy.to_str().unwrap();
    fs::write(&policy, "mode = \"warn\"\n[fix]\nspare_phbs = 2\n").unwrap();
    let out = support::run(&["check-config", file], b"");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    fs::write(
        &policy,
        "mode = \"warn\"\nspare_phbs = 2\n[fix]\nspare_phbs = 99\n",
    )
    .unwrap();
    let out = support::run(&["check-config", file], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = support::stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[..2],
        [
            format!("phbguard: {file}:2: 'spare_phbs' is a key of [fix]: write it as fix.spare_phbs"),
            format!(
                "phbguard: {file}:4: fix.spare_phbs = 99: expected a whole number from 0 to 30 (a pSeries guest has at most 31 PHBs, the default one included)"
            ),
        ],
        "{err}"
    );
}
