//! The integration tests of `phbguard-libvirt`, one test crate with a module per subject: one
//! link of the program, one process running them. Tests that use the real libvirtd hold
//! [`libvirtd`] so they run one at a time.

use std::sync::{Mutex, MutexGuard, PoisonError};

mod audit;
mod fix_domain_libvirtd;
mod read_only_libvirtd;
mod redefine;
mod rule_cases;
mod watch_libvirt;

/// The real libvirtd (qemu:///system), for one test at a time: the tests run as threads of one
/// process, and the ones on the daemon share its guests and restart it. Each holds this guard
/// for as long as it uses the daemon.
pub fn libvirtd() -> MutexGuard<'static, ()> {
    static DAEMON: Mutex<()> = Mutex::new(());
    // A test that failed while holding it leaves the daemon as its cleanup made it.
    DAEMON.lock().unwrap_or_else(PoisonError::into_inner)
}
