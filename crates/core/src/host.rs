//! Facts about the host's PCI devices. [`Sysfs`] reads them from a sysfs tree; [`StaticHost`]
//! holds them in maps for tests and benchmarks. No other module touches the filesystem to judge:
//! [`Facts::gather`] reads what a domain's hostdevs need once, and everything after works on that.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::input::{Links, read_regular};
use crate::model::{Domain, PciAddr};

/// The most phbguard reads of one sysfs attribute (a number and a newline).
const MAX_ATTRIBUTE_BYTES: u64 = 64;

/// Why a host device's IOMMU group could not be learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupUnknown {
    /// No `bus/pci/devices/<addr>` directory: the device is not on this host.
    NoDevice,
    /// The device exists but has no `iommu_group` link (no IOMMU, or VFIO not possible).
    NoLink,
    /// The link exists but does not end in a group number.
    BadLink(String),
    /// The link could not be read (EACCES, ELOOP, EIO...): the real reason, never "no link".
    Unreadable(String),
    /// The source of host facts did not answer (a libvirt call that failed): why.
    Unavailable(String),
}

impl fmt::Display for GroupUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => f.write_str("the host has no such PCI device"),
            Self::NoLink => f.write_str("the host device has no iommu_group link"),
            Self::BadLink(target) => write!(f, "its iommu_group link points to '{target}', not a group"),
            Self::Unreadable(why) => write!(f, "its iommu_group link cannot be read: {why}"),
            Self::Unavailable(why) => write!(f, "its IOMMU group is not known: {why}"),
        }
    }
}

/// Where host facts come from: sysfs on a real host, a table in tests.
pub trait HostFacts {
    /// The host IOMMU group of a PCI device.
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown>;
    /// The host NUMA node of a PCI device; `None` when unknown or `-1`.
    fn numa_node(&self, addr: PciAddr) -> Option<u32>;
    /// Whether the libvirt network `name` is a hostdev pool (`<forward mode='hostdev'>`), whose
    /// interfaces become hostdevs when the guest starts. `None`: this source cannot tell (sysfs
    /// knows no libvirt networks; only a libvirt connection does).
    fn is_hostdev_network(&self, _name: &str) -> Option<bool> {
        None
    }
}

/// A sysfs tree: `/sys` on a real host, a fake tree in tests.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// The sysfs tree at `root` (`/sys` on a real host).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// Where the tree is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the root is a directory. A root that is not would silently make every host
    /// device "not on this host", so callers refuse it (check, fix) or stop trusting their
    /// verdict (the hook judges in warn mode).
    pub fn check_root(&self) -> Result<(), String> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(format!("sysfs root {} is not a directory", self.root.display())),
            Err(e) => Err(format!("sysfs root {}: {e}", self.root.display())),
        }
    }

    /// The device's directory. `addr` is made of parsed numbers and formatted as hex
    /// digits, so the path can only ever name an entry of `bus/pci/devices`.
    fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.root.join("bus/pci/devices").join(addr.to_string())
    }
}

impl HostFacts for Sysfs {
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        let dir = self.device_dir(addr);
        match std::fs::read_link(dir.join("iommu_group")) {
            Ok(target) => {
                let group = target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse().ok());
                group.ok_or_else(|| GroupUnknown::BadLink(target.display().to_string()))
            }
            Err(e) if e.kind() == ErrorKind::NotFound && !dir.is_dir() => Err(GroupUnknown::NoDevice),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(GroupUnknown::NoLink),
            // EINVAL: an iommu_group that is not a symbolic link at all.
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                Err(GroupUnknown::BadLink("(not a symbolic link)".into()))
            }
            Err(e) => Err(GroupUnknown::Unreadable(e.to_string())),
        }
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        // Non-blocking, regular files only, a few bytes: a FIFO or /dev/zero planted in a
        // sysfs tree must not hang or eat a guest start (the kernel's attribute is "-1\n"
        // up to a few digits).
        let path = self.device_dir(addr).join("numa_node");
        let bytes = read_regular(&path, MAX_ATTRIBUTE_BYTES, Links::Follow).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        // The kernel writes -1 when the platform does not say; that parses as no node.
        text.trim().parse::<u32>().ok()
    }
}

/// Host facts held in memory.
#[derive(Debug, Clone, Default)]
pub struct StaticHost {
    groups: HashMap<PciAddr, u32>,
    nodes: HashMap<PciAddr, u32>,
    hostdev_networks: HashSet<String>,
}

impl StaticHost {
    /// A host with no PCI devices.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a device in IOMMU `group`, on NUMA `node` when given.
    pub fn with_device(mut self, addr: PciAddr, group: u32, node: Option<u32>) -> Self {
        self.groups.insert(addr, group);
        if let Some(node) = node {
            self.nodes.insert(addr, node);
        }
        self
    }

    /// Makes the libvirt network `name` a hostdev pool.
    pub fn with_hostdev_network(mut self, name: &str) -> Self {
        self.hostdev_networks.insert(name.to_string());
        self
    }
}

impl HostFacts for StaticHost {
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        self.groups.get(&addr).copied().ok_or(GroupUnknown::NoDevice)
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        self.nodes.get(&addr).copied()
    }

    fn is_hostdev_network(&self, name: &str) -> Option<bool> {
        Some(self.hostdev_networks.contains(name))
    }
}

/// The host facts about one domain's hostdevs, read once: the rules, the fix planner and the
/// re-check of a rewrite all look here, so a run reads each sysfs entry at most once.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    groups: HashMap<PciAddr, Result<u32, GroupUnknown>>,
    nodes: HashMap<PciAddr, u32>,
    /// The networks of the domain's interfaces that the host says are hostdev pools.
    hostdev_networks: HashSet<String>,
}

impl Facts {
    /// Reads the IOMMU group of every hostdev of `domain`, and its NUMA node when the domain
    /// ties guest cells to host nodes (`<numatune><memnode>`: nothing else uses the node).
    pub fn gather(domain: &Domain, host: &dyn HostFacts) -> Self {
        let mut facts = Facts::default();
        for addr in domain.devices.iter().filter_map(|d| d.host_addr()) {
            if facts.groups.contains_key(&addr) {
                continue;
            }
            facts.groups.insert(addr, host.iommu_group(addr));
            if !domain.memnodes.is_empty()
                && let Some(node) = host.numa_node(addr)
            {
                facts.nodes.insert(addr, node);
            }
        }
        for network in domain.devices.iter().filter_map(|d| d.network.as_deref()) {
            if host.is_hostdev_network(network) == Some(true) {
                facts.hostdev_networks.insert(network.to_string());
            }
        }
        facts
    }

    /// Whether the libvirt network `name` is a hostdev pool, as far as the host said.
    pub fn is_hostdev_network(&self, name: &str) -> bool {
        self.hostdev_networks.contains(name)
    }

    /// The IOMMU group of host device `addr`; a device that was not gathered is unknown.
    pub fn group(&self, addr: PciAddr) -> Result<u32, &GroupUnknown> {
        match self.groups.get(&addr) {
            Some(Ok(g)) => Ok(*g),
            Some(Err(why)) => Err(why),
            None => Err(&GroupUnknown::NoDevice),
        }
    }

    /// The NUMA node of host device `addr`, when known.
    pub fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        self.nodes.get(&addr).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: PciAddr = PciAddr {
        domain: 2,
        bus: 1,
        slot: 0,
        function: 0,
    };

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("bus/pci/devices/0002:01:00.0");
        std::fs::create_dir_all(&dev).unwrap();
        (root, dev)
    }

    #[test]
    fn a_root_that_is_not_a_directory_is_refused() {
        assert!(
            Sysfs::new("/nonexistent/sys")
                .check_root()
                .unwrap_err()
                .contains("/nonexistent/sys")
        );
        let err = Sysfs::new("/dev/null").check_root().unwrap_err();
        assert_eq!(err, "sysfs root /dev/null is not a directory");
        assert_eq!(Sysfs::new("/").check_root(), Ok(()));
    }

    #[test]
    fn a_fifo_or_device_as_numa_node_is_no_node_and_does_not_block() {
        let (root, dev) = tree();
        let status = std::process::Command::new("mkfifo")
            .arg(dev.join("numa_node"))
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(Sysfs::new(root.path()).numa_node(DEV), None);
        std::fs::remove_file(dev.join("numa_node")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dev.join("numa_node")).unwrap();
        assert_eq!(Sysfs::new(root.path()).numa_node(DEV), None);
        std::fs::remove_file(dev.join("numa_node")).unwrap();
        std::fs::write(dev.join("numa_node"), "1\n").unwrap();
        assert_eq!(Sysfs::new(root.path()).numa_node(DEV), Some(1));
    }

    #[test]
    fn iommu_group_errors_keep_their_reason() {
        let (root, dev) = tree();
        let host = Sysfs::new(root.path());
        assert_eq!(host.iommu_group(DEV), Err(GroupUnknown::NoLink));
        let other = PciAddr { bus: 9, ..DEV };
        assert_eq!(host.iommu_group(other), Err(GroupUnknown::NoDevice));
        // A loop in the path: ELOOP, not "no link".
        let looped = root.path().join("bus/pci/devices/0002:02:00.0");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        match host.iommu_group(PciAddr { bus: 2, ..DEV }) {
            Err(GroupUnknown::Unreadable(why)) => assert!(why.contains("symbolic links"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A regular file where the link should be.
        std::fs::write(dev.join("iommu_group"), "7").unwrap();
        assert!(matches!(host.iommu_group(DEV), Err(GroupUnknown::BadLink(_))));
        std::fs::remove_file(dev.join("iommu_group")).unwrap();
        std::os::unix::fs::symlink("../../../../kernel/iommu_groups/7", dev.join("iommu_group")).unwrap();
        assert_eq!(host.iommu_group(DEV), Ok(7));
    }
}
