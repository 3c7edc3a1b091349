//! The guest's PCI topology as libvirt will build it, worked out once from a [`Domain`] and the
//! host [`Facts`] about its hostdevs: which bus is a PHB and which a bridge, which devices sit
//! directly on each bus, each hostdev's IOMMU group. The rules judge it; the fix planner starts
//! from it. Nothing else rebuilds buses, PHBs or slots.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::host::{Facts, GroupUnknown};
use crate::model::{Device, DeviceKind, Domain, PciAddr, PciController, Subject};
use crate::vfio::Binding;

/// Highest PHB target index QEMU accepts (`SPAPR_MAX_PHBS - 1`, `spapr_phb_placement`); libvirt
/// accepts 0..=30 too.
pub const MAX_TARGET: u32 = 30;
/// The most PHBs a pSeries guest can have: one per target index.
pub const MAX_PHBS: usize = MAX_TARGET as usize + 1;
/// The QEMU device of every pSeries PHB, `<model name>` of its pci-root controller.
pub const PHB_MODEL_NAME: &str = "spapr-pci-host-bridge";
/// Bus numbers a guest PCI address can name.
pub const BUSES: usize = 256;
/// Slots of a PHB that devices may take: libvirt starts at 1 (`minSlot`), 0x1f is the last.
pub const SLOTS: RangeInclusive<u8> = 1..=0x1f;

/// What a bus number refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// No controller and no address names it.
    Unused,
    /// A PHB: a written pci-root controller (its device position) or one libvirt implies (index
    /// 0 always; on pSeries every other bus an address names).
    Phb(Option<usize>),
    /// Any other PCI controller (a pci-bridge, ...), by device position.
    Bridge(usize),
}

/// A hostdev with a guest PCI address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedHostdev {
    /// Position in [`Domain::devices`].
    pub device: usize,
    /// The host PCI device passed through.
    pub host: PciAddr,
    /// The bus its guest address names.
    pub bus: u8,
}

/// The domain's buses and what is directly on each, with the host facts of its hostdevs.
#[derive(Debug)]
pub struct Topology<'d> {
    /// The domain this was built from.
    pub domain: &'d Domain,
    facts: &'d Facts,
    /// Whether the domain is a pSeries guest; only `multiple-pci-roots` judges the others.
    pub pseries: bool,
    buses: Vec<Bus>,
    /// Hostdevs with a guest PCI address, in document order.
    hostdevs: Vec<PlacedHostdev>,
    /// Per bus, the positions in `hostdevs` of hostdevs directly on it.
    hostdevs_on: Vec<Vec<usize>>,
    /// Per bus, the positions of emulated devices directly on it.
    emulated_on: Vec<Vec<usize>>,
    /// Interfaces on a hostdev-pool network (device positions): hostdevs once the guest starts,
    /// of a host device (and IOMMU group) chosen only then. Neither hostdevs nor emulated here.
    pool_interfaces: Vec<usize>,
    /// Per bus, the positions of pool interfaces directly on it.
    pool_interfaces_on: Vec<Vec<usize>>,
}

impl<'d> Topology<'d> {
    /// The topology of `domain`; `facts` must have been gathered for it (or for a domain with
    /// the same hostdevs: a rewrite moves devices, it does not change which host devices).
    pub fn new(domain: &'d Domain, facts: &'d Facts) -> Self {
        let mut buses = vec![Bus::Unused; BUSES];
        for (i, c) in domain.pci_controllers() {
            // An index past the last bus number cannot be named by an address.
            if let Some(bus) = buses.get_mut(c.index as usize) {
                *bus = if c.is_phb() {
                    Bus::Phb(Some(i))
                } else {
                    Bus::Bridge(i)
                };
            }
        }
        // libvirt always has PHB 0, and makes every other bus an address names a PHB.
        if buses[0] == Bus::Unused {
            buses[0] = Bus::Phb(None);
        }
        let mut topology = Topology {
            domain,
            facts,
            pseries: domain.is_pseries(),
            buses,
            hostdevs: Vec::new(),
            hostdevs_on: vec![Vec::new(); BUSES],
            emulated_on: vec![Vec::new(); BUSES],
            pool_interfaces: Vec::new(),
            pool_interfaces_on: vec![Vec::new(); BUSES],
        };
        for (i, addr) in topology.addressed().collect::<Vec<_>>() {
            let bus = addr.bus as usize;
            if topology.buses[bus] == Bus::Unused {
                topology.buses[bus] = Bus::Phb(None);
            }
            let device = &domain.devices[i];
            if let DeviceKind::Hostdev { host, .. } = device.kind {
                topology.hostdevs_on[bus].push(topology.hostdevs.len());
                topology.hostdevs.push(PlacedHostdev {
                    device: i,
                    host,
                    bus: addr.bus,
                });
            } else if device
                .network
                .as_deref()
                .is_some_and(|n| facts.is_hostdev_network(n))
            {
                topology.pool_interfaces.push(i);
                topology.pool_interfaces_on[bus].push(i);
            } else {
                topology.emulated_on[bus].push(i);
            }
        }
        topology
    }

    /// The device at position `i` of [`Domain::devices`].
    pub fn device(&self, i: usize) -> &'d Device {
        &self.domain.devices[i]
    }

    /// What bus number `bus` refers to.
    pub fn bus(&self, bus: u8) -> Bus {
        self.buses[bus as usize]
    }

    /// Whether `bus` is a PHB, written or implied.
    pub fn is_phb(&self, bus: u8) -> bool {
        matches!(self.bus(bus), Bus::Phb(_))
    }

    /// The PCI controller written for `bus`, if any.
    pub fn controller(&self, bus: u8) -> Option<&'d PciController> {
        match self.bus(bus) {
            Bus::Phb(Some(i)) | Bus::Bridge(i) => match &self.device(i).kind {
                DeviceKind::PciController(c) => Some(c),
                _ => None,
            },
            _ => None,
        }
    }

    /// Devices with a guest PCI address that sit on a bus (a PHB is the bus itself: libvirt
    /// refuses an address on one), as positions in [`Domain::devices`] with that address.
    pub fn addressed(&self) -> impl Iterator<Item = (usize, PciAddr)> + use<'d> {
        self.domain
            .devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match &d.kind {
                DeviceKind::PciController(c) if c.is_phb() => None,
                _ => d.address.map(|a| (i, a)),
            })
    }

    /// The PHB controllers written in the definition, with their device positions.
    pub fn written_phbs(&self) -> impl Iterator<Item = (usize, &'d PciController)> + use<'d> {
        self.domain.pci_controllers().filter(|(_, c)| c.is_phb())
    }

    /// Hostdevs with a guest PCI address, in document order.
    pub fn hostdevs(&self) -> &[PlacedHostdev] {
        &self.hostdevs
    }

    /// Hostdevs directly on `bus`.
    pub fn hostdevs_on(&self, bus: u8) -> impl Iterator<Item = &PlacedHostdev> {
        self.hostdevs_on[bus as usize].iter().map(|&h| &self.hostdevs[h])
    }

    /// Emulated devices directly on `bus`, as device positions.
    pub fn emulated_on(&self, bus: u8) -> &[usize] {
        &self.emulated_on[bus as usize]
    }

    /// Interfaces on a hostdev-pool network with a guest PCI address, as device positions.
    pub fn pool_interfaces(&self) -> &[usize] {
        &self.pool_interfaces
    }

    /// Pool interfaces directly on `bus`, as device positions.
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

    /// The spare PHBs, ascending: PHBs other than the default one with no device directly on
    /// them. A hostdev of an IOMMU group the guest does not use yet can be hot-plugged only onto
    /// one of these, and a running guest gets no new PHB (docs/libvirt.md, "Hot-plug and spare
    /// PHBs").
    pub fn spare_phbs(&self) -> impl Iterator<Item = u8> + '_ {
        (1..BUSES)
            .filter(|&b| {
                matches!(self.buses[b], Bus::Phb(_))
                    && self.hostdevs_on[b].is_empty()
                    && self.emulated_on[b].is_empty()
                    && self.pool_interfaces_on[b].is_empty()
            })
            .map(|b| b as u8)
    }

    /// PHBs other than the default one with a device directly on them, ascending: where the
    /// one-group-per-PHB rules look.
    pub fn used_non_default_phbs(&self) -> impl Iterator<Item = u8> + '_ {
        self.used_buses().filter(|&b| b != 0 && self.is_phb(b))
    }

    /// Every bus that is a PHB or a bridge, ascending, with what it is.
    pub fn buses(&self) -> impl Iterator<Item = (u8, Bus)> + '_ {
        self.buses
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != Bus::Unused)
            .map(|(i, &b)| (i as u8, b))
    }

    /// The PHB that `bus` hangs under: `bus` itself when it is a PHB, else the PHB its bridge
    /// sits on, through any number of bridges. `None` for a bridge with no PCI address (libvirt
    /// places it) or a loop of bridges, which libvirt refuses.
    pub fn root_phb(&self, bus: u8) -> Option<u8> {
        let mut bus = bus;
        for _ in 0..BUSES {
            match self.bus(bus) {
                Bus::Phb(_) => return Some(bus),
                Bus::Bridge(i) => bus = self.device(i).address?.bus,
                Bus::Unused => return None,
            }
        }
        None
    }

    /// Whether the device at position `i`, addressed or not, joins a hostdev-pool network.
    pub fn joins_hostdev_pool(&self, i: usize) -> bool {
        self.device(i)
            .network
            .as_deref()
            .is_some_and(|n| self.facts.is_hostdev_network(n))
    }

    /// Whether the device at position `i` is an interface on a hostdev-pool network.
    pub fn is_pool_interface(&self, i: usize) -> bool {
        self.pool_interfaces.contains(&i)
    }

    /// The line a finding about `subject` points at: the device's, a written controller's, or
    /// for a PHB libvirt implies, the first device directly on it.
    pub fn line_of(&self, subject: Subject) -> Option<usize> {
        let device = match subject {
            Subject::HardLimit => return self.domain.memory.hard_limit.map(|h| h.line),
            Subject::Device(i) => i,
            Subject::Controller(index) => {
                let bus = u8::try_from(index).ok()?;
                match self.bus(bus) {
                    Bus::Phb(Some(i)) | Bus::Bridge(i) => i,
                    _ => *self.hostdevs_on[bus as usize]
                        .first()
                        .map(|&h| &self.hostdevs[h].device)
                        .or_else(|| self.emulated_on[bus as usize].first())
                        .or_else(|| self.pool_interfaces_on[bus as usize].first())?,
                }
            }
        };
        Some(self.device(device).line)
    }

    /// The IOMMU group of the hostdev at position `device`, or why it is unknown; `None` for a
    /// device that is not a hostdev.
    pub fn group(&self, device: usize) -> Option<Result<u32, &'d GroupUnknown>> {
        let host = self.device(device).host_addr()?;
        Some(self.facts.group(host))
    }

    /// The IOMMU group of the hostdev at position `device`, when known.
    pub fn known_group(&self, device: usize) -> Option<u32> {
        self.group(device)?.ok()
    }

    /// Where each IOMMU group's hostdevs sit: per known group, every PHB directly holding some
    /// of them, with how many, in the order the PHBs first appear in the document. A hostdev
    /// behind a bridge is in no group's count (`hostdev-behind-bridge` judges it). The rule on
    /// split groups and the fix planner choose a group's home PHB from this, each for its own
    /// end: the rule names where most of a group already is, the planner gives each group a
    /// non-default PHB of its own.
    pub fn groups_on_phbs(&self) -> BTreeMap<u32, Vec<(u8, usize)>> {
        let mut placed: BTreeMap<u32, Vec<(u8, usize)>> = BTreeMap::new();
        for h in &self.hostdevs {
            let Some(group) = self.known_group(h.device).filter(|_| self.is_phb(h.bus)) else {
                continue;
            };
            let phbs = placed.entry(group).or_default();
            match phbs.iter_mut().find(|(bus, _)| *bus == h.bus) {
                Some((_, n)) => *n += 1,
                None => phbs.push((h.bus, 1)),
            }
        }
        placed
    }

    /// Whether the device at position `i` is an interface on a hostdev-pool network, with a
    /// guest address or not.
    pub fn is_pool_interface_anywhere(&self, i: usize) -> bool {
        self.device(i)
            .network
            .as_deref()
            .is_some_and(|n| self.facts.is_hostdev_network(n))
    }

    /// The devices of IOMMU group `group` as the host listed them (see [`Facts::group_members`]).
    pub fn group_members(&self, group: u32) -> Option<Result<&'d [PciAddr], &'d str>> {
        self.facts.group_members(group)
    }

    /// What holds host device `addr`, when it was read.
    pub fn binding(&self, addr: PciAddr) -> Option<&'d Binding> {
        self.facts.binding(addr)
    }

    /// Whether a hostdev is an NVLink2 bridge, when known.
    pub fn nvlink2(&self) -> Option<bool> {
        self.facts.nvlink2()
    }

    /// The host NUMA node of the hostdev at position `device`, when known.
    pub fn numa_node(&self, device: usize) -> Option<u32> {
        self.facts.numa_node(self.device(device).host_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::StaticHost;

    #[test]
    fn findings_point_at_the_device_the_written_controller_or_the_first_device_on_an_implied_phb() {
        let xml = "<domain>\n<os><type arch='ppc64le' machine='pseries'/></os>\n<devices>\n\
                   <controller type='pci' index='1' model='pci-bridge'>\n\
                   <address type='pci' bus='0' slot='3'/></controller>\n\
                   <disk type='file'><target dev='vda'/>\n<address type='pci' bus='2' slot='1'/></disk>\n\
                   </devices></domain>";
        let domain = crate::parse_domain(xml.as_bytes()).unwrap();
        let facts = Facts::gather(&domain, &StaticHost::new());
        let t = Topology::new(&domain, &facts);
        assert_eq!(t.line_of(Subject::Device(1)), Some(6));
        assert_eq!(t.line_of(Subject::Controller(1)), Some(4));
        assert_eq!(t.bus(2), Bus::Phb(None));
        assert_eq!(t.line_of(Subject::Controller(2)), Some(6));
        assert_eq!(t.line_of(Subject::Controller(0)), Some(4));
        assert_eq!(t.line_of(Subject::Controller(5)), None);
        assert_eq!(t.bus(3), Bus::Unused);
    }
}
