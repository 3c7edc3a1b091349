//! Switches that only the workspace's own tests can throw. Compiled in with the `test-seams`
//! feature, which the root package's dev-dependency turns on for `cargo test` (debug and
//! release alike); the shipped binary (`cargo build`, the RPM) is built without it and its
//! switches are constant `false`.

/// Whether the hook should panic on purpose, to show its panic path (`PHBGUARD_TEST_PANIC`).
#[cfg(feature = "test-seams")]
pub fn panic_requested() -> bool {
    std::env::var_os("PHBGUARD_TEST_PANIC").is_some()
}

/// Whether the hook should panic on purpose: never, in a build without `test-seams`.
#[cfg(not(feature = "test-seams"))]
pub fn panic_requested() -> bool {
    false
}
