//! The order in which libvirt hands out PCI slots (`qemuDomainAssignDevicePCISlots`): this,
//! not document order, decides which device gets the first free slot and which one causes a
//! new PHB, so a rewrite that follows it looks like what libvirt would have chosen.

use crate::model::{Device, DeviceKind, HostdevForm};

/// Where `device` comes in libvirt's assignment order; lower goes first, ties keep document
/// order.
pub fn rank(device: &Device) -> u8 {
    match (&device.kind, device.element.as_str()) {
        (DeviceKind::PciController(_), _) => 0,
        (_, "filesystem") => 1,
        (DeviceKind::Hostdev { form, .. }, _) => match form {
            // libvirt parses the hostdev of an <interface type='hostdev'> with the interfaces,
            // so it comes before every <hostdev> element.
            HostdevForm::Interface => 6,
            HostdevForm::Hostdev => 7,
        },
        (_, "interface") => 2,
        (_, "sound") => 3,
        (DeviceKind::Controller { .. }, _) => 4,
        (_, "disk") => 5,
        (_, "memballoon") => 8,
        (_, "rng") => 9,
        (_, "watchdog") => 10,
        (_, "video") => 11,
        (_, "shmem") => 12,
        (_, "input") => 13,
        (_, "serial" | "console") => 14,
        (_, "iommu") => 15,
        (_, "vsock") => 16,
        (_, "memory") => 17,
        (_, "crypto") => 18,
        (_, "panic") => 19,
        _ => 20,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_domain;

    #[test]
    fn interface_hostdevs_go_before_hostdevs_and_after_emulated_nics() {
        let xml = "<domain><devices>\
            <hostdev mode='subsystem' type='pci'><source><address domain='1' bus='1' slot='0' function='0'/></source></hostdev>\
            <memballoon model='virtio'/>\
            <interface type='hostdev'><source><address type='pci' domain='5' bus='0x90' slot='1' function='0'/></source></interface>\
            <interface type='network'/>\
            <controller type='scsi'/>\
            <controller type='pci' model='pci-bridge'/>\
            </devices></domain>";
        let domain = parse_domain(xml.as_bytes()).unwrap();
        let mut order: Vec<_> = (0..domain.devices.len()).collect();
        order.sort_by_key(|&i| rank(&domain.devices[i]));
        let names: Vec<_> = order
            .iter()
            .map(|&i| {
                let d = &domain.devices[i];
                format!("{}:{}", d.element, d.type_attr.as_deref().unwrap_or("-"))
            })
            .collect();
        assert_eq!(
            names,
            [
                "controller:pci",
                "interface:network",
                "controller:scsi",
                "interface:hostdev",
                "hostdev:pci",
                "memballoon:-"
            ]
        );
    }
}
