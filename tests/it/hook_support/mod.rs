//! Shared by the hook tests (tests/it/hook_cli.rs, tests/it/hook_libvirt.rs): the one test world
//! (fake host, syslog socket, policy file, incoming-mark directory), the installed hook file,
//! the one set of guest XML builders, and the one table of per-rule guest scenarios.
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

/// Writes the hook into `dir/name` with `rest` after the binary on its `#!` line (which may be
/// anything an admin could write: `" hook --confg=x"`).
pub fn install_hook_line(dir: &Path, name: &str, rest: &str) -> PathBuf {
    let text = hook_text(None);
    let body = text.split_once('\n').unwrap().1;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, format!("#!{}{rest}\n{body}", support::bin().display())).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
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

    /// Every line sent so far, and forgets them. The senders have exited, so their lines are
    /// queued in the socket, but the reader thread may not have read them yet (on a loaded
    /// machine, for longer than any fixed wait). A marker sent now is queued after them, and a
    /// datagram socket delivers in order: once the reader has the marker, it has them all.
    pub fn take(&self) -> Vec<String> {
        let marker = format!("phbguard-test-marker {:?}", Instant::now());
        UnixDatagram::unbound()
            .unwrap()
            .send_to(marker.as_bytes(), &self.path)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let mut lines = self.lines.lock().unwrap();
                if let Some(at) = lines.iter().position(|l| *l == marker) {
                    // Whatever came after the marker is the next take's.
                    let later = lines.split_off(at + 1);
                    let mut taken = std::mem::replace(&mut *lines, later);
                    taken.pop();
                    return taken;
                }
            }
            assert!(Instant::now() < deadline, "the log reader never got the marker");
            std::thread::sleep(Duration::from_millis(2));
        }
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

/// A UUID for guests that need one without libvirt.
pub const UUID: &str = "6a1f0c2e-5b7d-4c3e-9f10-2b8e4d6a7c01";

/// What every hook test needs: a fake host, a syslog socket, a policy file naming both (and a
/// mark directory of its own), all in temporary directories, gone on drop.
pub struct World {
    pub host: support::FakeSysfs,
    pub log: LogSink,
    pub policy: Policy,
    /// Holds the incoming-mark directory (`state`).
    pub state: tempfile::TempDir,
}

impl World {
    pub fn new(extra_policy: &str) -> World {
        let state = tempfile::tempdir().unwrap();
        let w = World {
            host: fake_host(),
            log: LogSink::new(),
            policy: Policy::new(""),
            state,
        };
        w.set_policy(extra_policy);
        w
    }

    /// Where the hook keeps its incoming marks in this world.
    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("incoming")
    }

    /// The policy lines that point the hook at this world.
    pub fn base_policy(&self) -> String {
        format!(
            "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\nstate_dir = \"{}\"\n",
            self.host.path_str(),
            self.log.path_str(),
            self.state_dir().display()
        )
    }

    /// The policy file: this world's lines, then `extra`.
    pub fn set_policy(&self, extra: &str) {
        self.policy.write(&format!("{}{extra}", self.base_policy()));
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

/// A `pci-root` controller with any `<model name>` and target index.
pub fn pci_root(index: u32, model: &str, target: u32) -> String {
    format!(
        "<controller type='pci' index='{index}' model='pci-root'><model name='{model}'/>\
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

/// A guest with a hostdev on the default PHB (an error) and a pci-bridge (a warning).
pub fn bad_guest(name: &str) -> String {
    guest_with(
        name,
        UUID,
        None,
        &format!("{}{}", hostdev("0002:02:00.0", 0, 5), bridge(1, 6)),
    )
}

/// A compliant guest with a hostdev on a PHB of its own.
pub fn good_guest(name: &str) -> String {
    guest_with(
        name,
        UUID,
        None,
        &format!("{}{}", phb(1, 1), hostdev("0002:02:00.0", 1, 1)),
    )
}

/// For every error rule a pSeries guest can break and libvirt lets one define: the devices of
/// a guest that breaks it (on [`fake_host`]), and the error findings it has (rule ids). The
/// hook's CLI tests and its real-libvirtd tests both run this table.
pub fn rule_scenarios() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        (
            "hostdev-on-default-phb",
            hostdev("0002:02:00.0", 0, 5),
            vec!["hostdev-on-default-phb"],
        ),
        (
            "hostdev-behind-bridge",
            format!("{}{}", bridge(1, 6), hostdev("0002:02:00.0", 1, 1)),
            vec!["hostdev-behind-bridge"],
        ),
        (
            "phb-mixes-iommu-groups",
            format!(
                "{}{}{}",
                phb(1, 1),
                hostdev("0002:01:00.0", 1, 1),
                hostdev("0002:02:00.0", 1, 2)
            ),
            vec!["phb-mixes-iommu-groups"],
        ),
        (
            "iommu-group-split",
            format!(
                "{}{}{}{}",
                phb(1, 1),
                phb(2, 2),
                hostdev("0003:01:00.0", 1, 1),
                hostdev("0003:01:00.1", 2, 1)
            ),
            vec!["iommu-group-split"],
        ),
        (
            "emulated-on-hostdev-phb",
            format!("{}{}{}", phb(1, 1), hostdev("0002:02:00.0", 1, 1), scsi(0, 1, 2)),
            vec!["emulated-on-hostdev-phb"],
        ),
        // Without the hook QEMU itself would fail later ("PHB 2 already attached").
        (
            "phb-target-duplicate",
            format!("{}{}", phb(1, 2), phb(2, 2)),
            vec!["phb-target-duplicate"],
        ),
    ]
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
