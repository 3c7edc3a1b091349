//! Guest XML, built from the e2e guest template (tests/e2e/guest.xml.in: a pSeries TCG guest
//! that boots under the sandbox libvirtd) and the devices the rules are about.

use phbguard_core::parse::METADATA_NS;

use crate::repo;

/// The e2e guest template with a name and devices.
pub fn guest(name: &str, devices: &str) -> String {
    let template = std::fs::read_to_string(repo().join("tests/e2e/guest.xml.in")).unwrap();
    template.replace("@NAME@", name).replace("@DEVICES@", devices)
}

/// `guest` with a UUID and a `<metadata>` opt-out, for tests that need them without libvirt.
pub fn guest_with(name: &str, uuid: &str, metadata_mode: Option<&str>, devices: &str) -> String {
    let mut extra = format!("<uuid>{uuid}</uuid>");
    if let Some(mode) = metadata_mode {
        extra.push_str(&format!(
            "<metadata><phbguard:policy xmlns:phbguard='{METADATA_NS}' mode='{mode}'/></metadata>"
        ));
    }
    guest(name, devices).replacen("<memory", &format!("{extra}\n  <memory"), 1)
}

/// A guest of [`guest`]'s with a VNC password. Graphics bring a USB tablet, so it keeps
/// libvirt's default USB controller (emulated, on the default PHB, where it belongs).
pub fn with_vnc(guest: &str, password: &str) -> String {
    let xml = guest.replace("<controller type='usb' model='none'/>", "");
    xml.replace(
        "</devices>",
        &format!("<graphics type='vnc' port='-1' autoport='yes' passwd='{password}'/>\n  </devices>"),
    )
}

/// `<hostdev>` for host device `host` (`"0002:02:00.0"`) at guest `bus`/`slot`.
pub fn hostdev(host: &str, bus: u32, slot: u32) -> String {
    let (dom, rest) = host.split_once(':').unwrap();
    let (b, rest) = rest.split_once(':').unwrap();
    let (s, f) = rest.split_once('.').unwrap();
    format!(
        "<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x{dom}' \
         bus='0x{b}' slot='0x{s}' function='0x{f}'/></source><address type='pci' domain='0x0000' \
         bus='{bus:#04x}' slot='{slot:#04x}' function='0x0'/></hostdev>"
    )
}

/// A PHB: `<controller type='pci' model='pci-root' index=N>` with `<target index=T>`.
pub fn phb(index: u32, target: u32) -> String {
    pci_root(index, "spapr-pci-host-bridge", target)
}

/// A `pci-root` controller with any `<model name>` and target index.
pub fn pci_root(index: u32, model: &str, target: u32) -> String {
    format!(
        "<controller type='pci' index='{index}' model='pci-root'><model name='{model}'/>\
         <target index='{target}'/></controller>"
    )
}

/// A pci-bridge at bus 0 slot `slot`.
pub fn bridge(index: u32, slot: u32) -> String {
    format!(
        "<controller type='pci' index='{index}' model='pci-bridge'><address type='pci' domain='0x0000' \
         bus='0x00' slot='{slot:#04x}' function='0x0'/></controller>"
    )
}

/// An emulated virtio-scsi controller at `bus`/`slot`.
pub fn scsi(index: u32, bus: u32, slot: u32) -> String {
    format!(
        "<controller type='scsi' index='{index}' model='virtio-scsi'><address type='pci' domain='0x0000' \
         bus='{bus:#04x}' slot='{slot:#04x}' function='0x0'/></controller>"
    )
}

/// A guest of [`guest`]'s with `cells` guest NUMA cells (`<cpu><numa>`), one vCPU and an equal
/// share of its 512 MiB each: the cells a PHB's `<target><node>` may name.
pub fn with_numa_cells(guest: &str, cells: u32) -> String {
    let memory = 512 * 1024 / cells;
    let cells: String = (0..cells)
        .map(|c| format!("<cell id='{c}' cpus='{c}' memory='{memory}' unit='KiB'/>"))
        .collect();
    guest.replacen(
        "<vcpu placement='static'>1</vcpu>",
        &format!(
            "<vcpu placement='static'>{}</vcpu>\n  <cpu><numa>{cells}</numa></cpu>",
            cells.matches("<cell").count()
        ),
        1,
    )
}

/// A virtio RNG, an emulated device QEMU can hot-plug here; at `bus`/`slot`, or without an
/// address (libvirt places it).
pub fn rng(at: Option<(u32, u32)>) -> String {
    let address = at.map_or(String::new(), |(bus, slot)| {
        format!("<address type='pci' domain='0x0000' bus='{bus:#04x}' slot='{slot:#04x}' function='0x0'/>")
    });
    format!("<rng model='virtio'><backend model='random'>/dev/urandom</backend>{address}</rng>")
}
