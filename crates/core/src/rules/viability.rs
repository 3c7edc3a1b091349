//! Whether VFIO can open the IOMMU groups of a guest's hostdevs when it starts: every other
//! device of a group must be VFIO's, on no driver, on a driver that shares a group (pci-stub,
//! pcieport), or a bridge; the guest's own `managed='yes'` hostdevs are detached by libvirt,
//! its `managed='no'` ones must be on vfio-pci already (crate::vfio; docs/vfio.md).

use std::collections::BTreeMap;

use super::{Finding, Rule, RuleId, Severity};
use crate::model::DeviceKind;
use crate::topology::Topology;
use crate::vfio::{Blocker, Given, GroupState, judge_group, nodedev_name};

pub(super) const IOMMU_GROUP_NOT_VIABLE: Rule = Rule {
    id: RuleId::IommuGroupNotViable,
    severity: Severity::Error,
    summary: "a device in a hostdev's IOMMU group is held by a host driver, so VFIO cannot open the group",
    explanation: "\
What: another device of a hostdev's host IOMMU group (the other function of a dual-port
adapter, a device behind the same switch) is bound to a host driver such as mlx5_core or
nvidia, or a managed='no' hostdev of the guest is not bound to vfio-pci.

Why: VFIO hands a guest a whole IOMMU group. The kernel lets user space open a group only when
every device in it is bound to a VFIO driver, to no driver, to a driver that does no DMA of its
own (pci-stub, pcieport), or is a bridge; a device on any other driver owns DMA in that group.
libvirt checks none of this: with managed='yes' it detaches only the devices the definition
names (virhostdev.c), then QEMU fails with 'vfio: group N is not viable. Please ensure all
devices within the iommu_group are bound to their vfio bus driver.', after the guest's devices
were taken from the host. libvirt does not detach a managed='no' hostdev at all. The hook checks
this at 'prepare begin', before libvirt detaches anything; a running guest is past it.

Fix by hand: detach the named device from its host driver ('virsh nodedev-detach
pci_DDDD_BB_SS_F', which binds it to vfio-pci), or give it to the same guest as a managed='yes'
hostdev on the group's PHB. For a managed='no' hostdev, detach it or make it managed='yes'.
'phbguard groups' shows every group's devices and drivers. 'phbguard fix' cannot change
drivers and never rewrites a definition for this.",
    bad: include_str!("examples/iommu-group-not-viable.bad.xml"),
    good: include_str!("examples/iommu-group-not-viable.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for (group, (first, state)) in group_states(t) {
            if state.viable() {
                continue;
            }
            out.push(Finding::about_device(rule, t, first, &message(group, &state)));
        }
    },
};

/// Each IOMMU group of the guest's hostdevs (with an address or not) judged for it, with the
/// position of its first hostdev.
pub(crate) fn group_states(t: &Topology<'_>) -> BTreeMap<u32, (usize, GroupState)> {
    let mut given: BTreeMap<u32, (usize, Vec<Given>)> = BTreeMap::new();
    for (i, d) in t.domain.devices.iter().enumerate() {
        let DeviceKind::Hostdev { host, managed, .. } = d.kind else {
            continue;
        };
        let Some(group) = t.known_group(i) else { continue };
        let entry = given.entry(group).or_insert((i, Vec::new()));
        entry.1.push(Given { addr: host, managed });
    }
    given
        .into_iter()
        .map(|(group, (first, given))| {
            let members = t.group_members(group).unwrap_or(Err("the host was not asked"));
            (group, (first, judge_group(members, |a| t.binding(a), &given)))
        })
        .collect()
}

/// What a finding says: the group, what blocks it, what to do, and what is not known.
fn message(group: u32, state: &GroupState) -> String {
    let mut held = Vec::new();
    let mut commands = Vec::new();
    let mut unmanaged = false;
    for b in &state.blockers {
        unmanaged |= matches!(b, Blocker::Unmanaged { .. });
        held.push(b.to_string());
        commands.push(format!("'virsh nodedev-detach {}'", nodedev_name(b.addr())));
    }
    let hosts = state
        .blockers
        .iter()
        .any(|b| matches!(b, Blocker::HostDriver { .. }));
    let one = state.blockers.len() == 1;
    let them = if one { "it" } else { "them" };
    let mut alternatives = Vec::new();
    if hosts {
        alternatives.push(if one {
            "give it to this guest too, as a managed='yes' hostdev"
        } else {
            "give them to this guest too, as managed='yes' hostdevs"
        });
    }
    if unmanaged {
        alternatives.push("make this guest's hostdev managed='yes'");
    }
    let failure = if hosts {
        format!(
            "QEMU fails at start with 'group {group} is not viable', after libvirt has detached \
             this guest's managed devices"
        )
    } else {
        "the start fails: libvirt does not detach a managed='no' device, and VFIO opens only \
         devices on vfio-pci"
            .to_string()
    };
    let mut text = format!(
        "is in IOMMU group {group}, which VFIO cannot open while {}: detach {them} from the host \
         ({}) or {}; else {failure}",
        held.join(", "),
        commands.join(", "),
        alternatives.join(" or ")
    );
    if !state.unknown.is_empty() {
        let unknown: Vec<String> = state
            .unknown
            .iter()
            .map(|(addr, why)| match addr {
                Some(a) => format!("{a}: {why}"),
                None => why.clone(),
            })
            .collect();
        text.push_str(&format!(" (not known: {})", unknown.join("; ")));
    }
    text
}
