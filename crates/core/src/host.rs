//! Facts about the host's PCI devices. [`Sysfs`] reads them from a sysfs tree; [`StaticHost`]
//! holds them in maps for tests and benchmarks. No other module touches the filesystem to judge:
//! [`Facts::gather`] reads what a domain's hostdevs need once, and everything after works on that.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};

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
    /// The groups of several devices, one answer per address in their order: one question
    /// each, unless the source answers many at less cost.
    fn iommu_groups(&self, addrs: &[PciAddr]) -> Vec<Result<u32, GroupUnknown>> {
        addrs.iter().map(|&a| self.iommu_group(a)).collect()
    }
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
        match self.unusable() {
            None => Ok(()),
            Some(why) => Err(format!("sysfs root {}: {why}", self.root.display())),
        }
    }

    /// Why the root cannot be read from (`not a directory`, or the error), if it cannot: for a
    /// message that names the root its own way (the policy file's `sysfs_root = "..."`).
    pub fn unusable(&self) -> Option<String> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("not a directory".into()),
            Err(e) => Some(e.to_string()),
        }
    }

    /// The device's directory. `addr` is made of parsed numbers and formatted as hex
    /// digits, so the path can only ever name an entry of `bus/pci/devices`.
    fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.root.join("bus/pci/devices").join(addr.to_string())
    }

    /// `bus/pci/devices` opened (O_PATH: only walked from, never listed), or `None` when it
    /// cannot be: each question then goes by the full path, whose error says why.
    fn open_devices(&self) -> Option<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(CWD, self.root.join("bus/pci/devices"), flags, Mode::empty()).ok()
    }

    /// The IOMMU group of `addr`, its link read under the open `bus/pci/devices`.
    fn iommu_group_at(devices: impl AsFd, addr: PciAddr) -> Result<u32, GroupUnknown> {
        let name = addr.to_string();
        let link = rustix::fs::readlinkat(&devices, format!("{name}/iommu_group"), Vec::new())
            .map(|target| PathBuf::from(OsString::from_vec(target.into_bytes())))
            .map_err(io::Error::from);
        group_of(link, || {
            rustix::fs::statat(&devices, &name, AtFlags::empty())
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode).is_dir())
        })
    }
}

/// What an `iommu_group` link says: `link` is the result of reading it, `device_is_dir` tells
/// a missing device from a device without the link (asked only then).
fn group_of(link: io::Result<PathBuf>, device_is_dir: impl FnOnce() -> bool) -> Result<u32, GroupUnknown> {
    match link {
        Ok(target) => {
            let group = target
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok());
            group.ok_or_else(|| GroupUnknown::BadLink(target.display().to_string()))
        }
        Err(e) if e.kind() == ErrorKind::NotFound && !device_is_dir() => Err(GroupUnknown::NoDevice),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(GroupUnknown::NoLink),
        // EINVAL: an iommu_group that is not a symbolic link at all.
        Err(e) if e.kind() == ErrorKind::InvalidInput => {
            Err(GroupUnknown::BadLink("(not a symbolic link)".into()))
        }
        Err(e) => Err(GroupUnknown::Unreadable(e.to_string())),
    }
}

impl HostFacts for Sysfs {
    /// As libvirt reads it (src/util/virpci.c, virPCIDeviceAddressGetIOMMUGroupNum): the
    /// device's own `iommu_group` link, symbolic links followed on the way as a path lookup
    /// does.
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        let dir = self.device_dir(addr);
        group_of(std::fs::read_link(dir.join("iommu_group")), || dir.is_dir())
    }

    /// Each link read relative to `bus/pci/devices` opened once: the kernel walks two path
    /// components per device instead of the whole path (a 2,000-device guest asks about 1,000).
    fn iommu_groups(&self, addrs: &[PciAddr]) -> Vec<Result<u32, GroupUnknown>> {
        match self.open_devices() {
            Some(devices) => addrs.iter().map(|&a| Self::iommu_group_at(&devices, a)).collect(),
            None => addrs.iter().map(|&a| self.iommu_group(a)).collect(),
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
    groups: BTreeMap<PciAddr, u32>,
    nodes: BTreeMap<PciAddr, u32>,
    hostdev_networks: BTreeSet<String>,
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
///
/// Sorted tables searched by halves on [`key`], not hash maps: a guest has a few to a thousand
/// host devices, and std's hash maps cost a getrandom(2) per process and SipHash per look-up.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The [`key`]s of the gathered devices, sorted, each once; `groups[i]` is for `keys[i]`.
    keys: Vec<u64>,
    groups: Vec<Result<u32, GroupUnknown>>,
    /// The NUMA nodes that are known, sorted by [`key`].
    nodes: Vec<(u64, u32)>,
    /// The networks of the domain's interfaces that the host says are hostdev pools.
    hostdev_networks: BTreeSet<String>,
}

/// A PCI address as one number (32 + 8 + 8 + 8 bits), ordered as the address is: one compare
/// per step of a search.
fn key(a: PciAddr) -> u64 {
    (u64::from(a.domain) << 24) | (u64::from(a.bus) << 16) | (u64::from(a.slot) << 8) | u64::from(a.function)
}

impl Facts {
    /// Reads the IOMMU group of every hostdev of `domain`, and its NUMA node when the domain
    /// ties guest cells to host nodes (`<numatune><memnode>`: nothing else uses the node).
    pub fn gather(domain: &Domain, host: &dyn HostFacts) -> Self {
        let mut facts = Facts::default();
        let mut addrs: Vec<PciAddr> = domain.devices.iter().filter_map(|d| d.host_addr()).collect();
        // Sorted and each once, as the tables are searched.
        addrs.sort_unstable();
        addrs.dedup();
        facts.keys = addrs.iter().map(|&a| key(a)).collect();
        facts.groups = host.iommu_groups(&addrs);
        debug_assert_eq!(facts.groups.len(), facts.keys.len(), "one answer per address");
        if !domain.memnodes.is_empty() {
            facts.nodes = addrs
                .iter()
                .filter_map(|&a| Some((key(a), host.numa_node(a)?)))
                .collect();
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
        match self.keys.binary_search(&key(addr)) {
            Ok(i) => self.groups[i].as_ref().copied(),
            Err(_) => Err(&GroupUnknown::NoDevice),
        }
    }

    /// The NUMA node of host device `addr`, when known.
    pub fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        let i = self.nodes.binary_search_by_key(&key(addr), |&(k, _)| k).ok()?;
        Some(self.nodes[i].1)
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
        assert_eq!(err, "sysfs root /dev/null: not a directory");
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

    /// The group of `addr` asked alone (by the full path) and in a batch (under the open
    /// `bus/pci/devices`): the two ways must agree on every answer.
    fn group(host: &Sysfs, addr: PciAddr) -> Result<u32, GroupUnknown> {
        let alone = host.iommu_group(addr);
        let batch = host.iommu_groups(&[DEV, addr]).pop().unwrap();
        assert_eq!(alone, batch, "{addr}");
        alone
    }

    #[test]
    fn iommu_group_errors_keep_their_reason() {
        let (root, dev) = tree();
        let host = Sysfs::new(root.path());
        assert_eq!(group(&host, DEV), Err(GroupUnknown::NoLink));
        let other = PciAddr { bus: 9, ..DEV };
        assert_eq!(group(&host, other), Err(GroupUnknown::NoDevice));
        // A loop in the path: ELOOP, not "no link".
        let looped = root.path().join("bus/pci/devices/0002:02:00.0");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        match group(&host, PciAddr { bus: 2, ..DEV }) {
            Err(GroupUnknown::Unreadable(why)) => assert!(why.contains("symbolic links"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A device entry that is a file: its link cannot be read (ENOTDIR), and says why.
        std::fs::write(root.path().join("bus/pci/devices/0002:03:00.0"), "").unwrap();
        match group(&host, PciAddr { bus: 3, ..DEV }) {
            Err(GroupUnknown::Unreadable(why)) => assert!(why.contains("Not a directory"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A regular file where the link should be.
        std::fs::write(dev.join("iommu_group"), "7").unwrap();
        assert!(matches!(group(&host, DEV), Err(GroupUnknown::BadLink(_))));
        std::fs::remove_file(dev.join("iommu_group")).unwrap();
        std::fs::create_dir_all(root.path().join("kernel/iommu_groups/7")).unwrap();
        std::os::unix::fs::symlink("../../../../kernel/iommu_groups/7", dev.join("iommu_group")).unwrap();
        assert_eq!(group(&host, DEV), Ok(7));
        // A link to something not a group.
        let odd = PciAddr { bus: 4, ..DEV };
        let odd_dir = root.path().join("bus/pci/devices/0002:04:00.0");
        std::fs::create_dir_all(&odd_dir).unwrap();
        std::os::unix::fs::symlink(
            "../../../../kernel/iommu_groups/seven",
            odd_dir.join("iommu_group"),
        )
        .unwrap();
        assert_eq!(
            group(&host, odd),
            Err(GroupUnknown::BadLink(
                "../../../../kernel/iommu_groups/seven".into()
            ))
        );
        // The batch answers in the order asked.
        assert_eq!(
            host.iommu_groups(&[other, DEV, odd, DEV]),
            [host.iommu_group(other), Ok(7), host.iommu_group(odd), Ok(7)]
        );
    }

    #[test]
    fn without_a_devices_directory_every_device_is_missing_or_unreadable() {
        // No bus/pci/devices at all: every device is not on this host.
        let root = tempfile::tempdir().unwrap();
        let host = Sysfs::new(root.path());
        assert_eq!(host.iommu_groups(&[DEV]), [Err(GroupUnknown::NoDevice)]);
        assert_eq!(host.iommu_group(DEV), Err(GroupUnknown::NoDevice));
        // bus/pci/devices is a file: the batch cannot open it and says what the path says.
        std::fs::create_dir_all(root.path().join("bus/pci")).unwrap();
        std::fs::write(root.path().join("bus/pci/devices"), "").unwrap();
        match &host.iommu_groups(&[DEV])[..] {
            [Err(GroupUnknown::Unreadable(why))] => assert!(why.contains("Not a directory"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(host.iommu_groups(&[DEV]), [host.iommu_group(DEV)]);
    }

    #[test]
    fn keys_order_addresses_as_they_are_ordered() {
        // A domain may use 32 bits (VMD hosts): the key keeps all of them above bus, slot
        // and function.
        let addrs = [
            PciAddr {
                domain: u32::MAX,
                bus: 0,
                slot: 0,
                function: 0,
            },
            PciAddr {
                domain: 0x1_0000,
                bus: 0xff,
                slot: 0x1f,
                function: 7,
            },
            PciAddr {
                domain: 0xffff,
                bus: 0,
                slot: 0,
                function: 0,
            },
            PciAddr {
                domain: 1,
                bus: 0xff,
                slot: 0x1f,
                function: 7,
            },
            PciAddr {
                domain: 1,
                bus: 0xff,
                slot: 0x1f,
                function: 6,
            },
            PciAddr {
                domain: 1,
                bus: 2,
                slot: 0x1f,
                function: 7,
            },
            PciAddr {
                domain: 0,
                bus: 0,
                slot: 0,
                function: 0,
            },
            DEV,
        ];
        for a in addrs {
            for b in addrs {
                assert_eq!(key(a).cmp(&key(b)), a.cmp(&b), "{a} {b}");
            }
        }
    }
}
