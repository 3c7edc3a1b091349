//! Rules about the PCI controllers themselves: how many roots, and how each PHB is set up.

use super::{Finding, Rule, RuleId, Severity};
use crate::model::PciController;
use crate::topology::{MAX_TARGET, PHB_MODEL_NAME, Topology};

/// The PHBs written in the definition, pSeries guests only.
fn phbs<'d>(t: &Topology<'d>) -> impl Iterator<Item = &'d PciController> + use<'d> {
    let pseries = t.pseries;
    t.written_phbs().map(|(_, c)| c).filter(move |_| pseries)
}

pub(super) const MULTIPLE_PCI_ROOTS: Rule = Rule {
    id: RuleId::MultiplePciRoots,
    severity: Severity::Error,
    summary: "a non-pSeries guest has more than one `pci-root` controller",
    explanation: "\
What: a guest whose machine is not pseries (x86 i440fx, powernv, ...) defines more than one
<controller type='pci' model='pci-root'>.

Why: only the pSeries machine can have several PCI host bridges; libvirt lets more than one
pci-root through only for pseries guests (areMultipleRootsSupported) and otherwise refuses the
definition with 'pci-root and pcie-root controllers should have index 0'. A definition like this
was written by hand or for another machine type and will not start.

Fix by hand: keep the pci-root with index 0 and remove the others. Where more PCI slots are
needed, add a pci-bridge (i440fx) or pcie-root-ports (q35) and let libvirt address the devices;
if the guest really is a POWER guest, set <os><type arch='ppc64le' machine='pseries'>.",
    bad: include_str!("examples/multiple-pci-roots.bad.xml"),
    good: include_str!("examples/multiple-pci-roots.good.xml"),
    check: |rule, t, out| {
        if t.pseries {
            return;
        }
        let roots: Vec<&PciController> = t.written_phbs().map(|(_, c)| c).collect();
        let Some(first) = roots.iter().map(|c| c.index).min() else {
            return;
        };
        for c in roots.iter().filter(|c| c.index != first) {
            out.push(Finding::about_controller(
                rule,
                t,
                c.index,
                "is a second pci-root, which only pSeries guests can have; remove it and give its \
                 devices slots behind a pci-bridge or root port instead",
            ));
        }
    },
};

pub(super) const PHB_WRONG_MODEL: Rule = Rule {
    id: RuleId::PhbWrongModel,
    severity: Severity::Error,
    summary: "a PHB's `<model name>` is set and is not `spapr-pci-host-bridge`",
    explanation: "\
What: a pci-root controller of a pSeries guest has <model name='X'/> with X other than
spapr-pci-host-bridge.

Why: on pSeries every pci-root is a PAPR PCI Host Bridge, the QEMU device
spapr-pci-host-bridge, the same kind of bridge PowerVM gives each adapter. libvirt fills the
name in itself and refuses any other (qemu_validate.c: \"Option 'modelName' has invalid value\").
A wrong name comes from a copied x86 definition or a typo.

Fix by hand: write <model name='spapr-pci-host-bridge'/> in the controller, or delete the
<model> element and let libvirt add the right one when it defines the guest.",
    bad: include_str!("examples/phb-wrong-model.bad.xml"),
    good: include_str!("examples/phb-wrong-model.good.xml"),
    check: |rule, t, out| {
        for c in phbs(t) {
            if let Some(name) = c.model_name.as_deref().filter(|n| *n != PHB_MODEL_NAME) {
                out.push(Finding::about_controller(
                    rule,
                    t,
                    c.index,
                    &format!(
                        "has model name '{name}'; a pSeries PHB must be \
                         <model name='{PHB_MODEL_NAME}'/>"
                    ),
                ));
            }
        }
    },
};

pub(super) const PHB_TARGET_OUT_OF_RANGE: Rule = Rule {
    id: RuleId::PhbTargetOutOfRange,
    severity: Severity::Error,
    summary: "a PHB's `<target index>` is outside 0..30",
    explanation: "\
What: a PHB has <target index='N'/> with N greater than 30.

Why: the target index is the PHB's number inside the guest (its PCI domain, and where QEMU puts
its memory windows). QEMU lays out at most 31 PHBs between 32 TiB and 64 TiB of guest address
space and refuses index 31 and above ('\"index\" for PAPR PHB is too large (max 30)'); libvirt
refuses it too ('PCI controller target index ... out of range - must be 0-30').

Fix by hand: give the PHB an unused target index from 1 to 30 (0 belongs to the default PHB), or
remove <target index> and let libvirt pick the lowest free one.",
    bad: include_str!("examples/phb-target-out-of-range.bad.xml"),
    good: include_str!("examples/phb-target-out-of-range.good.xml"),
    check: |rule, t, out| {
        for c in phbs(t) {
            if let Some(target) = c.target_index.filter(|&n| n > MAX_TARGET) {
                out.push(Finding::about_controller(
                    rule,
                    t,
                    c.index,
                    &format!(
                        "has target index {target}, but QEMU accepts 0 to \
                         {MAX_TARGET}; pick a free one from 1 to {MAX_TARGET}"
                    ),
                ));
            }
        }
    },
};

pub(super) const PHB_DEFAULT_TARGET: Rule = Rule {
    id: RuleId::PhbDefaultTarget,
    severity: Severity::Error,
    summary: "the default PHB (index 0) has a target index other than 0, or another PHB has target 0",
    explanation: "\
What: the PHB with controller index 0 has a target index other than 0, or a PHB with another
controller index has target index 0.

Why: target index 0 is the guest's built-in, implicit PHB: QEMU always creates it, and libvirt
never puts it on the command line. It must be the controller with index 0, the one libvirt keeps
for emulated devices; libvirt refuses anything else ('Only the PCI controller with index 0 can
have target index 0, and vice versa').

Fix by hand: set <target index='0'/> on controller index 0, and give every other PHB a free
target index from 1 to 30 (or remove <target> and let libvirt choose).",
    bad: include_str!("examples/phb-default-target.bad.xml"),
    good: include_str!("examples/phb-default-target.good.xml"),
    check: |rule, t, out| {
        for c in phbs(t) {
            let Some(target) = c.target_index else { continue };
            let message = match (c.index, target) {
                (0, n) if n != 0 => {
                    format!("is the default PHB and must have target index 0, not {n}")
                }
                (i, 0) if i != 0 => format!(
                    "has target index 0, which belongs to the default PHB \
                     (controller index 0); give it a free target index from 1 to {MAX_TARGET}"
                ),
                _ => continue,
            };
            out.push(Finding::about_controller(rule, t, c.index, &message));
        }
    },
};

pub(super) const PHB_TARGET_DUPLICATE: Rule = Rule {
    id: RuleId::PhbTargetDuplicate,
    severity: Severity::Error,
    summary: "two PHBs share one target index",
    explanation: "\
What: two pci-root controllers of a pSeries guest have the same <target index>.

Why: the target index is the PHB's identity inside the guest. libvirt does not check that it is
unique, so such a definition is accepted, but QEMU refuses to start the guest ('PCI host bridges
must have unique indexes'). phbguard catches it before the start fails.

Fix by hand: give each PHB its own target index from 1 to 30 (0 is the default PHB's), or remove
the <target> element from the later one and let libvirt pick a free index.",
    bad: include_str!("examples/phb-target-duplicate.bad.xml"),
    good: include_str!("examples/phb-target-duplicate.good.xml"),
    check: |rule, t, out| {
        let mut owner = [None::<u32>; 256];
        // Index 0 is implied when it is not written, and libvirt gives it target 0.
        if !t.domain.pci_controllers().any(|(_, c)| c.index == 0) && t.pseries {
            owner[0] = Some(0);
        }
        for c in phbs(t) {
            let Some(target) = c.target_index else { continue };
            let Some(slot) = owner.get_mut(target as usize) else {
                continue;
            };
            match *slot {
                Some(first) => out.push(Finding::about_controller(
                    rule,
                    t,
                    c.index,
                    &format!(
                        "has target index {target}, already used by \
                         controller pci index {first}; QEMU will refuse to start the guest"
                    ),
                )),
                None => *slot = Some(c.index),
            }
        }
    },
};

pub(super) const PCI_BRIDGE_ON_PSERIES: Rule = Rule {
    id: RuleId::PciBridgeOnPseries,
    severity: Severity::Warning,
    summary: "a pSeries guest has a `pci-bridge` controller (not needed; PHBs replace it)",
    explanation: "\
What: a pSeries guest defines a <controller type='pci' model='pci-bridge'>.

Why: pSeries guests get more PCI slots by adding PHBs (up to 31, each with 31 slots), and
libvirt never adds a pci-bridge to them on its own. A bridge puts devices out of reach of their
own PHB's error recovery (EEH), and, as libvirt's author put it when multiple PHBs arrived,
pci-bridge 'probably never really worked on such guests'. Such bridges come from old definitions.

Fix by hand: move the devices behind the bridge onto PHBs (emulated ones onto the default PHB,
each host IOMMU group onto a PHB of its own), then delete the bridge. 'phbguard fix' does both.",
    bad: include_str!("examples/pci-bridge-on-pseries.bad.xml"),
    good: include_str!("examples/pci-bridge-on-pseries.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for (_, c) in t.domain.pci_controllers() {
            if c.model.as_deref() == Some("pci-bridge") {
                out.push(Finding::about_controller(
                    rule,
                    t,
                    c.index,
                    "is a pci-bridge; pSeries guests use PHBs (pci-root controllers) instead: move its \
                     devices to PHBs and remove it",
                ));
            }
        }
    },
};
