//! `phbguard fix` against a real libvirtd (tests/e2e/libvirtd-sandbox.sh; scripts/test-all
//! starts it): the fixed XML of every failing example is accepted by `virsh define`, and what
//! libvirt stores (`virsh dumpxml --inactive`) checks clean and keeps the placement fix chose:
//! the same address for every device, the same PHBs and no PHB libvirt had to add.

use crate::support;

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
    let _daemon = support::libvirtd();
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

/// Defines `xml` (made fit for the sandbox) as `name`; the result of `virsh define`.
fn define(work: &std::path::Path, xml: &str, name: &str) -> std::process::Output {
    let file = work.join(format!("{name}.xml"));
    std::fs::write(&file, for_sandbox(xml, name)).unwrap();
    virsh(&["define", file.to_str().unwrap()])
}

/// What phbguard reads is what libvirt reads (docs/rules.md, "How numbers are read"), and the
/// cases libvirt refuses are refused by it, fixed by `fix` into definitions it accepts.
#[test]
#[ignore = "needs libvirtd"]
fn libvirt_reads_numbers_and_addresses_as_phbguard_does_and_accepts_what_fix_makes() {
    let _daemon = support::libvirtd();
    let work = tempfile::tempdir().unwrap();
    let mut defined = Defined::default();
    let host = support::case_host();
    let cases = support::repo().join("tests/cases");

    // Refused by libvirt as given; defined, and clean, once fixed.
    for (case, refusal) in [
        (
            "pci-address-duplicate/fail-two-disks-one-slot",
            "Attempted double use of PCI Address",
        ),
        (
            "pci-address-duplicate/fail-default-phb-full",
            "Attempted double use of PCI Address",
        ),
        ("phb-wrong-model/fail-pci-bridge-name", "modelName"),
        // Not even a model name libvirt knows: refused while parsing.
        (
            "phb-wrong-model/fail-pcie-root-name",
            "Invalid value for attribute 'name' in element 'model'",
        ),
    ] {
        let path = cases.join(format!("{case}.xml"));
        let input = std::fs::read_to_string(&path).unwrap();
        let name = format!("{PREFIX}{}", case.replace('/', "-"));
        let refused = define(work.path(), &input, &name);
        if refused.status.success() {
            defined.0.push(name.clone());
        }
        assert!(!refused.status.success(), "{case}: libvirt accepted it");
        assert!(text(&refused).contains(refusal), "{case}: {}", text(&refused));

        let fixed = support::run(
            &[
                "fix",
                "--quiet",
                "--sysfs-root",
                host.path_str(),
                path.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(
            fixed.status.code(),
            Some(0),
            "{case}: {}",
            support::stderr(&fixed)
        );
        let accepted = define(work.path(), &support::stdout(&fixed), &name);
        assert!(
            accepted.status.success(),
            "{case}: fixed, still refused: {}",
            text(&accepted)
        );
        defined.0.push(name.clone());
        let dump = virsh(&["dumpxml", "--inactive", &name]);
        let recheck = support::run(&["check", "--sysfs-root", host.path_str(), "-"], &dump.stdout);
        assert_eq!(
            recheck.status.code(),
            Some(0),
            "{case}: {}",
            support::stdout(&recheck)
        );
    }

    // Base 0 for an address and a target index, base 10 for a controller index; an address
    // without domain, bus and slot is assigned by libvirt; the first <address> is the one.
    let xml = "<domain type='qemu'>\n  <name>x</name>\n  <memory unit='MiB'>256</memory>\n  \
        <os>\n    <type arch='ppc64le' machine='pseries'>hvm</type>\n  </os>\n  <devices>\n    \
        <controller type='pci' index='010' model='pci-root'>\n      <target index='011'/>\n    </controller>\n    \
        <disk type='file' device='disk'><source file='/nonexistent/a.qcow2'/><target dev='vda' bus='virtio'/>\
        <address type='pci' bus='010' slot='01'/></disk>\n    \
        <disk type='file' device='disk'><source file='/nonexistent/b.qcow2'/><target dev='vdb' bus='virtio'/>\
        <address type='pci' domain='0' bus='0' slot='0' function='0'/></disk>\n    \
        <disk type='file' device='disk'><source file='/nonexistent/c.qcow2'/><target dev='vdc' bus='virtio'/>\
        <address type='pci' bus='0' slot='0x07'/><address type='pci' bus='0' slot='0x08'/></disk>\n  \
        </devices>\n</domain>\n";
    let name = format!("{PREFIX}numbers");
    let out = define(work.path(), xml, &name);
    assert!(out.status.success(), "{}", text(&out));
    defined.0.push(name.clone());
    let dump = virsh(&["dumpxml", "--inactive", &name]);
    let libvirts = parse_domain(&dump.stdout).unwrap();
    let ours = parse_domain(xml.as_bytes()).unwrap();
    let disk = |d: &Domain, dev: &str| {
        d.devices
            .iter()
            .find(|x| x.label.as_deref() == Some(dev))
            .and_then(|x| x.address)
    };
    assert_eq!(disk(&libvirts, "vda"), disk(&ours, "vda"));
    assert_eq!(disk(&ours, "vda").unwrap().to_string(), "0000:08:01.0");
    assert_eq!(disk(&libvirts, "vdc"), disk(&ours, "vdc"));
    assert_eq!(disk(&ours, "vdc").unwrap().slot, 7);
    // Unassigned for phbguard; libvirt gave it a slot of its own.
    assert_eq!(disk(&ours, "vdb"), None);
    assert!(
        disk(&libvirts, "vdb").is_some_and(|a| a.slot != 0),
        "{}",
        text(&dump)
    );
    let phb = |d: &Domain| {
        d.pci_controllers()
            .find(|(_, c)| c.index == 10)
            .map(|(_, c)| c.target_index)
    };
    assert_eq!(phb(&libvirts), Some(Some(9)));
    assert_eq!(phb(&ours), Some(Some(9)));

    // A controller index libvirt reads in base 10 only: both refuse 0x0a.
    let hex = xml.replace("index='010' model='pci-root'", "index='0x0a' model='pci-root'");
    let out = define(work.path(), &hex, &format!("{PREFIX}hex-index"));
    assert!(!out.status.success());
    assert!(text(&out).contains("'0x0a'"), "{}", text(&out));
    let check = support::run(&["check", "-"], hex.as_bytes());
    assert_eq!(check.status.code(), Some(2), "{}", support::stderr(&check));
}

/// The spare PHBs of a definition: (index, target, node) of each.
fn spares(xml: &[u8]) -> Vec<(u32, Option<u32>, Option<u32>)> {
    let domain = parse_domain(xml).unwrap();
    let facts = phbguard_core::host::Facts::gather(&domain, &phbguard_core::host::StaticHost::new());
    phbguard_core::spare::spare_phbs(&domain, &facts)
        .unwrap()
        .iter()
        .map(|s| (s.index, s.target, s.node))
        .collect()
}

/// `fix --spare-phbs 2` on every failing example: libvirt defines the result and keeps its
/// spare PHBs as written, what it stores checks clean, and fixing that again with the same
/// option changes nothing.
#[test]
#[ignore = "needs libvirtd"]
fn fixed_examples_keep_their_spare_phbs_through_libvirts_define() {
    let _daemon = support::libvirtd();
    let sysfs = support::examples_sysfs();
    let work = tempfile::tempdir().unwrap();
    let mut defined = Defined::default();
    let mut checked = 0;
    for path in std::fs::read_dir(support::repo().join("examples/domains"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
    {
        let file = path.to_str().unwrap();
        let input = std::fs::read(&path).unwrap();
        let check = support::run(&["check", "--sysfs-root", &sysfs, file], b"");
        if check.status.code() != Some(1) || !parse_domain(&input).unwrap().is_pseries() {
            continue;
        }
        let fixed = support::run(
            &["fix", "-q", "--spare-phbs", "2", "--sysfs-root", &sysfs, file],
            b"",
        );
        assert_eq!(
            fixed.status.code(),
            Some(0),
            "{file}: {}",
            support::stderr(&fixed)
        );
        let ours = spares(&fixed.stdout);
        assert_eq!(ours.len(), 2, "{file}: {ours:?}");

        let stem = path.file_stem().unwrap().to_str().unwrap();
        let name = format!("{PREFIX}spare-{stem}");
        let out = define(work.path(), &support::stdout(&fixed), &name);
        assert!(out.status.success(), "{file}: {}", text(&out));
        defined.0.push(name.clone());
        let dump = virsh(&["dumpxml", "--inactive", &name]);
        assert_eq!(spares(&dump.stdout), ours, "{file}: libvirt changed the spares");
        let dump_file = work.path().join(format!("{stem}.dump.xml"));
        std::fs::write(&dump_file, &dump.stdout).unwrap();
        let again = support::run(
            &[
                "fix",
                "--spare-phbs",
                "2",
                "--sysfs-root",
                &sysfs,
                dump_file.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(
            again.status.code(),
            Some(0),
            "{file}: {}",
            support::stderr(&again)
        );
        assert_eq!(again.stdout, dump.stdout, "{file}: not byte for byte");
        assert!(
            support::stderr(&again).contains("already compliant, nothing to change"),
            "{file}: {}",
            support::stderr(&again)
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} examples were defined");
}

/// A guest with two NUMA cells, given three spare PHBs by `fix --spare-phbs 3`, starts under
/// TCG, and QEMU is given each spare with its cell (`numa_node`). A PHB tied to a cell the
/// guest does not have is refused at define, which is why fix ties spares to `<cpu><numa>`
/// cells only.
#[test]
#[ignore = "needs libvirtd"]
fn a_guest_with_spare_phbs_on_its_numa_cells_starts_and_qemu_has_them() {
    let _daemon = support::libvirtd();
    let name = format!("{PREFIX}spares-numa");
    let input = phbguard_testkit::xml::with_numa_cells(&phbguard_testkit::xml::guest(&name, ""), 2);
    let fixed = support::run(&["fix", "--spare-phbs", "3", "-"], input.as_bytes());
    assert_eq!(fixed.status.code(), Some(0), "{}", support::stderr(&fixed));
    assert_eq!(
        spares(&fixed.stdout),
        [
            (1, Some(1), Some(0)),
            (2, Some(2), Some(1)),
            (3, Some(3), Some(0))
        ]
    );

    let work = tempfile::tempdir().unwrap();
    let mut defined = Defined::default();
    let file = work.path().join("spares.xml");
    std::fs::write(&file, &fixed.stdout).unwrap();
    let out = virsh(&["define", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    defined.0.push(name.clone());
    let start = virsh(&["start", &name]);
    let qemu_log = std::fs::read_to_string(format!("/var/log/libvirt/qemu/{name}.log")).unwrap_or_default();
    let live = virsh(&["dumpxml", &name]);
    virsh(&["destroy", &name]);
    assert!(start.status.success(), "{}", text(&start));
    assert_eq!(spares(&live.stdout).len(), 3, "{}", text(&live));
    // This start's command line: after the log's last "starting up".
    let command = qemu_log.rsplit("starting up").next().unwrap_or_default();
    for (index, node) in [(1, 0), (2, 1), (3, 0)] {
        let device = format!(
            "\"driver\":\"spapr-pci-host-bridge\",\"index\":{index},\"id\":\"pci.{index}\",\"numa_node\":{node}}}"
        );
        assert!(command.contains(&device), "no {device} in\n{command}");
    }

    let elsewhere = String::from_utf8(fixed.stdout)
        .unwrap()
        .replacen("<node>1</node>", "<node>2</node>", 1);
    std::fs::write(&file, elsewhere).unwrap();
    let refused = virsh(&["define", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused)
            .contains("configured for a NUMA node (2) not present in the domain's <cpu><numa> array (2)"),
        "{}",
        text(&refused)
    );
}
