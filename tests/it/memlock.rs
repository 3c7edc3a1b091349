//! phbguard's copy of libvirt's locked-memory figure against libvirt 9.0's own test data
//! (tests/memlock/libvirt-9.0: its qemumemlockdata pSeries files and the figures
//! qemumemlocktest.c expects for them).

use phbguard_core::host::{Facts, StaticHost};
use phbguard_core::memlock;
use phbguard_core::model::PciAddr;

#[test]
fn every_libvirt_pseries_case_gets_libvirts_figure() {
    let dir = phbguard_testkit::repo().join("tests/memlock/libvirt-9.0");
    let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    // The hostdev every case names, in an IOMMU group as libvirt's PCI mock has it.
    let host = StaticHost::new().with_device(PciAddr::parse_sysfs("0001:01:00.0").unwrap(), 5, None);
    let mut checked = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, figure) = line.split_once(char::is_whitespace).unwrap();
        let figure: u64 = figure.trim().parse().unwrap();
        let file = dir.join(format!("qemumemlock-{name}.xml"));
        let xml = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let domain = phbguard_core::parse_domain(&xml).unwrap();
        let facts = Facts::gather(&domain, &host);
        let inputs =
            memlock::Inputs::of_domain(&domain, &facts).unwrap_or_else(|| panic!("{name}: no inputs"));
        assert_eq!(
            memlock::libvirt_limit_bytes(&inputs),
            figure,
            "{name}: {inputs:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 9, "every pSeries case of qemumemlocktest.c");
}
