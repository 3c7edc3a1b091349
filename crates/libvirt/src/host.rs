//! The host facts `audit`, `groups` and `fix --domain` judge with: PCI facts from the
//! connection's node devices (or a sysfs tree given with `--sysfs-root`), and which of its
//! networks are hostdev pools.

use std::collections::BTreeMap;
use std::path::Path;

use phbguard_core::host::{GroupUnknown, HostFacts};
use phbguard_core::model::PciAddr;
use phbguard_core::vfio::Binding;
use phbguard_io::sysfs::Sysfs;
use virt::connect::Connect;

use crate::networks::{HostdevPool, hostdev_pools};
use crate::nodedev::NodeDevices;

enum PciFacts<'c> {
    NodeDevices(NodeDevices<'c>),
    Sysfs(Sysfs),
}

pub struct Host<'c> {
    pci: PciFacts<'c>,
    pub pools: BTreeMap<String, HostdevPool>,
}

impl<'c> Host<'c> {
    /// The host behind `conn`; with `sysfs_root`, its PCI facts come from that tree instead,
    /// which must be a directory: any other root would make every host device "not on this
    /// host" ([`Sysfs::check_root`]), a typo passed off as findings.
    pub fn new(conn: &'c Connect, sysfs_root: Option<&Path>) -> Result<Self, String> {
        let pci = match sysfs_root {
            Some(root) => {
                let sysfs = Sysfs::new(root);
                sysfs.check_root()?;
                PciFacts::Sysfs(sysfs)
            }
            None => PciFacts::NodeDevices(NodeDevices::new(conn)),
        };
        Ok(Host {
            pci,
            pools: hostdev_pools(conn)?,
        })
    }
}

impl HostFacts for Host<'_> {
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.iommu_group(addr),
            PciFacts::Sysfs(s) => s.iommu_group(addr),
        }
    }

    // Sysfs answers many at once for less; node devices have no such call.
    fn iommu_groups(&self, addrs: &[PciAddr]) -> Vec<Result<u32, GroupUnknown>> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.iommu_groups(addrs),
            PciFacts::Sysfs(s) => s.iommu_groups(addrs),
        }
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.numa_node(addr),
            PciFacts::Sysfs(s) => s.numa_node(addr),
        }
    }

    fn is_hostdev_network(&self, name: &str) -> Option<bool> {
        Some(self.pools.contains_key(name))
    }

    fn group_members(&self, group: u32) -> Result<Vec<PciAddr>, String> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.group_members(group),
            PciFacts::Sysfs(s) => s.group_members(group),
        }
    }

    fn groups_members(&self, groups: &[u32]) -> Vec<Result<Vec<PciAddr>, String>> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.groups_members(groups),
            PciFacts::Sysfs(s) => s.groups_members(groups),
        }
    }

    fn driver(&self, addr: PciAddr) -> Result<Option<String>, String> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.driver(addr),
            PciFacts::Sysfs(s) => s.driver(addr),
        }
    }

    fn is_bridge(&self, addr: PciAddr) -> Result<bool, String> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.is_bridge(addr),
            PciFacts::Sysfs(s) => s.is_bridge(addr),
        }
    }

    fn bindings(&self, addrs: &[PciAddr]) -> Vec<Binding> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.bindings(addrs),
            PciFacts::Sysfs(s) => s.bindings(addrs),
        }
    }

    fn is_nvlink2_bridge(&self, addr: PciAddr) -> Option<bool> {
        match &self.pci {
            PciFacts::NodeDevices(n) => n.is_nvlink2_bridge(addr),
            PciFacts::Sysfs(s) => s.is_nvlink2_bridge(addr),
        }
    }
}
