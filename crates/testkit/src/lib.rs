//! What the integration tests of phbguard's crates share (the root package's `tests/it` and
//! crates/libvirt's `tests/it`): one way to run a program ([`Run`]), one set of guest XML
//! builders ([`xml`]), fake sysfs trees ([`FakeSysfs`]), datagram sockets standing in for syslog
//! and systemd's notify socket ([`Datagrams`]), virsh on the real libvirtd ([`libvirtd`]), and
//! golden files and their blessing ([`golden`]).
//! A dev-dependency only: nothing here is in a binary that ships.

pub mod datagrams;
pub mod golden;
pub mod libvirtd;
pub mod run;
pub mod sysfs;
pub mod xml;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use datagrams::Datagrams;
pub use run::Run;
pub use sysfs::FakeSysfs;

/// The repository root.
pub fn repo() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .expect("the repository root")
    })
}

/// The cells of the row of `name`'s `definition` (`persistent`, `live`) in `phbguard audit`'s
/// text table (cells are separated by two spaces or more).
pub fn audit_row(text: &str, name: &str, definition: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")) && l.contains(&format!(" {definition} ")))
        .unwrap_or_else(|| panic!("no row {name} {definition} in\n{text}"))
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout then stderr of a command, as one text for messages and searches.
pub fn output_text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// How long anything a daemon or a service does may take before a test gives up on it: long
/// enough for a loaded machine or emulation, and only ever reached when the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `what` until it gives a value or [`PATIENCE`] runs out (then the test fails, saying
/// what it waited for).
pub fn eventually<T>(description: &str, mut what: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    // Soon at first (most waits are short), then every 50 ms.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {description}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// `kill -SIGNAL PID` (the shell's kill: a bare machine need not have procps').
pub fn kill(signal: &str, pid: u32) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{signal} {pid}")])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}
