//! `phbguard fix` against a real libvirtd (tests/e2e/libvirtd-sandbox.sh; scripts/test-all
//! starts it): the fixed XML of every failing example is accepted by `virsh define`, and what
//! libvirt stores (`virsh dumpxml --inactive`) checks clean and keeps the placement fix chose:
//! the same address for every device, the same PHBs and no PHB libvirt had to add.

mod support;

use std::collections::BTreeMap;

use phbguard_core::model::{Domain, PciAddr};
use phbguard_core::parse_domain;
use support::{output_text as text, virsh};

const PREFIX: &str = "phbguard-e2e-fix-";

/// Undefines the domains it defined, also when an assertion fails.
#[derive(Default)]
struct Defined(Vec<String>);

impl Drop for Defined {
    fn drop(&mut self) {
        for name in &self.0 {
            virsh(&["undefine", name]);
        }
    }
}

/// The example as this sandbox can define it: TCG instead of KVM, the machine type its QEMU
/// has, a name of the test's own and no UUID that could clash. Devices stay as fix left them.
fn for_sandbox(xml: &str, name: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    for line in xml.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("<uuid>") {
            continue;
        }
        let line = if trimmed.starts_with("<domain ") {
            line.replace("type='kvm'", "type='qemu'")
        } else if trimmed.starts_with("<name>") {
            format!("  <name>{name}</name>")
        } else if trimmed.starts_with("<type ") && trimmed.contains("machine=") {
            let start = line.find("machine='").unwrap() + "machine='".len();
            let end = start + line[start..].find('\'').unwrap();
            format!("{}pseries{}", &line[..start], &line[end..])
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Every device's guest PCI address, keyed by how phbguard names the device.
fn addresses(domain: &Domain) -> BTreeMap<String, PciAddr> {
    domain
        .devices
        .iter()
        .filter_map(|d| d.address.map(|a| (d.name(), a)))
        .collect()
}

/// PHB index -> (target index, model name).
fn phbs(domain: &Domain) -> BTreeMap<u32, (Option<u32>, Option<String>)> {
    domain
        .pci_controllers()
        .filter(|(_, c)| c.is_phb())
        .map(|(_, c)| (c.index, (c.target_index, c.model_name.clone())))
        .collect()
}

#[test]
#[ignore = "needs libvirtd"]
fn libvirt_defines_every_fixed_example_and_keeps_its_placement() {
    support::assert_libvirtd_answers();
    let examples = support::repo().join("examples");
    let sysfs = examples.join("sysfs");
    let sysfs = sysfs.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut defined = Defined::default();
    let mut files: Vec<_> = std::fs::read_dir(examples.join("domains"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    let mut checked = Vec::new();
    for path in &files {
        let file = path.to_str().unwrap();
        let stem = path.file_stem().unwrap().to_str().unwrap();
        if support::run(&["check", "--sysfs-root", sysfs, file], b"")
            .status
            .code()
            != Some(1)
        {
            continue;
        }
        let fixed = support::run(&["fix", "--quiet", "--sysfs-root", sysfs, file], b"");
        let input = std::fs::read_to_string(path).unwrap();
        if !parse_domain(input.as_bytes()).unwrap().is_pseries() {
            // Not pSeries: fix has nothing to rewrite and says so.
            assert_eq!(fixed.status.code(), Some(1), "{file}");
            assert!(support::stderr(&fixed).contains("cannot fix"), "{file}");
            continue;
        }
        assert_eq!(
            fixed.status.code(),
            Some(0),
            "{file}: {}",
            support::stderr(&fixed)
        );
        let name = format!("{PREFIX}{stem}");
        let xml = for_sandbox(&support::stdout(&fixed), &name);
        let xml_file = work.path().join(format!("{stem}.xml"));
        std::fs::write(&xml_file, &xml).unwrap();
        let define = virsh(&["define", xml_file.to_str().unwrap()]);
        assert!(
            define.status.success(),
            "{file}: libvirt refused the fixed XML: {}",
            text(&define)
        );
        defined.0.push(name.clone());

        let dump = virsh(&["dumpxml", "--inactive", &name]);
        assert!(dump.status.success(), "{}", text(&dump));
        let dump_file = work.path().join(format!("{stem}.dump.xml"));
        std::fs::write(&dump_file, &dump.stdout).unwrap();
        let recheck = support::run(
            &["check", "--sysfs-root", sysfs, dump_file.to_str().unwrap()],
            b"",
        );
        assert_eq!(
            recheck.status.code(),
            Some(0),
            "{file}: libvirt's stored definition fails: {}",
            support::stdout(&recheck)
        );

        let ours = parse_domain(xml.as_bytes()).unwrap();
        let libvirts = parse_domain(&dump.stdout).unwrap();
        let stored = addresses(&libvirts);
        for (device, addr) in addresses(&ours) {
            assert_eq!(stored.get(&device), Some(&addr), "{file}: libvirt moved {device}");
        }
        // libvirt also names the default PHB when fix's output leaves it implied.
        let mut want = phbs(&ours);
        want.entry(0)
            .or_insert((Some(0), Some("spapr-pci-host-bridge".to_string())));
        assert_eq!(phbs(&libvirts), want, "{file}: PHBs differ after define");
        checked.push(stem.to_string());
    }
    assert!(checked.len() >= 6, "only {checked:?} were defined");
    eprintln!("defined and re-checked: {}", checked.join(", "));
}
