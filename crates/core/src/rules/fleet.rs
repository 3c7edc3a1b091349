//! Rules about several guests at once: what no single definition shows. `audit` judges them
//! over every defined guest of a host.

use std::collections::BTreeMap;

use super::{Finding, Rule, RuleId, Severity};
use crate::model::{Domain, PciAddr, Subject};

pub(super) const HOSTDEV_SHARED_BETWEEN_GUESTS: Rule = Rule {
    id: RuleId::HostdevSharedBetweenGuests,
    severity: Severity::Warning,
    summary: "one host PCI device is given to two or more defined guests",
    explanation: "\
What: the same host PCI device (a <hostdev> or <interface type='hostdev'> source address) is in
the definitions of two or more guests of one host.

Why: a host device can be assigned to one running guest only. Whichever guest starts second
fails ('Requested operation is not valid: PCI device ... is in use by driver QEMU, domain ...'),
typically at boot when both are on autostart. It is a warning, not an error: a cold standby
guest that is never run together with the other one is a legitimate setup.

Judged by 'phbguard audit' across all defined guests; 'phbguard check' sees one file at a time
and cannot tell.

Fix by hand: give each guest its own device (another VF of the same adapter, for SR-IOV), or
make sure the two guests never run together (autostart only one of them).",
    // Each guest alone keeps the rule; the two together (one file each) are what breaks it.
    bad: include_str!("examples/hostdev-shared-between-guests.bad.xml"),
    good: include_str!("examples/hostdev-shared-between-guests.good.xml"),
    // One definition cannot break it: [`shared_hostdevs`] judges a set of guests.
    check: |_, _, _| {},
};

/// For each guest of `guests` (one definition per guest), the findings about host devices it
/// shares with another guest of the set.
pub fn shared_hostdevs(guests: &[&Domain]) -> Vec<Vec<Finding>> {
    let mut users: BTreeMap<PciAddr, Vec<(usize, usize)>> = BTreeMap::new();
    for (g, domain) in guests.iter().enumerate() {
        for (d, dev) in domain.devices.iter().enumerate() {
            if let Some(host) = dev.host_addr() {
                users.entry(host).or_default().push((g, d));
            }
        }
    }
    let mut findings: Vec<Vec<Finding>> = guests.iter().map(|_| Vec::new()).collect();
    for (host, uses) in &users {
        for &(g, d) in uses {
            let mut others: Vec<&str> = uses
                .iter()
                .filter(|(other, _)| *other != g)
                .map(|&(other, _)| guests[other].display_name())
                .collect();
            if others.is_empty() {
                continue;
            }
            others.dedup();
            let name = guests[g].devices[d].describe();
            findings[g].push(Finding {
                rule: RuleId::HostdevSharedBetweenGuests.rule(),
                severity: RuleId::HostdevSharedBetweenGuests.rule().severity,
                subject: Subject::Device(d),
                line: Some(guests[g].devices[d].line),
                message: format!(
                    "{name}: host device {host} is also given to {}; only one of them can run at a time",
                    others
                        .iter()
                        .map(|o| format!("'{o}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                device: name,
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_domain;

    fn guest(name: &str, hosts: &[&str]) -> Domain {
        let devs: String = hosts
            .iter()
            .map(|h| {
                let p: Vec<&str> = h.split([':', '.']).collect();
                format!(
                    "<hostdev mode='subsystem' type='pci'><source><address domain='0x{}' bus='0x{}' \
                     slot='0x{}' function='0x{}'/></source></hostdev>",
                    p[0], p[1], p[2], p[3]
                )
            })
            .collect();
        let xml = format!(
            "<domain type='kvm'><name>{name}</name><os><type arch='ppc64le' machine='pseries'>hvm</type></os>\
             <devices>{devs}</devices></domain>"
        );
        parse_domain(xml.as_bytes()).unwrap()
    }

    #[test]
    fn a_device_in_two_guests_is_reported_in_both() {
        let a = guest("a", &["0002:02:00.0", "0002:03:00.0"]);
        let b = guest("b", &["0002:02:00.0"]);
        let c = guest("c", &["0002:04:00.0"]);
        let found = shared_hostdevs(&[&a, &b, &c]);
        let lines: Vec<Vec<String>> = found
            .iter()
            .map(|f| {
                f.iter()
                    .map(|f| format!("{} {} line {:?}", f.rule.id, f.message, f.line))
                    .collect()
            })
            .collect();
        assert_eq!(
            lines,
            [
                vec![
                    "hostdev-shared-between-guests hostdev 0002:02:00.0: host device 0002:02:00.0 \
                     is also given to 'b'; only one of them can run at a time line Some(1)"
                        .to_string()
                ],
                vec![
                    "hostdev-shared-between-guests hostdev 0002:02:00.0: host device 0002:02:00.0 \
                     is also given to 'a'; only one of them can run at a time line Some(1)"
                        .to_string()
                ],
                vec![],
            ]
        );
        assert!(matches!(found[0][0].subject, Subject::Device(0)));
    }
}
