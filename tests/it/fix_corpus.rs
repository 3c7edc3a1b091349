//! `phbguard fix` on libvirt's own pSeries test inputs (tests/corpus/libvirt), on a fake sysfs
//! laid out like libvirt's test mock: with their guest addresses removed and
//! `--assign-addresses`, fix groups the hostdevs onto PHBs as libvirt's outputs do. Emulated
//! devices without an address are left to libvirt by design (it alone knows which of them take a
//! PCI slot), so only hostdevs are compared.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use phbguard_core::edit::{Edit, apply, line_removal};
use phbguard_core::model::{Domain, PciAddr};
use phbguard_core::parse_domain;

fn corpus(name: &str) -> String {
    std::fs::read_to_string(support::repo().join("tests/corpus/libvirt").join(name)).unwrap()
}

/// The input with every device's own `<address>` removed (hostdevs keep their `<source>`).
fn without_addresses(xml: &str) -> String {
    let domain = parse_domain(xml.as_bytes()).unwrap();
    let edits = domain
        .devices
        .iter()
        .filter(|d| d.address.is_some())
        .map(|d| Edit::delete(line_removal(xml, d.address_span.unwrap())))
        .collect();
    apply(xml, edits).unwrap()
}

/// `phbguard fix` on `xml` through stdin: exit code and output.
fn fix(xml: &str, args: &[&str]) -> (i32, String, String) {
    let mock = support::virpcimock();
    let mut all = vec!["fix", "--sysfs-root", mock.path_str()];
    all.extend(args);
    all.push("-");
    let out = support::run(&all, xml.as_bytes());
    (
        out.status.code().unwrap(),
        support::stdout(&out),
        support::stderr(&out),
    )
}

/// Host address of each hostdev -> its guest address.
fn hostdevs(domain: &Domain) -> BTreeMap<PciAddr, PciAddr> {
    domain
        .devices
        .iter()
        .filter_map(|d| Some((d.host_addr()?, d.address?)))
        .collect()
}

/// Which hostdevs share a PHB: the sets of host addresses per guest bus.
fn grouping(domain: &Domain) -> BTreeSet<BTreeSet<PciAddr>> {
    let mut by_bus: BTreeMap<u8, BTreeSet<PciAddr>> = BTreeMap::new();
    for (host, guest) in hostdevs(domain) {
        by_bus.entry(guest.bus).or_default().insert(host);
    }
    by_bus.into_values().collect()
}

fn parse(xml: &str) -> Domain {
    parse_domain(xml.as_bytes()).unwrap()
}

#[test]
fn without_addresses_hostdevs_are_grouped_as_libvirt_groups_them() {
    for case in ["pseries-hostdevs-1", "pseries-hostdevs-2", "pseries-hostdevs-3"] {
        let input = without_addresses(&corpus(&format!("{case}.in.xml")));
        let (code, out, err) = fix(&input, &["--assign-addresses"]);
        assert_eq!(code, 0, "{case}: {err}");
        let ours = parse(&out);
        let libvirts = parse(&corpus(&format!("{case}.out.xml")));
        assert_eq!(
            hostdevs(&ours).len(),
            hostdevs(&libvirts).len(),
            "{case}: a hostdev was not placed"
        );
        assert_eq!(grouping(&ours), grouping(&libvirts), "{case}");
    }
}

#[test]
fn where_libvirt_chose_every_address_fix_chooses_the_same() {
    // pseries-hostdevs-1 has no address in its input: libvirt placed all of it, in its device
    // order (the <interface type='hostdev'> first, on PHB 1), and added PHBs 1 and 2.
    let (code, out, err) = fix(&corpus("pseries-hostdevs-1.in.xml"), &["--assign-addresses"]);
    assert_eq!(code, 0, "{err}");
    let ours = parse(&out);
    let libvirts = parse(&corpus("pseries-hostdevs-1.out.xml"));
    assert_eq!(hostdevs(&ours), hostdevs(&libvirts));
    let phbs = |d: &Domain| -> Vec<(u32, Option<u32>)> {
        d.pci_controllers()
            .filter(|(_, c)| c.is_phb() && c.index > 0)
            .map(|(_, c)| (c.index, c.target_index))
            .collect()
    };
    assert_eq!(phbs(&ours), phbs(&libvirts));
    assert_eq!(phbs(&ours), [(1, Some(1)), (2, Some(2))]);
}

#[test]
fn an_unaddressed_function_joins_its_groups_phb_as_in_libvirt() {
    // pseries-hostdevs-3: 0001:01:00.0 was put on bus 2 by the user; libvirt places its sibling
    // function on the same PHB, slot 2.
    let (code, out, err) = fix(&corpus("pseries-hostdevs-3.in.xml"), &["--assign-addresses"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "phbguard: -: hostdev 0001:01:00.1: placed at 0000:02:02.0\n");
    assert_eq!(
        hostdevs(&parse(&out)),
        hostdevs(&parse(&corpus("pseries-hostdevs-3.out.xml")))
    );
}

#[test]
fn the_scsi_controller_leaves_the_hostdevs_phb_in_hostdevs_2() {
    // libvirt keeps the user's address: virtio-scsi beside hostdev 0001:01:00.0 on PHB 1.
    let input = corpus("pseries-hostdevs-2.in.xml");
    let (code, out, err) = fix(&input, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err,
        "phbguard: -: controller scsi: 0000:01:01.0 -> 0000:00:01.0\n"
    );
    let fixed = parse(&out);
    let scsi = fixed.devices.iter().find(|d| d.element == "controller").unwrap();
    assert_eq!(scsi.address.unwrap().to_string(), "0000:00:01.0");
    let hostdev = hostdevs(&fixed);
    assert_eq!(
        hostdev.values().map(|a| a.to_string()).collect::<Vec<_>>(),
        ["0000:01:02.0"]
    );
    let mock = support::virpcimock();
    let check = support::run(&["check", "--sysfs-root", mock.path_str(), "-"], out.as_bytes());
    assert_eq!(check.status.code(), Some(0), "{}", support::stdout(&check));
}

#[test]
fn inputs_without_hostdevs_are_left_for_libvirt_to_place() {
    for case in [
        "pseries-many-devices",
        "pseries-phb-simple",
        "pseries-phb-default-missing",
        "pseries-phb-numa-node",
    ] {
        let input = corpus(&format!("{case}.in.xml"));
        let (code, out, err) = fix(&input, &["--assign-addresses"]);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (
                0,
                input.as_str(),
                "phbguard: -: already compliant, nothing to change\n"
            ),
            "{case}"
        );
    }
}
