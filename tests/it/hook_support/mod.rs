//! Shared by the hook tests (tests/it/hook_cli.rs, tests/it/hook_libvirt.rs): the one test world
//! (fake host, syslog socket, policy file, incoming-mark directory), the installed hook file,
//! and the one table of per-rule guest scenarios.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use phbguard_testkit::xml::{bridge, guest_with, hostdev, phb, scsi};
use phbguard_testkit::{Datagrams, Run};

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
    Run::new(exe)
        .environment_of_a_hook()
        .envs(env.iter().copied())
        .args(args)
        .stdin(stdin)
        .output()
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
    pub log: Datagrams,
    pub policy: Policy,
    /// Holds the incoming-mark directory (`state`).
    pub state: tempfile::TempDir,
}

impl World {
    pub fn new(extra_policy: &str) -> World {
        let state = tempfile::tempdir().unwrap();
        let w = World {
            host: fake_host(),
            log: Datagrams::new(),
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
        // Without the hook libvirt would detach 0005:01:00.0 and QEMU then fail with "group
        // 5 is not viable": its other function stays on mlx5_core.
        (
            "iommu-group-not-viable",
            format!("{}{}", phb(1, 1), hostdev("0005:01:00.0", 1, 1)),
            vec!["iommu-group-not-viable"],
        ),
        // Without the hook QEMU itself would fail later ("PHB 2 already attached").
        (
            "phb-target-duplicate",
            format!("{}{}", phb(1, 2), phb(2, 2)),
            vec!["phb-target-duplicate"],
        ),
    ]
}

/// The fake host every hook test uses: groups 1-5, all on NUMA node 0, every device on
/// vfio-pci but 0005:01:00.1, the other function of group 5, which a host driver holds.
pub fn fake_host() -> support::FakeSysfs {
    support::FakeSysfs::new()
        .device("0002:01:00.0", Some(1), Some(0))
        .device("0002:02:00.0", Some(2), Some(0))
        .device("0003:01:00.0", Some(3), Some(0))
        .device("0003:01:00.1", Some(3), Some(0))
        .device("0004:01:00.0", None, Some(0))
        .device("0005:01:00.0", Some(5), Some(0))
        .device("0005:01:00.1", Some(5), Some(0))
        .driver("0005:01:00.1", Some("mlx5_core"))
}
