//! The real libvirtd of tests/e2e/libvirtd-sandbox.sh (qemu:///system). Tests that need it are
//! `#[ignore = "needs libvirtd"]`: `cargo test` reports them as ignored; scripts/test-all runs
//! them with `--include-ignored`, and then a daemon that does not answer fails them.

use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::output_text;

pub const URI: &str = "qemu:///system";

/// The daemon, for one test at a time. A crate's tests run as threads of one process, and the
/// ones on the daemon share its guests, its hooks directory and the e2e state directory, and
/// restart it: each holds this guard for as long as it uses the daemon. Fails the test when
/// the daemon does not answer.
pub fn libvirtd() -> MutexGuard<'static, ()> {
    static DAEMON: Mutex<()> = Mutex::new(());
    // A test that failed while holding it leaves the daemon as its cleanup made it.
    let guard = DAEMON.lock().unwrap_or_else(PoisonError::into_inner);
    assert_libvirtd_answers();
    guard
}

/// Fails the test with how to start the daemon when libvirtd does not answer.
pub fn assert_libvirtd_answers() {
    let probe = virsh(&["list", "--all", "--name"]);
    assert!(
        probe.status.success(),
        "libvirtd does not answer on {URI} ({}); start it with \
         'tests/e2e/libvirtd-sandbox.sh start' (scripts/test-all does)",
        output_text(&probe).trim()
    );
}

/// `virsh` on the daemon, bounded so a stuck daemon fails the test instead of hanging it.
pub fn virsh(args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["120", "virsh", "-q", "-c", URI])
        .args(args)
        .output()
        .expect("virsh runs")
}

/// `virsh` that must succeed: its stdout.
pub fn virsh_ok(args: &[&str]) -> String {
    let out = virsh(args);
    assert!(
        out.status.success(),
        "virsh {}: {}",
        args.join(" "),
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
