//! Rules about guest PCI addresses as such, whatever device holds them.

use super::{Finding, Rule, RuleId, Severity};
use crate::model::PciAddr;

pub(super) const PCI_ADDRESS_DUPLICATE: Rule = Rule {
    id: RuleId::PciAddressDuplicate,
    severity: Severity::Error,
    summary: "two devices have the same guest PCI address (libvirt refuses the define)",
    explanation: "\
What: two devices of a pSeries guest have the same <address type='pci' domain bus slot
function>. Functions of one slot are fine; the same function of the same slot twice is not.

Why: a guest PCI address names exactly one device. libvirt refuses the definition ('Attempted
double use of PCI Address 0000:01:01.0', virDomainPCIAddressReserveAddrInternal), so such a
guest can never be defined or started; the address was copied from another device by hand. An
address whose domain, bus and slot are all 0 is not an address (libvirt assigns one) and is
never a duplicate.

Fix by hand: give the later device a free slot on the same bus, or delete its <address> and let
libvirt assign one when it defines the guest. 'phbguard fix' moves every device after the first
to a free slot on the bus it was meant for.",
    bad: include_str!("examples/pci-address-duplicate.bad.xml"),
    good: include_str!("examples/pci-address-duplicate.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        // Sorted by address then device, each device after the first at an address is a
        // duplicate of that first one; reported in document order.
        let mut by_addr: Vec<(PciAddr, usize)> = t.addressed().map(|(i, addr)| (addr, i)).collect();
        by_addr.sort_unstable();
        let mut duplicates: Vec<(usize, usize, PciAddr)> = by_addr
            .chunk_by(|a, b| a.0 == b.0)
            .flat_map(|same| same[1..].iter().map(|&(addr, i)| (i, same[0].1, addr)))
            .collect();
        duplicates.sort_unstable();
        for (i, earlier, addr) in duplicates {
            out.push(Finding::about_device(
                rule,
                t,
                i,
                &format!(
                    "has the guest PCI address of {}; libvirt refuses the definition (\"Attempted \
                     double use of PCI Address {addr}\"): give it a free slot or remove its \
                     <address> and let libvirt assign one",
                    t.device(earlier).name()
                ),
            ));
        }
    },
};
