//! Spare PHBs: PHBs other than the default one with nothing on them. QEMU creates a pSeries
//! guest's PHBs when it starts and libvirt hot-plugs none, so a running guest can take a
//! hostdev of an IOMMU group it does not use yet only onto a spare one (docs/libvirt.md,
//! "Hot-plug and spare PHBs"). `fix --spare-phbs` keeps them in a definition; `audit` counts
//! them; the watcher says where a hot-plugged device landed.

use crate::host::Facts;
use crate::model::{Domain, PciAddr};
use crate::topology::Topology;

/// A spare PHB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparePhb {
    /// Its controller index, the bus number an address names.
    pub index: u32,
    /// Its `<target index>`, when written.
    pub target: Option<u32>,
    /// Its guest NUMA cell (`<target><node>`), when tied to one.
    pub node: Option<u32>,
}

/// The spare PHBs of a pSeries guest, ascending; `None` for a guest that is not pSeries (it
/// has no PHBs to spare).
pub fn spare_phbs(domain: &Domain, facts: &Facts) -> Option<Vec<SparePhb>> {
    let t = Topology::new(domain, facts);
    t.pseries.then(|| spares_of(&t))
}

fn spares_of(t: &Topology<'_>) -> Vec<SparePhb> {
    t.spare_phbs()
        .map(|bus| {
            let c = t.controller(bus);
            SparePhb {
                index: u32::from(bus),
                target: c.and_then(|c| c.target_index),
                node: c.and_then(|c| c.numa_node),
            }
        })
        .collect()
}

/// Where a hot-plugged device sits in a running guest's live definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landing {
    /// How reports name the device: `hostdev 0002:02:00.0`, `disk vdb`.
    pub device: String,
    /// Its guest PCI address; `None` for a device that takes no PCI slot (USB, spapr-vio...).
    pub address: Option<PciAddr>,
    /// The PHB it hangs under, and that PHB's target index.
    pub phb: Option<(u8, Option<u32>)>,
    /// It is the only device directly on a PHB other than the default one: that PHB was a
    /// spare until it came.
    pub took_spare: bool,
    /// The spare PHBs the guest has now.
    pub spares_left: usize,
}

impl Landing {
    /// The spare PHBs the guest had before the device came.
    pub fn spares_before(&self) -> usize {
        self.spares_left + usize::from(self.took_spare)
    }

    /// One sentence for the log: where it landed, and what is left for the next hot-plug.
    pub fn describe(&self) -> String {
        let left = match self.spares_left {
            0 => "no spare PHB left: a passthrough device of an IOMMU group this guest does not use \
                  yet cannot be hot-plugged until the guest has one (add spares to its definition, \
                  'phbguard fix --spare-phbs N', then shut it down and start it)"
                .to_string(),
            1 => "1 spare PHB left".to_string(),
            n => format!("{n} spare PHBs left"),
        };
        let phb = |(index, target): (u8, Option<u32>)| match (index, target) {
            (0, _) => "the default PHB".to_string(),
            (index, Some(target)) => format!("PHB index {index} target {target}"),
            (index, None) => format!("PHB index {index}"),
        };
        let place = match (self.address, self.phb) {
            (None, _) => "takes no PCI slot".to_string(),
            (Some(a), Some(p)) if self.took_spare => format!("took spare {} at {a}", phb(p)),
            (Some(a), Some(p)) => format!("landed at {a} on {}", phb(p)),
            (Some(a), None) => format!("landed at {a}, behind a bridge on no PHB"),
        };
        format!("{} {place}; {left}", self.device)
    }
}

/// Where the device with `<alias name='ALIAS'>` sits in the live definition `domain`; `None`
/// for a guest that is not pSeries or a device it no longer has.
pub fn landing(domain: &Domain, facts: &Facts, alias: &str) -> Option<Landing> {
    let t = Topology::new(domain, facts);
    if !t.pseries {
        return None;
    }
    let i = domain
        .devices
        .iter()
        .position(|d| d.alias.as_deref() == Some(alias))?;
    let device = &domain.devices[i];
    let address = device.address;
    let phb = address.and_then(|a| t.root_phb(a.bus)).map(|bus| {
        (
            bus,
            t.controller(bus)
                .and_then(|c| c.target_index)
                .or((bus == 0).then_some(0)),
        )
    });
    let took_spare = address.is_some_and(|a| {
        a.bus != 0 && t.is_phb(a.bus) && t.addressed().filter(|&(_, b)| b.bus == a.bus).count() == 1
    });
    Some(Landing {
        device: device.name(),
        address,
        phb,
        took_spare,
        spares_left: spares_of(&t).len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::StaticHost;
    use crate::parse_domain;

    const GUEST: &str = "<domain><os><type arch='ppc64le' machine='pseries'/></os><devices>\
        <controller type='pci' index='0' model='pci-root'><target index='0'/></controller>\
        <controller type='pci' index='1' model='pci-root'><target index='1'/></controller>\
        <controller type='pci' index='2' model='pci-root'><target index='2'><node>1</node></target></controller>\
        <controller type='pci' index='3' model='pci-root'><target index='3'/></controller>\
        <disk type='file'><target dev='vda'/><alias name='virtio-disk0'/>\
        <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>\
        <hostdev mode='subsystem' type='pci'><source><address domain='0x0002' bus='0x02' slot='0x00' function='0x0'/></source>\
        <alias name='hostdev0'/><address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/></hostdev>\
        <controller type='usb' index='0' model='qemu-xhci'><alias name='usb'/></controller>\
        </devices></domain>";

    fn facts(domain: &Domain) -> Facts {
        Facts::gather(domain, &StaticHost::new())
    }

    #[test]
    fn spares_are_the_non_default_phbs_with_nothing_on_them() {
        let d = parse_domain(GUEST.as_bytes()).unwrap();
        let spares = spare_phbs(&d, &facts(&d)).unwrap();
        let indexes: Vec<(u32, Option<u32>, Option<u32>)> =
            spares.iter().map(|s| (s.index, s.target, s.node)).collect();
        assert_eq!(indexes, [(2, Some(2), Some(1)), (3, Some(3), None)]);
        let x86 = GUEST.replace("ppc64le", "x86_64");
        let d = parse_domain(x86.as_bytes()).unwrap();
        assert_eq!(spare_phbs(&d, &facts(&d)), None);
    }

    #[test]
    fn a_device_alone_on_a_phb_took_a_spare() {
        let d = parse_domain(GUEST.as_bytes()).unwrap();
        let f = facts(&d);
        let hostdev = landing(&d, &f, "hostdev0").unwrap();
        assert!(hostdev.took_spare);
        assert_eq!((hostdev.spares_before(), hostdev.spares_left), (3, 2));
        assert_eq!(
            hostdev.describe(),
            "hostdev 0002:02:00.0 took spare PHB index 1 target 1 at 0000:01:01.0; 2 spare PHBs left"
        );
        let disk = landing(&d, &f, "virtio-disk0").unwrap();
        assert!(!disk.took_spare);
        assert_eq!(
            disk.describe(),
            "disk vda landed at 0000:00:04.0 on the default PHB; 2 spare PHBs left"
        );
        assert_eq!(
            landing(&d, &f, "usb").unwrap().describe(),
            "controller usb index 0 takes no PCI slot; 2 spare PHBs left"
        );
        assert_eq!(landing(&d, &f, "net9"), None);
    }

    #[test]
    fn the_last_spare_taken_says_what_the_next_hotplug_needs() {
        let full = GUEST
            .replace("<controller type='pci' index='2' model='pci-root'><target index='2'><node>1</node></target></controller>", "")
            .replace("<controller type='pci' index='3' model='pci-root'><target index='3'/></controller>", "");
        let d = parse_domain(full.as_bytes()).unwrap();
        let l = landing(&d, &facts(&d), "hostdev0").unwrap();
        assert_eq!((l.spares_before(), l.spares_left), (1, 0));
        assert!(
            l.describe().contains("no spare PHB left: a passthrough device"),
            "{}",
            l.describe()
        );
    }
}
