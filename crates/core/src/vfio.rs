//! When VFIO can open a guest's IOMMU group: the kernel lets a group be used from user space
//! only when no device in it is held by a driver that uses the kernel's DMA API; libvirt
//! detaches (binds to vfio-pci) only the hostdevs a definition names with `managed='yes'`.
//! Pure: the host's facts come in as [`Member`]s. docs/vfio.md has the kernel and libvirt
//! sources this follows.

use crate::model::PciAddr;

/// The driver libvirt binds a managed hostdev to (`virPCIDeviceDetach`), and the one a
/// `managed='no'` hostdev must already be on.
pub const VFIO_PCI: &str = "vfio-pci";

/// Drivers the kernel lets hold a device in a group VFIO opens, besides VFIO's own: pci-stub
/// (`vfio_driver_allowed` before Linux 5.19, `driver_managed_dma` since) and the PCIe port
/// driver (`driver_managed_dma` since 5.19; before, a port was let through as a bridge).
const SHARING_DRIVERS: [&str; 2] = ["pci-stub", "pcieport"];

/// What a driver bound to a group member means for VFIO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverUse {
    /// vfio-pci or one of its variant drivers (`mlx5_vfio_pci`, `xe-vfio-pci`, ...): the
    /// device is VFIO's.
    Vfio,
    /// A driver that does no DMA of its own and that the kernel lets share the group.
    Shares,
    /// Any other driver: it claims the group's DMA, and VFIO cannot open the group (unless the
    /// device is a bridge, which kernels before 5.19 let through whatever its driver).
    Claims,
}

/// How VFIO takes the driver called `name`.
pub fn driver_use(name: &str) -> DriverUse {
    // Every VFIO PCI driver the kernel has is named after it: vfio-pci and its variants
    // (mlx5_vfio_pci, hisi_acc_vfio_pci, pds_vfio_pci, nvgrace_gpu_vfio_pci, xe-vfio-pci).
    if name == VFIO_PCI || name.contains("vfio") {
        DriverUse::Vfio
    } else if SHARING_DRIVERS.contains(&name) {
        DriverUse::Shares
    } else {
        DriverUse::Claims
    }
}

/// What the host says of one PCI device: the driver bound to it and, when that driver claims
/// DMA, whether it is a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The driver bound now: `Ok(None)` when none is; `Err` says why it cannot be told.
    pub driver: Result<Option<String>, String>,
    /// Whether its configuration header is a bridge's (PCI-to-PCI or CardBus); read only when
    /// `driver` is one that claims DMA (`None` otherwise).
    pub bridge: Option<Result<bool, String>>,
}

impl Binding {
    /// Whether the bridge question matters for a device bound to `driver`.
    pub fn needs_bridge(driver: &Result<Option<String>, String>) -> bool {
        matches!(driver, Ok(Some(d)) if driver_use(d) == DriverUse::Claims)
    }
}

/// A hostdev of the guest in the group being judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Given {
    /// The host device.
    pub addr: PciAddr,
    /// `managed='yes'`: libvirt binds it to vfio-pci at start, whatever holds it now.
    pub managed: bool,
}

/// Why a group cannot be opened by VFIO for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// A device the guest is not given, held by a driver that claims DMA.
    HostDriver {
        /// The device.
        addr: PciAddr,
        /// Its driver.
        driver: String,
    },
    /// A `managed='no'` hostdev of the guest that is not on vfio-pci: libvirt does not detach
    /// it (and refuses it when it is on no stub driver), QEMU cannot open it.
    Unmanaged {
        /// The device.
        addr: PciAddr,
        /// Its driver, `None` when it has none.
        driver: Option<String>,
    },
}

impl Blocker {
    /// The device that blocks.
    pub fn addr(&self) -> PciAddr {
        match self {
            Blocker::HostDriver { addr, .. } | Blocker::Unmanaged { addr, .. } => *addr,
        }
    }

    /// The driver holding it, `None` for none.
    pub fn driver(&self) -> Option<&str> {
        match self {
            Blocker::HostDriver { driver, .. } => Some(driver),
            Blocker::Unmanaged { driver, .. } => driver.as_deref(),
        }
    }
}

impl std::fmt::Display for Blocker {
    /// `0006:01:00.1 is bound to mlx5_core`, `0009:01:00.0, a managed='no' hostdev, is on
    /// mlx5_core, not vfio-pci`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocker::HostDriver { addr, driver } => write!(f, "{addr} is bound to {driver}"),
            Blocker::Unmanaged { addr, driver } => write!(
                f,
                "{addr}, a managed='no' hostdev, is on {}, not vfio-pci",
                driver.as_deref().unwrap_or("no driver")
            ),
        }
    }
}

/// A group judged for one guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupState {
    /// What keeps VFIO from opening the group, in address order.
    pub blockers: Vec<Blocker>,
    /// Members whose state is not known, and why: they are never counted as blockers.
    pub unknown: Vec<(Option<PciAddr>, String)>,
}

impl GroupState {
    /// Whether VFIO can open the group for this guest, as far as the host says.
    pub fn viable(&self) -> bool {
        self.blockers.is_empty()
    }
}

/// Judges one IOMMU group for a guest: `members` are the group's devices as the host lists
/// them (`Err`: the list cannot be read, then only `given` are judged), `binding` tells
/// what holds a device, `given` are the guest's hostdevs in the group.
pub fn judge_group<'a>(
    members: Result<&[PciAddr], &str>,
    binding: impl Fn(PciAddr) -> Option<&'a Binding>,
    given: &[Given],
) -> GroupState {
    let mut state = GroupState::default();
    let mut addrs: Vec<PciAddr> = match members {
        Ok(members) => members.to_vec(),
        Err(why) => {
            state
                .unknown
                .push((None, format!("its other devices are not known ({why})")));
            Vec::new()
        }
    };
    addrs.extend(given.iter().map(|g| g.addr));
    addrs.sort_unstable();
    addrs.dedup();
    for addr in addrs {
        let mine = given.iter().find(|g| g.addr == addr);
        if mine.is_some_and(|g| g.managed) {
            continue;
        }
        let Some(b) = binding(addr) else {
            state
                .unknown
                .push((Some(addr), "what holds it was not read".into()));
            continue;
        };
        let driver = match &b.driver {
            Ok(driver) => driver.as_deref(),
            Err(why) => {
                state
                    .unknown
                    .push((Some(addr), format!("its driver cannot be read: {why}")));
                continue;
            }
        };
        if mine.is_some() {
            if driver != Some(VFIO_PCI) {
                state.blockers.push(Blocker::Unmanaged {
                    addr,
                    driver: driver.map(str::to_string),
                });
            }
            continue;
        }
        let Some(driver) = driver else { continue };
        if driver_use(driver) != DriverUse::Claims {
            continue;
        }
        match &b.bridge {
            Some(Ok(true)) => {}
            Some(Ok(false)) => state.blockers.push(Blocker::HostDriver {
                addr,
                driver: driver.to_string(),
            }),
            Some(Err(why)) => state.unknown.push((
                Some(addr),
                format!("it is bound to {driver} and whether it is a bridge cannot be read: {why}"),
            )),
            None => state.unknown.push((
                Some(addr),
                format!("it is bound to {driver} and whether it is a bridge was not read"),
            )),
        }
    }
    state
}

/// libvirt's node-device name of a host PCI device, what `virsh nodedev-detach` takes.
pub fn nodedev_name(addr: PciAddr) -> String {
    format!(
        "pci_{:04x}_{:02x}_{:02x}_{:x}",
        addr.domain, addr.bus, addr.slot, addr.function
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(function: u8) -> PciAddr {
        PciAddr {
            domain: 1,
            bus: 1,
            slot: 0,
            function,
        }
    }

    fn bound(driver: Option<&str>, bridge: Option<bool>) -> Binding {
        Binding {
            driver: Ok(driver.map(str::to_string)),
            bridge: bridge.map(Ok),
        }
    }

    #[test]
    fn drivers_are_vfio_sharing_or_claiming() {
        assert_eq!(driver_use("vfio-pci"), DriverUse::Vfio);
        assert_eq!(driver_use("mlx5_vfio_pci"), DriverUse::Vfio);
        assert_eq!(driver_use("xe-vfio-pci"), DriverUse::Vfio);
        assert_eq!(driver_use("pci-stub"), DriverUse::Shares);
        assert_eq!(driver_use("pcieport"), DriverUse::Shares);
        assert_eq!(driver_use("mlx5_core"), DriverUse::Claims);
        assert_eq!(driver_use("nvidia"), DriverUse::Claims);
        assert!(Binding::needs_bridge(&Ok(Some("shpchp".into()))));
        assert!(!Binding::needs_bridge(&Ok(Some("vfio-pci".into()))));
        assert!(!Binding::needs_bridge(&Ok(None)));
    }

    #[test]
    fn a_sibling_on_a_host_driver_blocks_and_everything_else_passes() {
        let members = [addr(0), addr(1), addr(2), addr(3), addr(4), addr(5)];
        let bindings = [
            bound(Some("mlx5_core"), None),
            bound(Some("mlx5_core"), Some(false)),
            bound(None, None),
            bound(Some("vfio-pci"), None),
            bound(Some("shpchp"), Some(true)),
            bound(Some("pci-stub"), None),
        ];
        let binding = |a: PciAddr| bindings.get(a.function as usize);
        // 0 is the guest's, managed: libvirt detaches it whatever holds it.
        let given = [Given {
            addr: addr(0),
            managed: true,
        }];
        let state = judge_group(Ok(&members), binding, &given);
        assert_eq!(
            state.blockers,
            [Blocker::HostDriver {
                addr: addr(1),
                driver: "mlx5_core".into()
            }]
        );
        assert!(state.unknown.is_empty());
        // Given to the guest too, managed: viable.
        let both = [
            given[0],
            Given {
                addr: addr(1),
                managed: true,
            },
        ];
        assert!(judge_group(Ok(&members), binding, &both).viable());
        // Given unmanaged: it has to be on vfio-pci already.
        let unmanaged = [
            given[0],
            Given {
                addr: addr(1),
                managed: false,
            },
        ];
        assert_eq!(
            judge_group(Ok(&members), binding, &unmanaged).blockers,
            [Blocker::Unmanaged {
                addr: addr(1),
                driver: Some("mlx5_core".into())
            }]
        );
        let on_vfio = [Given {
            addr: addr(3),
            managed: false,
        }];
        let only = [addr(2), addr(3)];
        assert!(judge_group(Ok(&only), binding, &on_vfio).viable());
        let unbound = [Given {
            addr: addr(2),
            managed: false,
        }];
        assert_eq!(
            judge_group(Ok(&only), binding, &unbound).blockers,
            [Blocker::Unmanaged {
                addr: addr(2),
                driver: None
            }]
        );
    }

    #[test]
    fn what_is_not_known_is_said_and_never_blocks() {
        let unreadable = Binding {
            driver: Err("Permission denied".into()),
            bridge: None,
        };
        let no_class = Binding {
            driver: Ok(Some("mlx5_core".into())),
            bridge: Some(Err("no class".into())),
        };
        let bindings = [unreadable, no_class];
        let binding = |a: PciAddr| bindings.get(a.function as usize);
        let given = [Given {
            addr: addr(0),
            managed: false,
        }];
        let state = judge_group(Ok(&[addr(0), addr(1), addr(7)]), binding, &given);
        assert!(state.viable());
        let unknown: Vec<_> = state.unknown.iter().map(|(a, _)| *a).collect();
        assert_eq!(unknown, [Some(addr(0)), Some(addr(1)), Some(addr(7))]);
        // No member list: the guest's own devices are still judged.
        let bindings = [bound(Some("mlx5_core"), None)];
        let binding = |a: PciAddr| bindings.get(a.function as usize);
        let state = judge_group(Err("no devices directory"), binding, &given);
        assert_eq!(state.unknown.len(), 1);
        assert_eq!(state.unknown[0].0, None);
        assert_eq!(state.blockers.len(), 1);
    }
}
