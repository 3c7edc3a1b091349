//! Interfaces on a libvirt hostdev-pool network (`<forward mode='hostdev'>`): each becomes a
//! hostdev when the guest starts, of a VF libvirt picks from the pool only then, so its IOMMU
//! group is unknown beforehand. libvirt's own placement gives such an interface an isolation
//! group of its own (`qemuDomainFillDeviceIsolationGroup` → `qemuDomainFindUnusedIsolationGroup`,
//! src/qemu/qemu_domain_address.c): a PHB to itself. Only a libvirt connection can tell whether a
//! network is a pool, so `check` and the hook (sysfs) never fire this rule; `audit` does.

use super::topology::Bus;
use super::{Finding, Rule, Severity, Subject};

pub(super) const HOSTDEV_NETWORK_NOT_ISOLATED: Rule = Rule {
    id: "hostdev-network-not-isolated",
    severity: Severity::Error,
    summary: "an interface on a hostdev-pool network does not have a PHB to itself",
    explanation: "\
What: an <interface type='network'> whose network is a hostdev pool (<forward mode='hostdev'>
with <pf> or <address> entries) has a guest address on the default PHB, behind a bridge, or on
a PHB that holds other devices too.

Why: when the guest starts, libvirt turns the interface into a VFIO hostdev of a VF it picks
from the pool; on POWER that device needs a PHB of its own for EEH error recovery, like any
hostdev. Which VF (and so which IOMMU group) is only decided at start, so the only placement
that is right for every VF is a PHB with nothing else on it. libvirt's automatic placement does
exactly that (an unused isolation group per such interface); an explicit address overrides it.

Fix by hand: add a PHB (<controller type='pci' model='pci-root'> with <model
name='spapr-pci-host-bridge'/> and a free <target index>) and give the interface an address on
it (slot 0x01) with nothing else there; or delete the interface's <address> and let libvirt
place it. 'virsh net-dumpxml NETWORK' shows whether a network is a hostdev pool.",
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for &i in &t.pool_interfaces {
            let dev = t.device(i);
            let Some(addr) = dev.address else { continue };
            let network = dev.network.as_deref().unwrap_or_default();
            let bus = addr.bus;
            let why = match t.bus(bus) {
                _ if bus == 0 => "is on the default PHB, which is reserved for emulated devices".to_string(),
                Bus::Bridge(c) => format!(
                    "sits behind controller pci index {} ({})",
                    c.index,
                    c.model.as_deref().unwrap_or("bridge")
                ),
                Bus::Phb(_) => {
                    let others = t.hostdevs_on(bus).count()
                        + t.emulated_on(bus).len()
                        + t.pool_interfaces_on(bus).len()
                        - 1;
                    if others == 0 {
                        continue;
                    }
                    format!(
                        "shares its PHB (bus {bus:#04x}) with {others} other device{}",
                        if others == 1 { "" } else { "s" }
                    )
                }
            };
            let name = dev.describe();
            out.push(Finding {
                rule,
                subject: Subject::Device(i),
                message: format!(
                    "{name} {why}; network '{network}' is a hostdev pool, so the interface becomes \
                     a hostdev at start: give it a PHB of its own"
                ),
                device: name,
            });
        }
    },
};
