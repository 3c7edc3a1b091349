//! Facts about the host's PCI devices, from a source of [`HostFacts`]: sysfs on a real host
//! (phbguard-io's `Sysfs`), libvirt's node devices (phbguard-libvirt), or [`StaticHost`], maps for
//! tests and benchmarks. [`Facts::gather`] asks what a domain's hostdevs need once, and
//! everything after works on that.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::{DeviceKind, Domain, PciAddr};
use crate::vfio::Binding;

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
    /// The PCI devices of IOMMU group `group` as the host lists them, in address order; `Err`
    /// says why they cannot be told (they are then unknown, never guessed).
    fn group_members(&self, _group: u32) -> Result<Vec<PciAddr>, String> {
        Err("this source of host facts does not list IOMMU groups".into())
    }
    /// The members of several groups, one answer per group in their order: one question
    /// each, unless the source answers many at less cost.
    fn groups_members(&self, groups: &[u32]) -> Vec<Result<Vec<PciAddr>, String>> {
        groups.iter().map(|&g| self.group_members(g)).collect()
    }
    /// The driver bound to a PCI device now (`Ok(None)`: none).
    fn driver(&self, _addr: PciAddr) -> Result<Option<String>, String> {
        Err("this source of host facts does not tell drivers".into())
    }
    /// Whether a PCI device's configuration header is a bridge's (PCI-to-PCI or CardBus).
    fn is_bridge(&self, _addr: PciAddr) -> Result<bool, String> {
        Err("this source of host facts does not tell bridges".into())
    }
    /// What holds each device of `addrs`, one answer per address in their order; whether it
    /// is a bridge is asked only of a device whose driver claims DMA.
    fn bindings(&self, addrs: &[PciAddr]) -> Vec<Binding> {
        addrs
            .iter()
            .map(|&a| {
                let driver = self.driver(a);
                let bridge = Binding::needs_bridge(&driver).then(|| self.is_bridge(a));
                Binding { driver, bridge }
            })
            .collect()
    }
    /// Whether host PCI device `addr` is an NVLink2 bridge of a POWER9 GPU, as libvirt tells
    /// (`ppc64VFIODeviceIsNV2Bridge`: its `of_node` has `ibm,gpu`, `ibm,nvlink`,
    /// `ibm,nvlink-speed` and `memory-region`); `None` when this source cannot tell.
    fn is_nvlink2_bridge(&self, _addr: PciAddr) -> Option<bool> {
        None
    }
}

/// Host facts held in memory.
#[derive(Debug, Clone, Default)]
pub struct StaticHost {
    groups: BTreeMap<PciAddr, u32>,
    nodes: BTreeMap<PciAddr, u32>,
    hostdev_networks: BTreeSet<String>,
    drivers: BTreeMap<PciAddr, String>,
    bridges: BTreeSet<PciAddr>,
    nvlink2: BTreeSet<PciAddr>,
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

    /// Binds the device at `addr` to `driver` (a device without one is bound to none).
    pub fn with_driver(mut self, addr: PciAddr, driver: &str) -> Self {
        self.drivers.insert(addr, driver.to_string());
        self
    }

    /// Makes the device at `addr` a bridge.
    pub fn with_bridge(mut self, addr: PciAddr) -> Self {
        self.bridges.insert(addr);
        self
    }

    /// Makes the device at `addr` an NVLink2 bridge.
    pub fn with_nvlink2(mut self, addr: PciAddr) -> Self {
        self.nvlink2.insert(addr);
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

    fn group_members(&self, group: u32) -> Result<Vec<PciAddr>, String> {
        Ok(self
            .groups
            .iter()
            .filter(|(_, g)| **g == group)
            .map(|(a, _)| *a)
            .collect())
    }

    fn driver(&self, addr: PciAddr) -> Result<Option<String>, String> {
        Ok(self.drivers.get(&addr).cloned())
    }

    fn is_bridge(&self, addr: PciAddr) -> Result<bool, String> {
        Ok(self.bridges.contains(&addr))
    }

    fn is_nvlink2_bridge(&self, addr: PciAddr) -> Option<bool> {
        Some(self.nvlink2.contains(&addr))
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
    /// The members of each IOMMU group of the domain's hostdevs, sorted by group.
    members: Vec<(u32, Result<Vec<PciAddr>, String>)>,
    /// What holds each of those members and each hostdev in those groups, sorted by [`key`].
    bindings: Vec<(u64, Binding)>,
    /// Whether a hostdev is an NVLink2 bridge (read only for a guest with a `<hard_limit>`,
    /// the only thing it changes); `None` when the host cannot tell.
    nvlink2: Option<bool>,
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
        // Only pSeries guests are judged on VFIO's terms.
        if domain.is_pseries() {
            facts.gather_vfio(domain, host);
        }
        facts
    }

    /// Reads what VFIO needs of the groups of the domain's hostdevs: their members and what
    /// holds each (the hostdevs themselves included, listed or not), and for a guest with a
    /// `<hard_limit>`, whether a hostdev is an NVLink2 bridge.
    fn gather_vfio(&mut self, domain: &Domain, host: &dyn HostFacts) {
        let mut groups: Vec<u32> = self
            .groups
            .iter()
            .filter_map(|g| g.as_ref().ok().copied())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let mut addrs: Vec<PciAddr> = Vec::new();
        let listed = host.groups_members(&groups);
        debug_assert_eq!(listed.len(), groups.len(), "one answer per group");
        for (g, members) in groups.into_iter().zip(listed) {
            if let Ok(members) = &members {
                addrs.extend(members);
            }
            self.members.push((g, members));
        }
        // A managed hostdev's driver does not matter (libvirt binds it to vfio-pci at start),
        // so it is not read; an unmanaged one's is, listed by the host or not.
        let (mut managed, mut unmanaged) = (Vec::new(), Vec::new());
        for d in &domain.devices {
            if let DeviceKind::Hostdev { host, managed: m, .. } = d.kind {
                if m { &mut managed } else { &mut unmanaged }.push(host);
            }
        }
        addrs.extend(unmanaged.iter().filter(|&&a| self.group(a).is_ok()));
        addrs.sort_unstable();
        addrs.dedup();
        managed.sort_unstable();
        unmanaged.sort_unstable();
        addrs.retain(|a| managed.binary_search(a).is_err() || unmanaged.binary_search(a).is_ok());
        let bindings = host.bindings(&addrs);
        debug_assert_eq!(bindings.len(), addrs.len(), "one answer per address");
        self.bindings = addrs.iter().map(|&a| key(a)).zip(bindings).collect();
        if domain.memory.hard_limit.is_some() {
            let hostdevs = domain.devices.iter().filter_map(|d| match d.kind {
                DeviceKind::Hostdev { host, .. } => Some(host),
                _ => None,
            });
            let mut any = Some(false);
            // libvirt stops at the first NVLink2 bridge; a source that cannot tell makes the
            // answer unknown unless one is found.
            for addr in hostdevs {
                match host.is_nvlink2_bridge(addr) {
                    Some(true) => {
                        any = Some(true);
                        break;
                    }
                    Some(false) => {}
                    None => any = None,
                }
            }
            self.nvlink2 = any;
        }
    }

    /// The devices of IOMMU group `group` as the host listed them; `None` for a group that
    /// was not read (no hostdev of the domain is in it).
    pub fn group_members(&self, group: u32) -> Option<Result<&[PciAddr], &str>> {
        let i = self.members.binary_search_by_key(&group, |(g, _)| *g).ok()?;
        Some(match &self.members[i].1 {
            Ok(m) => Ok(m.as_slice()),
            Err(why) => Err(why.as_str()),
        })
    }

    /// What holds host device `addr`, when it was read.
    pub fn binding(&self, addr: PciAddr) -> Option<&Binding> {
        let i = self.bindings.binary_search_by_key(&key(addr), |(k, _)| *k).ok()?;
        Some(&self.bindings[i].1)
    }

    /// Whether a hostdev of the domain is an NVLink2 bridge; `None` when not known (or not
    /// read: the domain sets no `<hard_limit>`).
    pub fn nvlink2(&self) -> Option<bool> {
        self.nvlink2
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

    #[test]
    fn sysfs_names_parse_as_pci_addresses() {
        assert_eq!(PciAddr::parse_sysfs("0002:01:00.0"), Some(DEV));
        assert_eq!(
            PciAddr::parse_sysfs("10000:01:00.0").map(|a| a.domain),
            Some(0x10000)
        );
        for bad in [
            "0002:01:00",
            "0002:01:20.0",
            "0002:01:00.8",
            "02:01:00.0",
            "x002:01:00.0",
            "",
        ] {
            assert_eq!(PciAddr::parse_sysfs(bad), None, "{bad}");
        }
    }
}
