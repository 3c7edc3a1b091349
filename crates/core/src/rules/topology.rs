//! What every rule needs to know about a domain, worked out once: which bus is what, which
//! devices sit directly on each bus, and the IOMMU group of each hostdev on a PHB.

use crate::host::{GroupUnknown, HostFacts};
use crate::model::{Device, DeviceKind, Domain, PciAddr, PciController};

/// Number of possible PCI bus numbers in a guest address.
const BUSES: usize = 256;

/// A hostdev with a guest PCI address.
#[derive(Debug, Clone)]
pub struct PlacedHostdev {
    /// Position in [`Domain::devices`].
    pub device: usize,
    pub host: PciAddr,
    pub bus: u8,
    /// Looked up only for hostdevs directly on a PHB: the others are judged by
    /// `hostdev-behind-bridge` alone.
    pub group: Option<Result<u32, GroupUnknown>>,
}

/// What a bus number refers to.
#[derive(Debug, Clone, Copy)]
pub enum Bus<'d> {
    /// A `pci-root` controller, or a bus libvirt will give one (every missing bus of a
    /// pSeries guest, and index 0 of any POWER guest).
    Phb(Option<&'d PciController>),
    /// Any other PCI controller: a pci-bridge and the like.
    Bridge(&'d PciController),
}

pub struct Topology<'d> {
    pub domain: &'d Domain,
    pub host: &'d dyn HostFacts,
    pub pseries: bool,
    controllers: Vec<Option<&'d PciController>>,
    pub hostdevs: Vec<PlacedHostdev>,
    /// Per bus, the positions in `hostdevs` of hostdevs directly on it.
    hostdevs_on: Vec<Vec<usize>>,
    /// Per bus, the positions in [`Domain::devices`] of emulated devices directly on it.
    emulated_on: Vec<Vec<usize>>,
    /// Interfaces on a hostdev-pool network (positions in [`Domain::devices`]): hostdevs once
    /// the guest starts, of a host device (and IOMMU group) chosen only then.
    pub pool_interfaces: Vec<usize>,
    /// Per bus, the positions in [`Domain::devices`] of pool interfaces directly on it.
    pool_interfaces_on: Vec<Vec<usize>>,
}

impl<'d> Topology<'d> {
    pub fn new(domain: &'d Domain, host: &'d dyn HostFacts) -> Self {
        let mut controllers = vec![None; BUSES];
        for (_, c) in domain.pci_controllers() {
            controllers[c.index as usize] = Some(c);
        }
        let mut topology = Topology {
            domain,
            host,
            pseries: domain.is_pseries(),
            controllers,
            hostdevs: Vec::new(),
            hostdevs_on: vec![Vec::new(); BUSES],
            emulated_on: vec![Vec::new(); BUSES],
            pool_interfaces: Vec::new(),
            pool_interfaces_on: vec![Vec::new(); BUSES],
        };
        for (i, dev) in domain.devices.iter().enumerate() {
            let Some(addr) = dev.address else { continue };
            let bus = addr.bus as usize;
            match dev.kind {
                DeviceKind::Hostdev { host: host_addr, .. } => {
                    let on_phb = matches!(topology.bus(addr.bus), Bus::Phb(_));
                    let group = on_phb.then(|| host.iommu_group(host_addr));
                    topology.hostdevs_on[bus].push(topology.hostdevs.len());
                    topology.hostdevs.push(PlacedHostdev {
                        device: i,
                        host: host_addr,
                        bus: addr.bus,
                        group,
                    });
                }
                // A PHB is the bus itself; libvirt refuses an address on one.
                DeviceKind::PciController(ref c) if c.is_phb() => {}
                DeviceKind::Other
                    if dev
                        .network
                        .as_deref()
                        .is_some_and(|n| host.is_hostdev_network(n) == Some(true)) =>
                {
                    topology.pool_interfaces.push(i);
                    topology.pool_interfaces_on[bus].push(i);
                }
                _ => topology.emulated_on[bus].push(i),
            }
        }
        topology
    }

    pub fn device(&self, i: usize) -> &'d Device {
        &self.domain.devices[i]
    }

    pub fn bus(&self, bus: u8) -> Bus<'d> {
        match self.controllers[bus as usize] {
            Some(c) if !c.is_phb() => Bus::Bridge(c),
            other => Bus::Phb(other),
        }
    }

    /// Hostdevs directly on `bus`.
    pub fn hostdevs_on(&self, bus: u8) -> impl Iterator<Item = &PlacedHostdev> {
        self.hostdevs_on[bus as usize].iter().map(|&h| &self.hostdevs[h])
    }

    /// Emulated devices directly on `bus`, as positions in [`Domain::devices`].
    pub fn emulated_on(&self, bus: u8) -> &[usize] {
        &self.emulated_on[bus as usize]
    }

    /// Pool interfaces directly on `bus`, as positions in [`Domain::devices`].
    pub fn pool_interfaces_on(&self, bus: u8) -> &[usize] {
        &self.pool_interfaces_on[bus as usize]
    }

    /// Bus numbers that have a device directly on them, ascending.
    pub fn used_buses(&self) -> impl Iterator<Item = u8> + '_ {
        (0..BUSES)
            .filter(|&b| {
                !self.hostdevs_on[b].is_empty()
                    || !self.emulated_on[b].is_empty()
                    || !self.pool_interfaces_on[b].is_empty()
            })
            .map(|b| b as u8)
    }
}
