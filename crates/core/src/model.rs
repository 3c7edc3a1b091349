//! The parsed domain: only what the rules and the rewriter need, each device remembering
//! where it stands in the input so that a rewrite can edit those bytes and no others.

use std::fmt;

/// A PCI address, guest-side (`<address type='pci'>`) or host-side (`<source><address>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddr {
    /// The PCI domain (segment).
    pub domain: u32,
    /// The bus number: a controller's index in the guest.
    pub bus: u8,
    /// The slot, 0 to 0x1f.
    pub slot: u8,
    /// The function, 0 to 7.
    pub function: u8,
}

impl PciAddr {
    /// The largest domain, bus, slot and function libvirt accepts (`virPCIDeviceAddressIsValid`).
    /// A domain may use all 32 bits (hosts with VMD domains such as 0x10000 have them); measured
    /// on libvirt 9.0: `domain='0x10000'` is defined, guest and host side.
    pub const FIELD_MAX: [u64; 4] = [0xffff_ffff, 0xff, 0x1f, 0x7];

    /// The address of domain, bus, slot and function, each checked against [`Self::FIELD_MAX`];
    /// `Err(i)`: the `i`th of them is out of range.
    pub fn from_fields(values: [u64; 4]) -> Result<PciAddr, usize> {
        if let Some(i) = (0..4).find(|&i| values[i] > Self::FIELD_MAX[i]) {
            return Err(i);
        }
        // Each fits its type: checked just above.
        Ok(PciAddr {
            domain: values[0] as u32,
            bus: values[1] as u8,
            slot: values[2] as u8,
            function: values[3] as u8,
        })
    }
}

impl fmt::Display for PciAddr {
    /// `DDDD:BB:SS.F`, lower-case hex: the spelling of sysfs and of `lspci -D`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

impl PciAddr {
    /// A device's name in sysfs (`0001:01:00.0`, `lspci -D`'s spelling), lower- or upper-case
    /// hex; `None` for any other name.
    pub fn parse_sysfs(name: &str) -> Option<PciAddr> {
        let (domain, rest) = name.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, function) = rest.split_once('.')?;
        let hex = |s: &str, digits: std::ops::RangeInclusive<usize>| {
            (digits.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(s, 16).ok())
                .flatten()
        };
        let addr = PciAddr {
            domain: hex(domain, 4..=8)?,
            bus: u8::try_from(hex(bus, 2..=2)?).ok()?,
            slot: u8::try_from(hex(slot, 2..=2)?).ok().filter(|s| *s < 32)?,
            function: u8::try_from(hex(function, 1..=1)?).ok().filter(|f| *f < 8)?,
        };
        Some(addr)
    }
}

/// Byte offsets `start..end` into the input the domain was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The first byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// The parts of a `<domain>` phbguard looks at.
#[derive(Debug, Clone, Default)]
pub struct Domain {
    /// `<name>`
    pub name: Option<String>,
    /// `<uuid>`
    pub uuid: Option<String>,
    /// `<os><type arch>`
    pub arch: Option<String>,
    /// `<os><type machine>`
    pub machine: Option<String>,
    /// `<domain type>`: `kvm`, or `qemu` for TCG.
    pub virt_type: Option<String>,
    /// What libvirt computes the guest's locked-memory limit from.
    pub memory: Memory,
    /// Every element directly under `<devices>`, in document order.
    pub devices: Vec<Device>,
    /// `<numatune><memnode>` entries.
    pub memnodes: Vec<MemNode>,
    /// The guest NUMA cells (`<cpu><numa><cell id>`), in document order: the nodes a PHB's
    /// `<target><node>` may name.
    pub numa_cells: Vec<u32>,
    /// `<metadata><phbguard:policy mode='...'/>`, the per-domain opt-out.
    pub policy_mode: Option<String>,
    /// Where `</devices>` starts, so new controllers can be inserted before it (`None` for no
    /// `<devices>`, or an empty `<devices/>`).
    pub devices_close: Option<usize>,
}

impl Domain {
    /// arch ppc64/ppc64le and machine `pseries` or `pseries-*`, as libvirt's
    /// `qemuDomainMachineIsPSeries` decides.
    pub fn is_pseries(&self) -> bool {
        let arch_ok = matches!(self.arch.as_deref(), Some("ppc64" | "ppc64le"));
        let machine_ok = self
            .machine
            .as_deref()
            .is_some_and(|m| m == "pseries" || m.starts_with("pseries-"));
        arch_ok && machine_ok
    }

    /// The name used to refer to the domain in reports.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("(unnamed)")
    }

    /// The PCI controllers (`<controller type='pci'>`), with the index of their device.
    pub fn pci_controllers(&self) -> impl Iterator<Item = (usize, &PciController)> {
        self.devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match &d.kind {
                DeviceKind::PciController(c) => Some((i, c)),
                _ => None,
            })
    }
}

/// The memory settings libvirt's locked-memory limit depends on (src/qemu/qemu_domain.c,
/// `qemuDomainGetMemLockLimitBytes`), sizes in KiB as libvirt keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// `<memory>`: the guest's memory, memory devices included.
    pub total_kib: Option<u64>,
    /// `<maxMemory>`: what memory hot-plug may grow it to.
    pub max_kib: Option<u64>,
    /// `<memtune><hard_limit>`, unless absent or unlimited.
    pub hard_limit: Option<HardLimit>,
    /// `<memoryBacking><locked/>`.
    pub locked: bool,
}

/// A `<memtune><hard_limit>` that sets a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardLimit {
    /// The limit in KiB.
    pub kib: u64,
    /// The element, start tag to end tag, where `fix --raise-hard-limit` rewrites it.
    pub span: Span,
    /// The line its start tag is on.
    pub line: usize,
}

/// One element directly under `<devices>`.
#[derive(Debug, Clone)]
pub struct Device {
    /// The element name: `hostdev`, `interface`, `controller`, `disk`, ...
    pub element: String,
    /// Its `type` attribute, if any.
    pub type_attr: Option<String>,
    /// Its `model` attribute, if any.
    pub model_attr: Option<String>,
    /// What identifies it to an admin: a disk's target dev, a NIC's MAC, an alias.
    pub label: Option<String>,
    /// `<alias name>`: how libvirt names the device in a running guest (and in its events).
    pub alias: Option<String>,
    /// `<interface type='network'><source network='NAME'/>`: the libvirt network it joins.
    /// When that network is a hostdev pool, the interface becomes a hostdev at start.
    pub network: Option<String>,
    /// What kind of device it is, for the rules.
    pub kind: DeviceKind,
    /// Its own guest address, when that is `<address type='pci'>`.
    pub address: Option<PciAddr>,
    /// The `<address>` element that is a direct child of this device, of any type.
    pub address_span: Option<Span>,
    /// The whole element, start tag to end tag.
    pub span: Span,
    /// The line its start tag is on, from 1: where reports point an admin.
    pub line: usize,
}

/// What the rules tell devices apart by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// A PCI device passed through from the host.
    Hostdev {
        /// The host PCI device passed through.
        host: PciAddr,
        /// How it is written.
        form: HostdevForm,
        /// `managed='yes'`: libvirt detaches the host device from its host driver (binds it
        /// to vfio-pci) at start. libvirt's default is no.
        managed: bool,
    },
    /// `<controller type='pci'>`: a PHB (`pci-root`) or a bridge of some kind.
    PciController(PciController),
    /// Any other controller (`scsi`, `usb`, `virtio-serial`, ...).
    Controller {
        /// Its `index` attribute.
        index: Option<u32>,
    },
    /// Everything else: disks, NICs, video, balloon, rng, ...
    Other,
}

/// How a hostdev is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostdevForm {
    /// `<hostdev mode='subsystem' type='pci'>`
    Hostdev,
    /// `<interface type='hostdev'>` (an SR-IOV VF, typically)
    Interface,
}

/// A `<controller type='pci'>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciController {
    /// The bus number device addresses use for this controller.
    pub index: u32,
    /// Whether `index` was written, or assigned the way libvirt would.
    pub index_implied: bool,
    /// Its `model` attribute: `pci-root`, `pci-bridge`, ...
    pub model: Option<String>,
    /// `<model name='...'/>`
    pub model_name: Option<String>,
    /// That `<model>` element, where its name is rewritten.
    pub model_span: Option<Span>,
    /// `<target index='...'/>`
    pub target_index: Option<u32>,
    /// The `<target>` start tag (the whole element when empty), where `index` is rewritten.
    pub target_span: Option<Span>,
    /// `<target><node>...</node></target>`
    pub numa_node: Option<u32>,
}

impl PciController {
    /// Whether it is a PHB (a `pci-root`).
    pub fn is_phb(&self) -> bool {
        self.model.as_deref() == Some("pci-root")
    }
}

/// What a finding is about, for tools (the rewriter) that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An element under `<devices>`, by its position in [`Domain::devices`].
    Device(usize),
    /// The PCI controller with this index, whether written or implied.
    Controller(u32),
    /// The guest's `<memtune><hard_limit>`.
    HardLimit,
}

/// `<memnode cellid='G' nodeset='...'/>`: guest NUMA cell G takes memory from these host nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemNode {
    /// The guest NUMA cell.
    pub cell: u32,
    /// The host NUMA nodes its memory comes from.
    pub host_nodes: Vec<u32>,
}

impl Device {
    /// How findings name this device: `hostdev 0002:02:00.0 at 0000:00:05.0`,
    /// `controller scsi index 0 at 0000:01:01.0`, `disk vda at 0000:00:04.0`.
    pub fn describe(&self) -> String {
        let mut s = self.name();
        if let Some(addr) = self.address {
            s.push_str(" at ");
            s.push_str(&addr.to_string());
        }
        s
    }

    /// The device without its guest address: `hostdev 0002:02:00.0`, `disk vda`.
    pub fn name(&self) -> String {
        match &self.kind {
            DeviceKind::Hostdev { host, form, .. } => match form {
                HostdevForm::Hostdev => format!("hostdev {host}"),
                HostdevForm::Interface => format!("interface hostdev {host}"),
            },
            DeviceKind::PciController(c) => format!("controller pci index {}", c.index),
            DeviceKind::Controller { index } => {
                let ty = self.type_attr.as_deref().unwrap_or("?");
                match index {
                    Some(i) => format!("controller {ty} index {i}"),
                    None => format!("controller {ty}"),
                }
            }
            DeviceKind::Other => match &self.label {
                Some(label) => format!("{} {label}", self.element),
                None => self.element.clone(),
            },
        }
    }

    /// The host PCI device of a hostdev.
    pub fn host_addr(&self) -> Option<PciAddr> {
        match self.kind {
            DeviceKind::Hostdev { host, .. } => Some(host),
            _ => None,
        }
    }
}
