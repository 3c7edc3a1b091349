//! Facts about the host's PCI devices, from a source of [`HostFacts`]: sysfs on a real host
//! (phbguard-io's `Sysfs`), libvirt's node devices (phbguard-libvirt), or [`StaticHost`], maps for
//! tests and benchmarks. [`Facts::gather`] asks what a domain's hostdevs need once, and
//! everything after works on that.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

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
