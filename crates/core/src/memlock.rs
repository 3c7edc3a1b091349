//! The memory libvirt lets QEMU lock (`RLIMIT_MEMLOCK`), computed as libvirt 9.0 does in
//! src/qemu/qemu_domain.c, `qemuDomainGetMemLockLimitBytes` and its ppc64 branch
//! `getPPC64MemLockLimitBytes`. VFIO pins guest memory and the DMA windows' tables against
//! that limit; on ppc64 every PHB adds a DMA window. docs/memlock.md has the formula, its
//! sources and where later libvirt versions differ. Pure: the inputs come from the topology.

use crate::model::DeviceKind;
use crate::number::UNLIMITED_KIB;
use crate::topology::{Bus, Topology};

/// libvirt rounds a ppc64 guest's memory up to 256 MiB when it starts it
/// (`qemuDomainAlignMemorySizes`, `qemuDomainGetMemorySizeAlignment`), before the limit is
/// computed (`qemuProcessPrepareDomain` runs before `qemuProcessLaunch`).
pub const PPC64_ALIGN_KIB: u64 = 256 * 1024;

/// What libvirt's figure depends on, as libvirt sees the guest when it starts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inputs {
    /// `<domain type='kvm'>`: only then does libvirt take the ppc64 branch.
    pub kvm: bool,
    /// The guest memory (`virDomainDefGetMemoryTotal`), in KiB.
    pub memory_kib: u64,
    /// `<maxMemory>` in KiB, 0 when not set.
    pub max_memory_kib: u64,
    /// `<memtune><hard_limit>` in KiB.
    pub hard_limit_kib: Option<u64>,
    /// `<memoryBacking><locked/>`.
    pub locked: bool,
    /// The PHBs (`virDomainControllerIsPSeriesPHB`), the default one included.
    pub phbs: u64,
    /// Devices QEMU opens through VFIO (`qemuDomainGetNumVFIODevices`): PCI hostdevs (an
    /// interface on a hostdev pool is one once started), mediated devices, NVMe disks.
    pub vfio_devices: u64,
    /// vDPA interfaces (`qemuDomainGetNumVDPANetDevices`).
    pub vdpa_devices: u64,
    /// The guest has a virtual IOMMU (`<iommu>`): each VFIO device then maps all memory.
    pub viommu: bool,
    /// A hostdev is an NVLink2 bridge (`ppc64VFIODeviceIsNV2Bridge`).
    pub nvlink2: bool,
}

impl Inputs {
    /// What libvirt will compute the limit of `t`'s guest from when it starts it; `None`
    /// without a `<memory>` (libvirt then takes the NUMA cells', which phbguard does not
    /// read).
    pub(crate) fn of(t: &Topology<'_>) -> Option<Inputs> {
        let domain = t.domain;
        let memory = &domain.memory;
        let align = |kib: u64| kib.div_ceil(PPC64_ALIGN_KIB) * PPC64_ALIGN_KIB;
        let mut inputs = Inputs {
            kvm: domain.virt_type.as_deref() == Some("kvm"),
            memory_kib: align(memory.total_kib.filter(|&m| m > 0)?),
            max_memory_kib: memory.max_kib.map_or(0, align),
            hard_limit_kib: memory.hard_limit.map(|h| h.kib),
            locked: memory.locked,
            phbs: t.phbs_at_start() as u64,
            nvlink2: t.nvlink2() == Some(true),
            ..Inputs::default()
        };
        for (i, d) in domain.devices.iter().enumerate() {
            let ty = d.type_attr.as_deref();
            let vfio = match (&d.kind, d.element.as_str()) {
                (DeviceKind::Hostdev { .. }, _) => true,
                (_, "hostdev") => ty == Some("mdev"),
                (_, "disk") => ty == Some("nvme"),
                (_, "interface") => t.is_pool_interface_anywhere(i),
                _ => false,
            };
            inputs.vfio_devices += u64::from(vfio);
            inputs.vdpa_devices += u64::from(d.element == "interface" && ty == Some("vdpa"));
            inputs.viommu |= d.element == "iommu";
        }
        Some(inputs)
    }

    /// [`Inputs::of`] for `domain` on host facts gathered for it: its guest when libvirt
    /// starts it, or `None` for a guest that is not pSeries or has no `<memory>`.
    pub fn of_domain(domain: &crate::model::Domain, facts: &crate::host::Facts) -> Option<Inputs> {
        let topology = Topology::new(domain, facts);
        if !topology.pseries {
            return None;
        }
        Inputs::of(&topology)
    }

    /// Whether QEMU opens anything through VFIO (`qemuDomainNeedsVFIO`, or vDPA).
    pub fn uses_vfio(&self) -> bool {
        self.vfio_devices > 0 || self.vdpa_devices > 0
    }
}

/// `qemuDomainGetMemLockLimitBytes(def, false)`: the limit libvirt sets, in bytes; 0 when it
/// sets none, `VIR_DOMAIN_MEMORY_PARAM_UNLIMITED` (not shifted: libvirt's own value) for no
/// limit. libvirt prefers the hard limit, then `<locked/>`.
pub fn libvirt_limit_bytes(i: &Inputs) -> u64 {
    if let Some(hard) = i.hard_limit_kib {
        return hard << 10;
    }
    if i.locked {
        return UNLIMITED_KIB;
    }
    needed_kib(i) << 10
}

/// What libvirt computes when no `<hard_limit>` or `<locked/>` decides: the memory the guest
/// needs to lock, in KiB (0: libvirt sets no limit).
pub fn needed_kib(i: &Inputs) -> u64 {
    if i.kvm {
        return ppc64_kib(i);
    }
    // The other architectures' branch, which a TCG pSeries guest takes too.
    let nvfio = i.vfio_devices;
    if nvfio == 0 && i.vdpa_devices == 0 {
        return 0;
    }
    let mut factor = i.vdpa_devices;
    if nvfio > 0 {
        factor += if i.viommu { nvfio } else { 1 };
    }
    factor * i.memory_kib + 1024 * 1024
}

/// `getPPC64MemLockLimitBytes`, in KiB.
fn ppc64_kib(i: &Inputs) -> u64 {
    let phbs = i.phbs;
    let memory = i.memory_kib;
    let max_memory = if i.max_memory_kib > 0 {
        i.max_memory_kib
    } else {
        memory
    };
    // The hash page table, then a 32-bit DMA window per PHB and the TCE tables' index.
    let base = max_memory / 128 + 4096 * phbs + 8192;
    let passthrough = if i.nvlink2 {
        // The GPU RAM sits above 64 TiB: a 128 TiB DMA window per PHB.
        max_memory + 128 * (1 << 30) / 512 * phbs + 8192
    } else if i.uses_vfio() {
        // Pre-DDW 2 GiB per PHB, or all memory once plus a 64-bit window's table per PHB.
        (2 * 1024 * 1024 * phbs).max(memory + memory / 512 * phbs + 8192)
    } else {
        0
    };
    base + passthrough
}

impl Topology<'_> {
    /// The PHBs libvirt will have when it starts the guest: every PHB the definition has
    /// (written, or implied by an address), and one per IOMMU group of a hostdev without an
    /// address that no PHB holds yet and no empty PHB can take (libvirt's placement,
    /// `virDomainPCIAddressGetNextAddr`: a bus of the device's isolation group, else an
    /// empty one, else a new PHB), and so for an interface on a hostdev pool without one.
    pub fn phbs_at_start(&self) -> usize {
        let phbs: Vec<u8> = self
            .buses()
            .filter(|(_, b)| matches!(b, Bus::Phb(_)))
            .map(|(i, _)| i)
            .collect();
        let mut held: Vec<u32> = self
            .hostdevs()
            .iter()
            .filter_map(|h| self.known_group(h.device))
            .collect();
        let mut wanted: usize = 0;
        for (i, d) in self.domain.devices.iter().enumerate() {
            if d.address.is_some() {
                continue;
            }
            if let DeviceKind::Hostdev { .. } = d.kind {
                if let Some(g) = self.known_group(i)
                    && !held.contains(&g)
                {
                    held.push(g);
                    wanted += 1;
                }
            } else if self.is_pool_interface_anywhere(i) {
                wanted += 1;
            }
        }
        let empty = phbs
            .iter()
            .filter(|&&b| b != 0 && self.used_buses().all(|u| u != b))
            .count();
        phbs.len() + wanted.saturating_sub(empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ppc64_formula_gives_libvirts_figures() {
        // tests/qemumemlocktest.c: pseries-kvm, 1 GiB, the default PHB, no hostdev.
        let kvm = Inputs {
            kvm: true,
            memory_kib: 1 << 20,
            phbs: 1,
            ..Inputs::default()
        };
        assert_eq!(libvirt_limit_bytes(&kvm), 20_971_520);
        // pseries-hostdev: libvirt's placement gives the hostdev PHB 1.
        let hostdev = Inputs {
            phbs: 2,
            vfio_devices: 1,
            ..kvm
        };
        assert_eq!(libvirt_limit_bytes(&hostdev), 4_320_133_120);
        // A big guest: the memory term wins over 2 GiB per PHB.
        let big = Inputs {
            memory_kib: 64 << 20,
            phbs: 4,
            ..hostdev
        };
        let base = (64 << 20) / 128 + 4096 * 4 + 8192;
        let pass = (64u64 << 20) + (64 << 20) / 512 * 4 + 8192;
        assert_eq!(needed_kib(&big), base + pass);
        // NVLink2: 128 TiB of window per PHB.
        let nv = Inputs { nvlink2: true, ..big };
        assert_eq!(needed_kib(&nv), base + (64 << 20) + 268_435_456 * 4 + 8192);
        // maxMemory takes memory's place in the hash table and NVLink2 terms only.
        let hotplug = Inputs {
            max_memory_kib: 128 << 20,
            ..big
        };
        assert_eq!(needed_kib(&hotplug), needed_kib(&big) + (64 << 20) / 128);
    }

    #[test]
    fn the_hard_limit_wins_then_locked_and_tcg_takes_the_generic_branch() {
        let hostdev = Inputs {
            kvm: true,
            memory_kib: 1 << 20,
            phbs: 2,
            vfio_devices: 1,
            ..Inputs::default()
        };
        let hard = Inputs {
            hard_limit_kib: Some(2 << 20),
            locked: true,
            ..hostdev
        };
        assert_eq!(libvirt_limit_bytes(&hard), 2_147_483_648);
        let locked = Inputs {
            locked: true,
            ..hostdev
        };
        assert_eq!(libvirt_limit_bytes(&locked), 9_007_199_254_740_991);
        let tcg = Inputs {
            kvm: false,
            vfio_devices: 0,
            ..hostdev
        };
        assert_eq!(libvirt_limit_bytes(&tcg), 0);
        let tcg_vfio = Inputs {
            kvm: false,
            ..hostdev
        };
        assert_eq!(needed_kib(&tcg_vfio), (1 << 20) + 1024 * 1024);
        let viommu = Inputs {
            vfio_devices: 3,
            viommu: true,
            ..tcg_vfio
        };
        assert_eq!(needed_kib(&viommu), 3 * (1 << 20) + 1024 * 1024);
    }
}
