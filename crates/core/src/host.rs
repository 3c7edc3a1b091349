//! Facts about the host's PCI devices. [`Sysfs`] reads them from a sysfs tree; [`StaticHost`]
//! holds them in maps for tests and benchmarks. No other module touches the filesystem to judge:
//! [`Facts::gather`] reads what a domain's hostdevs need once, and everything after works on that.

use std::collections::HashMap;
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::model::{Domain, PciAddr};

/// Why a host device's IOMMU group could not be learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupUnknown {
    /// No `bus/pci/devices/<addr>` directory: the device is not on this host.
    NoDevice,
    /// The device exists but has no `iommu_group` link (no IOMMU, or VFIO not possible).
    NoLink,
    /// The link exists but does not end in a group number.
    BadLink(String),
}

impl fmt::Display for GroupUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => f.write_str("the host has no such PCI device"),
            Self::NoLink => f.write_str("the host device has no iommu_group link"),
            Self::BadLink(target) => write!(f, "its iommu_group link points to '{target}', not a group"),
        }
    }
}

/// Where host facts come from: sysfs on a real host, a table in tests.
pub trait HostFacts {
    /// The host IOMMU group of a PCI device.
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown>;
    /// The host NUMA node of a PCI device; `None` when unknown or `-1`.
    fn numa_node(&self, addr: PciAddr) -> Option<u32>;
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
            Err(_) => Err(GroupUnknown::NoLink),
        }
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        let text = std::fs::read_to_string(self.device_dir(addr).join("numa_node")).ok()?;
        // The kernel writes -1 when the platform does not say; that parses as no node.
        text.trim().parse::<u32>().ok()
    }
}

/// Host facts held in memory.
#[derive(Debug, Clone, Default)]
pub struct StaticHost {
    groups: HashMap<PciAddr, u32>,
    nodes: HashMap<PciAddr, u32>,
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
}

impl HostFacts for StaticHost {
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        self.groups.get(&addr).copied().ok_or(GroupUnknown::NoDevice)
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        self.nodes.get(&addr).copied()
    }
}

/// The host facts about one domain's hostdevs, read once: the rules, the fix planner and the
/// re-check of a rewrite all look here, so a run reads each sysfs entry at most once.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    groups: HashMap<PciAddr, Result<u32, GroupUnknown>>,
    nodes: HashMap<PciAddr, u32>,
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
        facts
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
