//! Rules about where host devices and emulated devices sit: one PHB per host IOMMU group,
//! nothing else on it, and the default PHB left to emulated devices.

use super::{Finding, Rule, RuleId, Severity};
use crate::host::GroupUnknown;
use crate::topology::{Bus, PlacedHostdev, Topology};

/// The IOMMU group of a hostdev as the group rules see it: only hostdevs directly on a PHB have
/// one, the others are judged by `hostdev-behind-bridge` alone.
fn group<'d>(t: &Topology<'d>, h: &PlacedHostdev) -> Option<Result<u32, &'d GroupUnknown>> {
    if t.is_phb(h.bus) { t.group(h.device) } else { None }
}

fn known_group(t: &Topology<'_>, h: &PlacedHostdev) -> Option<u32> {
    group(t, h)?.ok()
}

pub(super) const HOSTDEV_BEHIND_BRIDGE: Rule = Rule {
    id: RuleId::HostdevBehindBridge,
    severity: Severity::Error,
    summary: "a hostdev is directly on a bus that is not a PHB (a pci-bridge, ...)",
    explanation: "\
What: a passed-through host PCI device (<hostdev> or <interface type='hostdev'>) has a guest
address on a bus that belongs to a pci-bridge or another non-root PCI controller.

Why: on POWER, error containment and recovery (EEH) work per PHB: the hypervisor freezes and
resets one PHB's partitionable endpoint without touching the rest, as PowerVM does for every
adapter. Behind a bridge the device shares the bridge's PHB with whatever else is there, and
guest EEH recovery for it cannot work. libvirt itself never places a hostdev behind a bridge
on pSeries; such an address was written by hand or inherited from an old definition.

Fix by hand: add a PHB (<controller type='pci' model='pci-root'> with <model
name='spapr-pci-host-bridge'/> and a free <target index>) for the device's IOMMU group, set the
hostdev's <address> bus to that controller's index (slot 0x01), and remove the bridge once
nothing is behind it. Or remove the <address> and let libvirt place it; 'phbguard fix' does it.",
    bad: include_str!("examples/hostdev-behind-bridge.bad.xml"),
    good: include_str!("examples/hostdev-behind-bridge.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for h in t.hostdevs() {
            if let (Bus::Bridge(_), Some(c)) = (t.bus(h.bus), t.controller(h.bus)) {
                let model = c.model.as_deref().unwrap_or("bridge");
                out.push(Finding::about_device(
                    rule,
                    t,
                    h.device,
                    &format!(
                        "sits behind controller pci index {} ({model}); give its IOMMU group a PHB \
                         of its own (a pci-root controller) and address it there",
                        c.index
                    ),
                ));
            }
        }
    },
};

pub(super) const HOSTDEV_ON_DEFAULT_PHB: Rule = Rule {
    id: RuleId::HostdevOnDefaultPhb,
    severity: Severity::Error,
    summary: "a hostdev is directly on the default PHB",
    explanation: "\
What: a passed-through host PCI device has a guest address on bus 0, the default PHB.

Why: the default PHB (controller index 0, target index 0) holds the guest's emulated devices:
disks, NICs, balloon, USB. An error on the host device makes the hypervisor freeze the whole
PHB for EEH recovery, taking the guest's boot disk and network with it, and recovery of the
assigned device cannot work on a PHB shared with other devices. libvirt locks the default PHB's
isolation group so it never puts a hostdev there itself; an explicit address overrides that.

Fix by hand: add a PHB for the device's IOMMU group (<controller type='pci' model='pci-root'>,
<model name='spapr-pci-host-bridge'/>, a free <target index>) and move the hostdev's address to
its bus, slot 0x01; or delete the hostdev's <address> and let libvirt place it.

Hot-plug: a running guest gets no new PHB (QEMU creates them when it starts; libvirt hot-plugs
no pci-root). A hostdev of an IOMMU group the guest does not use yet goes onto an empty PHB the
guest had at start, or the attach fails; an explicit bus='0x00' puts it here. Keep spare PHBs in
the definition: 'phbguard fix --spare-phbs N', or [fix] spare_phbs in the policy file.",
    bad: include_str!("examples/hostdev-on-default-phb.bad.xml"),
    good: include_str!("examples/hostdev-on-default-phb.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for h in t.hostdevs_on(0) {
            out.push(Finding::about_device(
                rule,
                t,
                h.device,
                "is on the default PHB, which is reserved for emulated devices; move it to a PHB of \
                 its own (one PHB per host IOMMU group)",
            ));
        }
    },
};

pub(super) const PHB_MIXES_IOMMU_GROUPS: Rule = Rule {
    id: RuleId::PhbMixesIommuGroups,
    severity: Severity::Error,
    summary: "hostdevs of two or more known IOMMU groups are directly on one non-default PHB",
    explanation: "\
What: one PHB (other than the default one) holds hostdevs from two or more host IOMMU groups.

Why: QEMU's EEH support for VFIO devices only works when a PHB holds devices of exactly one
host IOMMU group (one 'partitionable endpoint' in IBM's terms). With two groups on one PHB, an
error in either device cannot be recovered in the guest, and the isolation PowerVM gives each
adapter is lost. libvirt places one IOMMU group per PHB by itself; explicit addresses that
disagree are honoured silently.

Fix by hand: keep one IOMMU group on this PHB and move the hostdevs of every other group to a PHB
of their own ('ls -l /sys/bus/pci/devices/DDDD:BB:SS.F/iommu_group' shows a device's group).
A running guest cannot get a new PHB: a device hot-plugged with an explicit address onto another
group's PHB because none was free mixes them this way. Spare PHBs ('phbguard fix --spare-phbs
N') are where such a device goes instead; they take effect at the guest's next cold boot.",
    bad: include_str!("examples/phb-mixes-iommu-groups.bad.xml"),
    good: include_str!("examples/phb-mixes-iommu-groups.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for bus in t.used_non_default_phbs() {
            let mut groups: Vec<(u32, String)> = Vec::new();
            for h in t.hostdevs_on(bus) {
                if let Some(g) = known_group(t, h)
                    && !groups.iter().any(|(seen, _)| *seen == g)
                {
                    groups.push((g, h.host.to_string()));
                }
            }
            if groups.len() < 2 {
                continue;
            }
            let list: Vec<String> = groups.iter().map(|(g, a)| format!("{g} ({a})")).collect();
            out.push(Finding::about_controller(
                rule,
                t,
                u32::from(bus),
                &format!(
                    "holds hostdevs of IOMMU groups {}; give each group a PHB of its own",
                    list.join(", ")
                ),
            ));
        }
    },
};

pub(super) const IOMMU_GROUP_SPLIT: Rule = Rule {
    id: RuleId::IommuGroupSplit,
    severity: Severity::Error,
    summary: "hostdevs of one known IOMMU group are directly on more than one bus",
    explanation: "\
What: the hostdevs of one host IOMMU group (functions of one adapter, or devices the host
cannot isolate from each other) are spread over more than one PHB.

Why: an IOMMU group is the unit the host can isolate, and the unit EEH freezes and resets: an
error in one of its devices affects all of them. Split over two PHBs, recovery on one PHB
cannot reset the devices on the other, and both PHBs lose their isolation. libvirt keeps a
group on one PHB when it places devices itself.

Fix by hand: move the named hostdev to the bus where the rest of its group is (a free slot,
function 0), so the whole group shares one PHB.",
    bad: include_str!("examples/iommu-group-split.bad.xml"),
    good: include_str!("examples/iommu-group-split.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        // Each group's home is the PHB holding most of its hostdevs (the first such on a tie).
        let buses = t.groups_on_phbs();
        for h in t.hostdevs() {
            let Some(g) = known_group(t, h) else { continue };
            let counts = &buses[&g];
            if counts.len() < 2 {
                continue;
            }
            let home = counts
                .iter()
                .fold(counts[0], |best, &c| if c.1 > best.1 { c } else { best })
                .0;
            if h.bus != home {
                out.push(Finding::about_device(
                    rule,
                    t,
                    h.device,
                    &format!(
                        "is in IOMMU group {g}, whose other hostdevs are on bus {home:#04x}; keep the \
                         whole group on one PHB"
                    ),
                ));
            }
        }
    },
};

pub(super) const EMULATED_ON_HOSTDEV_PHB: Rule = Rule {
    id: RuleId::EmulatedOnHostdevPhb,
    severity: Severity::Error,
    summary: "an emulated device is directly on a non-default PHB that has a hostdev directly on it",
    explanation: "\
What: an emulated device (virtio disk or NIC, SCSI or USB controller, pci-bridge, ...) shares a
PHB with a passed-through host device.

Why: the PHB of a host device is its error-containment domain. When the host device fails,
EEH freezes the PHB and the emulated device on it stops too; worse, guest EEH recovery for the
VFIO device is only supported on a PHB that holds nothing but one host IOMMU group. libvirt
gives emulated devices the default PHB and keeps them off hostdev PHBs, unless an explicit
address says otherwise (libvirt's own test pseries-hostdevs-2 shows it honouring one).

Fix by hand: move the emulated device to the default PHB (bus 0x00) or another PHB without
hostdevs, or delete its <address> and let libvirt place it.",
    bad: include_str!("examples/emulated-on-hostdev-phb.bad.xml"),
    good: include_str!("examples/emulated-on-hostdev-phb.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for bus in t.used_non_default_phbs() {
            let Some(h) = t.hostdevs_on(bus).next() else {
                continue;
            };
            for &dev in t.emulated_on(bus) {
                out.push(Finding::about_device(
                    rule,
                    t,
                    dev,
                    &format!(
                        "is an emulated device on the PHB of hostdev {} (bus {bus:#04x}); move it to \
                         the default PHB or another PHB without hostdevs",
                        h.host
                    ),
                ));
            }
        }
    },
};

pub(super) const IOMMU_GROUP_UNKNOWN: Rule = Rule {
    id: RuleId::IommuGroupUnknown,
    severity: Severity::Warning,
    summary: "a hostdev's host device or its `iommu_group` link is missing (group rules skip it)",
    explanation: "\
What: phbguard could not read the host IOMMU group of a hostdev on a PHB: there is no
/sys/bus/pci/devices/DDDD:BB:SS.F on this host, or it has no iommu_group link.

Why: the group decides which hostdevs may share a PHB, so the group rules
(phb-mixes-iommu-groups, iommu-group-split) skip this device. libvirt has the same blind spot:
it then treats the device like an emulated one, may put it on the default PHB, and only logs
'Can't look up isolation group for host device ..., device won't be isolated'. The guest will
not start on this host with the device missing; on another host it may be fine.

Fix by hand: check the address against 'lspci -D' on the host that will run the guest, and that
the IOMMU is on (the iommu_group link exists). Run phbguard on that host to judge the groups.",
    bad: include_str!("examples/iommu-group-unknown.bad.xml"),
    good: include_str!("examples/iommu-group-unknown.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for h in t.hostdevs() {
            if let Some(Err(why)) = group(t, h) {
                out.push(Finding::about_device(
                    rule,
                    t,
                    h.device,
                    &format!("has no known IOMMU group ({why}); the group rules skip it"),
                ));
            }
        }
    },
};
