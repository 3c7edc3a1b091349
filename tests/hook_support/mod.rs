//! Shared by the hook tests (tests/hook_cli.rs, tests/hook_libvirt.rs): an installed copy of
//! the hook file, a syslog socket that records what it receives, and guest XML builders.
#![allow(dead_code)] // each test crate uses its own part of this module

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support;

/// `hooks/qemu.d/phbguard` as shipped, with its `#!` line pointing at the test binary and,
/// if given, naming a policy file (`#!BIN hook --config=FILE`: libvirt passes hooks no
/// environment of ours, so this is how a hook run by libvirtd finds a test's policy).
pub fn hook_text(config: Option<&Path>) -> String {
    let shipped = std::fs::read_to_string(support::repo().join("hooks/qemu.d/phbguard")).unwrap();
    let (first, rest) = shipped.split_once('\n').unwrap();
    assert_eq!(first, "#!/usr/bin/phbguard hook", "the shipped hook's first line");
    let option = config
        .map(|c| format!(" --config={}", c.display()))
        .unwrap_or_default();
    format!("#!{} hook{option}\n{rest}", support::bin().display())
}

/// Writes the hook into `dir/name`, executable.
pub fn install_hook(dir: &Path, name: &str) -> PathBuf {
    install_hook_with(dir, name, None)
}

/// Writes the hook into `dir/name`, executable, its `#!` line naming `config`.
pub fn install_hook_with(dir: &Path, name: &str, config: Option<&Path>) -> PathBuf {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, hook_text(config)).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Renamed into place: libvirtd may be running hooks from this directory right now.
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Runs an executable with `args`, an environment holding only what libvirt passes plus
/// `env`, and `stdin`.
pub fn run_exe(exe: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("hook starts");
    let mut pipe = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // Written from a thread: a hook that exits without reading must not block the test.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("hook runs");
    writer.join().unwrap();
    out
}

/// A datagram socket standing in for /dev/log; a thread collects every line it receives.
pub struct LogSink {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LogSink {
    pub fn new() -> LogSink {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let sock = UnixDatagram::bind(&path).unwrap();
        // The hook runs as another user's child only as root here; let anyone write.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            // Ends with an error when the socket file goes; the thread then just stops.
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        LogSink {
            _dir: dir,
            path,
            lines,
        }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Every line received so far, and forgets them. Waits a moment for stragglers: the
    /// sender has exited, but the reader thread may not have been scheduled yet.
    pub fn take(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut last = usize::MAX;
        loop {
            let n = self.lines.lock().unwrap().len();
            if n == last || Instant::now() > deadline {
                break;
            }
            last = n;
            std::thread::sleep(Duration::from_millis(20));
        }
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// A policy file in a temporary directory.
pub struct Policy {
    dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Policy {
    pub fn new(text: &str) -> Policy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("phbguard.toml");
        std::fs::write(&path, text).unwrap();
        Policy { dir, path }
    }

    pub fn write(&self, text: &str) {
        let tmp = self.dir.path().join("phbguard.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// `<hostdev>` for host device `host` (`"0002:02:00.0"`) at guest `bus`/`slot`.
pub fn hostdev(host: &str, bus: u32, slot: u32) -> String {
    let (dom, rest) = host.split_once(':').unwrap();
    let (b, rest) = rest.split_once(':').unwrap();
    let (s, f) = rest.split_once('.').unwrap();
    format!(
        "<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x{dom}' \
         bus='0x{b}' slot='0x{s}' function='0x{f}'/></source><address type='pci' domain='0x0000' \
         bus='{bus:#04x}' slot='{slot:#04x}' function='0x0'/></hostdev>"
    )
}

/// A PHB: `<controller type='pci' model='pci-root' index=N>` with `<target index=T>`.
pub fn phb(index: u32, target: u32) -> String {
    format!(
        "<controller type='pci' index='{index}' model='pci-root'><model name='spapr-pci-host-bridge'/>\
         <target index='{target}'/></controller>"
    )
}

/// A pci-bridge at bus 0 slot `slot`.
pub fn bridge(index: u32, slot: u32) -> String {
    format!(
        "<controller type='pci' index='{index}' model='pci-bridge'><address type='pci' domain='0x0000' \
         bus='0x00' slot='{slot:#04x}' function='0x0'/></controller>"
    )
}

/// An emulated virtio-scsi controller at `bus`/`slot`.
pub fn scsi(index: u32, bus: u32, slot: u32) -> String {
    format!(
        "<controller type='scsi' index='{index}' model='virtio-scsi'><address type='pci' domain='0x0000' \
         bus='{bus:#04x}' slot='{slot:#04x}' function='0x0'/></controller>"
    )
}

/// The e2e guest template (tests/e2e/guest.xml.in) with a name and devices.
pub fn guest(name: &str, devices: &str) -> String {
    let template = std::fs::read_to_string(support::repo().join("tests/e2e/guest.xml.in")).unwrap();
    template.replace("@NAME@", name).replace("@DEVICES@", devices)
}

/// `guest` with a UUID and a `<metadata>` opt-out, for tests that need them without libvirt.
pub fn guest_with(name: &str, uuid: &str, metadata_mode: Option<&str>, devices: &str) -> String {
    let mut extra = format!("<uuid>{uuid}</uuid>");
    if let Some(mode) = metadata_mode {
        extra.push_str(&format!(
            "<metadata><phbguard:policy xmlns:phbguard='{}' mode='{mode}'/></metadata>",
            phbguard_core::parse::METADATA_NS
        ));
    }
    guest(name, devices).replacen("<memory", &format!("{extra}\n  <memory"), 1)
}

/// The fake host every hook test uses: groups 1-4, all on NUMA node 0.
pub fn fake_host() -> support::FakeSysfs {
    support::FakeSysfs::new()
        .device("0002:01:00.0", Some(1), Some(0))
        .device("0002:02:00.0", Some(2), Some(0))
        .device("0003:01:00.0", Some(3), Some(0))
        .device("0003:01:00.1", Some(3), Some(0))
        .device("0004:01:00.0", None, Some(0))
}
