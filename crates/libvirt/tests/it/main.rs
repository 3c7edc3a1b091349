//! The integration tests of `phbguard-libvirt`, one test crate with a module per subject: one
//! link of the program, one process running them. Tests that use the real libvirtd hold
//! [`libvirtd`] so they run one at a time. What they share with the root package's tests is in
//! phbguard-testkit.

mod audit;
mod fix_domain_libvirtd;
mod fix_domain_terminal;
mod prometheus_file;
mod read_only_libvirtd;
mod redefine;
mod rule_cases;
mod vfio;
mod watch_libvirt;

use std::path::PathBuf;

use phbguard_testkit::Run;
pub use phbguard_testkit::libvirtd::libvirtd;

/// The `phbguard-libvirt` binary cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_phbguard-libvirt")
}

/// `phbguard-libvirt ARGS`, ready to run.
pub fn phbguard(args: &[&str]) -> Run {
    Run::new(bin()).args(args)
}

/// This crate's test data (tests/data).
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}
