//! Interfaces on a libvirt hostdev-pool network (`<forward mode='hostdev'>`): each becomes a
//! hostdev when the guest starts, of a VF libvirt picks from the pool only then, so its IOMMU
//! group is unknown beforehand. libvirt's own placement gives such an interface an isolation
//! group of its own (`qemuDomainFillDeviceIsolationGroup` → `qemuDomainFindUnusedIsolationGroup`,
//! src/qemu/qemu_domain_address.c): a PHB to itself. Only a libvirt connection can tell whether a
//! network is a pool, so `check` and the hook (sysfs) never fire this rule; `audit` does.

use super::{Finding, Rule, RuleId, Severity};
use crate::topology::Bus;

pub(super) const HOSTDEV_NETWORK_NOT_ISOLATED: Rule = Rule {
    id: RuleId::HostdevNetworkNotIsolated,
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
place it. 'virsh net-dumpxml NETWORK' shows whether a network is a hostdev pool. 'phbguard fix
--domain', which reads the networks through libvirt, moves it to a PHB of its own.",
    bad: include_str!("examples/hostdev-network-not-isolated.bad.xml"),
    good: include_str!("examples/hostdev-network-not-isolated.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for &i in t.pool_interfaces() {
            let dev = t.device(i);
            let Some(addr) = dev.address else { continue };
            let network = dev.network.as_deref().unwrap_or_default();
            let bus = addr.bus;
            let why = match t.bus(bus) {
                _ if bus == 0 => "is on the default PHB, which is reserved for emulated devices".to_string(),
                Bus::Bridge(_) => {
                    let model = t.controller(bus).and_then(|c| c.model.as_deref());
                    format!(
                        "sits behind controller pci index {bus} ({})",
                        model.unwrap_or("bridge")
                    )
                }
                Bus::Phb(_) | Bus::Unused => {
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
            out.push(Finding::about_device(
                rule,
                t,
                i,
                &format!(
                    "{why}; network '{network}' is a hostdev pool, so the interface becomes a hostdev \
                     at start: give it a PHB of its own"
                ),
            ));
        }
    },
};

#[cfg(test)]
mod tests {
    use crate::host::StaticHost;
    use crate::parse_domain;
    use crate::rules::judge;

    fn findings(devices: &str, pool: bool) -> Vec<String> {
        let xml = format!(
            "<domain type='kvm'><name>g</name><os><type arch='ppc64le' machine='pseries'>hvm</type></os>\
             <devices>\
             <controller type='pci' index='1' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='1'/></controller>\
             <controller type='pci' index='2' model='pci-bridge'/>{devices}</devices></domain>"
        );
        let domain = parse_domain(xml.as_bytes()).unwrap();
        let host = if pool {
            StaticHost::new().with_hostdev_network("vfpool")
        } else {
            StaticHost::new()
        };
        judge(&domain, &host)
            .iter()
            .filter(|f| f.rule.id != crate::rules::RuleId::PciBridgeOnPseries)
            .map(|f| format!("{} {}", f.rule.id, f.message))
            .collect()
    }

    fn nic(mac: &str, network: &str, bus: u8, slot: u8) -> String {
        format!(
            "<interface type='network'><mac address='{mac}'/><source network='{network}'/>\
             <address type='pci' domain='0x0000' bus='{bus:#04x}' slot='{slot:#04x}' function='0x0'/></interface>"
        )
    }

    #[test]
    fn a_pool_interface_needs_a_phb_to_itself() {
        assert_eq!(findings(&nic("m1", "vfpool", 1, 1), true), Vec::<String>::new());
        let shared = findings(
            &format!("{}{}", nic("m1", "vfpool", 1, 1), nic("m2", "lan", 1, 2)),
            true,
        );
        assert_eq!(
            shared,
            [
                "hostdev-network-not-isolated interface m1 at 0000:01:01.0 shares its PHB (bus 0x01) \
              with 1 other device; network 'vfpool' is a hostdev pool, so the interface becomes a \
              hostdev at start: give it a PHB of its own"
            ]
        );
        let two_pool = findings(
            &format!("{}{}", nic("m1", "vfpool", 1, 1), nic("m2", "vfpool", 1, 2)),
            true,
        );
        assert_eq!(two_pool.len(), 2, "{two_pool:?}");
        let bridge = findings(&nic("m1", "vfpool", 2, 1), true);
        assert!(
            bridge[0].contains("sits behind controller pci index 2 (pci-bridge)"),
            "{bridge:?}"
        );
        assert!(findings(&nic("m1", "vfpool", 0, 3), true)[0].contains("is on the default PHB"));
    }

    #[test]
    fn without_libvirt_nobody_knows_a_pool_and_nothing_fires() {
        // A network that is no pool (or host facts that cannot tell) is an emulated NIC.
        assert_eq!(findings(&nic("m1", "vfpool", 0, 3), false), Vec::<String>::new());
    }
}
