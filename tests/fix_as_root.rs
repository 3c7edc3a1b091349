//! `phbguard fix --in-place` as root, as an admin runs it on a host: file permissions do not
//! stop root, so a read-only file is replaced (keeping its mode); an immutable file is what
//! stays as it is (docs/fix.md).

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

const BROKEN: &str = "examples/domains/hostdev-on-default-phb.xml";

/// Whether this process is root; without root the tests say so, and fail under
/// scripts/test-all (`PHBGUARD_E2E=1`), which runs as root.
fn root(test: &str) -> bool {
    let root = fs::metadata("/proc/self").unwrap().uid() == 0;
    if !root {
        assert!(
            std::env::var_os("PHBGUARD_E2E").is_none_or(|v| v != "1"),
            "{test} needs root under scripts/test-all"
        );
        eprintln!("{test}: skipped, needs root");
    }
    root
}

fn fix_in_place(path: &std::path::Path) -> std::process::Output {
    let sysfs = support::repo().join("examples/sysfs");
    support::run(
        &[
            "fix",
            "-q",
            "-i",
            "--sysfs-root",
            sysfs.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
        b"",
    )
}

#[test]
fn as_root_a_read_only_file_is_replaced_and_stays_read_only() {
    if !root("as_root_a_read_only_file_is_replaced_and_stays_read_only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.xml");
    fs::copy(support::repo().join(BROKEN), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    let out = fix_in_place(&path);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_ne!(
        fs::read(&path).unwrap(),
        fs::read(support::repo().join(BROKEN)).unwrap()
    );
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o444);
}

#[test]
fn as_root_an_immutable_file_is_left_alone_with_exit_2() {
    if !root("as_root_an_immutable_file_is_left_alone_with_exit_2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.xml");
    fs::copy(support::repo().join(BROKEN), &path).unwrap();
    let chattr = Command::new("chattr").arg("+i").arg(&path).output();
    if !chattr.as_ref().is_ok_and(|o| o.status.success()) {
        // tmpfs and overlayfs lack the flag: nothing to test on this file system.
        eprintln!("skipped: chattr +i is not supported here ({chattr:?})");
        return;
    }
    let out = fix_in_place(&path);
    let _ = Command::new("chattr").arg("-i").arg(&path).status();
    assert_eq!(out.status.code(), Some(2), "{}", support::stderr(&out));
    let err = support::stderr(&out);
    assert!(err.contains("guest.xml: not rewritten"), "{err}");
    assert_eq!(
        fs::read(&path).unwrap(),
        fs::read(support::repo().join(BROKEN)).unwrap()
    );
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left");
}
