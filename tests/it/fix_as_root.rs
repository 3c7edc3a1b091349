//! `phbguard fix --in-place` as root, as an admin runs it on a host: file permissions do not
//! stop root, so a read-only file is replaced (keeping its mode); an immutable file is what
//! stays as it is (docs/fix.md). Ignored by plain `cargo test`; scripts/test-all runs them as
//! root with `--include-ignored`, and skips the immutable-file one (counted as skipped) where
//! the temporary directory's file system has no immutable flag.

use crate::support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

const BROKEN: &str = "examples/domains/hostdev-on-default-phb.xml";

/// Fails the test, naming why, when it is not run as root.
fn assert_root() {
    let uid = fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(uid, 0, "this test needs root (scripts/test-all runs it as root)");
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
#[ignore = "needs root"]
fn as_root_a_read_only_file_is_replaced_and_stays_read_only() {
    assert_root();
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
#[ignore = "needs root"]
fn as_root_an_immutable_file_is_left_alone_with_exit_2() {
    assert_root();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.xml");
    fs::copy(support::repo().join(BROKEN), &path).unwrap();
    // tmpfs and overlayfs lack the flag: there this test cannot run, and says so by failing.
    // scripts/test-all probes the flag in the same temporary directory first and, where it is
    // missing, skips this test by name and counts it as skipped.
    let chattr = Command::new("chattr").arg("+i").arg(&path).output();
    assert!(
        chattr.as_ref().is_ok_and(|o| o.status.success()),
        "chattr +i {}: not supported on this file system, so this test cannot run here \
         (scripts/test-all skips it then): {chattr:?}",
        path.display()
    );
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
