//! Hostile and odd input, each with the verdict it must get: a finding (exit 0/1) or one clear
//! error line (exit 2), never a panic, a hang, an expanded entity or a file read that the
//! input asked for. Large inputs are generated here, not committed. The hook entry is run on
//! the cases where a guest start would meet them.

use crate::support;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use support::{FakeSysfs, Run};

/// Compliant (exit 0) and breaking hostdev-on-default-phb (exit 1) on tests/cases/host.txt.
const COMPLIANT: &str = "tests/cases/hostdev-on-default-phb/pass-own-phb.xml";
const BAD: &str = "tests/cases/hostdev-on-default-phb/fail-vfio-on-bus0.xml";

fn read(case: &str) -> String {
    std::fs::read_to_string(support::repo().join(case)).unwrap()
}

struct Verdict {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs phbguard (as `uid` when given, through setpriv) with `stdin`. A run that has not ended
/// after five minutes is killed and reported as a hang: this guards against hangs, it does not
/// measure speed.
fn run_as(uid: Option<u32>, args: &[&str], stdin: Vec<u8>) -> Verdict {
    let run = match uid {
        Some(uid) => Run::as_user(uid, support::bin()),
        None => Run::new(support::bin()),
    };
    let out = run
        .args(args)
        .stdin(stdin)
        .hang_after(Duration::from_secs(300))
        .output();
    Verdict {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `phbguard check --format json -` on `input`.
fn check(sysfs: &FakeSysfs, input: impl Into<Vec<u8>>) -> Verdict {
    run_as(
        None,
        &["check", "--format", "json", "--sysfs-root", sysfs.path_str(), "-"],
        input.into(),
    )
}

/// The hook entry at `prepare begin`, policy from a file that points it at `sysfs`.
fn hook(sysfs: &FakeSysfs, input: impl Into<Vec<u8>>) -> Verdict {
    let config = sysfs.path().join("phbguard.toml");
    std::fs::write(
        &config,
        format!(
            "sysfs_root = \"{}\"\nsyslog_socket = \"/nonexistent/phbguard-test\"\n",
            sysfs.path_str()
        ),
    )
    .unwrap();
    let flag = format!("--config={}", config.display());
    run_as(
        None,
        &["hook", &flag, "guest", "prepare", "begin", "-"],
        input.into(),
    )
}

/// Exit 2 and exactly one short stderr line that names standard input and says `what`.
fn assert_bad_input(v: &Verdict, what: &str) {
    assert_eq!(v.code, Some(2), "stderr: {}", v.stderr);
    assert_eq!(v.stderr.lines().count(), 1, "not one line: {:?}", v.stderr);
    assert!(v.stderr.len() < 500, "an error line of {} bytes", v.stderr.len());
    assert!(
        v.stderr.starts_with("phbguard: -: "),
        "{:?} does not name the input",
        v.stderr
    );
    assert!(v.stderr.contains(what), "{:?} does not say {what:?}", v.stderr);
}

/// The rule ids of the findings in a JSON report, sorted.
fn rules(v: &Verdict) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(&v.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {} {}", v.stdout, v.stderr));
    let mut ids: Vec<String> = json["results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["findings"].as_array().cloned().unwrap_or_default())
        .map(|f| f["rule"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// Exit `code` with findings of exactly `expected` rules and nothing on stderr.
fn assert_judged(v: &Verdict, code: i32, expected: &[&str]) {
    assert_eq!(v.code, Some(code), "stdout: {} stderr: {}", v.stdout, v.stderr);
    assert!(v.stderr.is_empty(), "{}", v.stderr);
    assert_eq!(rules(v), expected, "{}", v.stdout);
}

fn with_doctype(doc: &str, dtd: &str) -> String {
    format!("<?xml version='1.0'?>\n<!DOCTYPE domain [\n{dtd}\n]>\n{doc}")
}

#[test]
fn entity_expansion_is_never_expanded() {
    let host = support::case_host();
    let mut dtd = String::from("<!ENTITY lol0 'lol'>\n");
    for i in 1..10 {
        let refs: String = (0..10).map(|_| format!("&lol{};", i - 1)).collect();
        dtd.push_str(&format!("<!ENTITY lol{i} '{refs}'>\n"));
    }
    // In the domain's name (text the parser reads): an unknown entity, one line, exit 2.
    let doc = read(COMPLIANT).replace(
        "<name>hostdev-on-default-phb-pass-own-phb</name>",
        "<name>&lol9;</name>",
    );
    let v = check(&host, with_doctype(&doc, &dtd));
    assert_bad_input(&v, "entity");
    assert!(!v.stderr.contains("lollol"), "{}", v.stderr);
    // In an attribute the rules read: not a number, exit 2.
    let doc = read(COMPLIANT).replacen("bus='0x01' slot='0x01'", "bus='&lol9;' slot='0x01'", 1);
    let v = check(&host, with_doctype(&doc, &dtd));
    assert_eq!(v.code, Some(2), "{}", v.stderr);
    assert!(
        !v.stderr.contains("lollol") && v.stderr.lines().count() == 1,
        "{}",
        v.stderr
    );
    // Where nothing reads it (an attribute of an element the rules skip): never expanded, the
    // guest judged as it is.
    let doc = read(COMPLIANT).replace("type='qcow2'", "type='&lol9;'");
    assert_judged(&check(&host, with_doctype(&doc, &dtd)), 0, &[]);
    // The hook at a guest start: let through by the default policy, said on stderr, no
    // expansion.
    let doc = read(COMPLIANT).replace(
        "<name>hostdev-on-default-phb-pass-own-phb</name>",
        "<name>&lol9;</name>",
    );
    let v = hook(&host, with_doctype(&doc, &dtd));
    assert_eq!(v.code, Some(0), "{}", v.stderr);
    assert!(
        v.stderr.contains("entity") && !v.stderr.contains("lollol"),
        "{}",
        v.stderr
    );
}

#[test]
fn external_entities_are_never_read() {
    let host = support::case_host();
    let secret = host.path().join("secret");
    std::fs::write(&secret, "SECRET-MARKER-7f3a").unwrap();
    let dtd = format!(
        "<!ENTITY xxe SYSTEM 'file://{0}'>\n<!ENTITY % pe SYSTEM 'file://{0}'>\n%pe;",
        secret.display()
    );
    for (what, doc) in [
        (
            "name",
            read(COMPLIANT).replace(
                "<name>hostdev-on-default-phb-pass-own-phb</name>",
                "<name>&xxe;</name>",
            ),
        ),
        (
            "attribute",
            read(COMPLIANT).replacen("bus='0x01' slot='0x01'", "bus='&xxe;' slot='0x01'", 1),
        ),
    ] {
        let v = check(&host, with_doctype(&doc, &dtd));
        assert_eq!(v.code, Some(2), "{what}: {}", v.stderr);
        assert_eq!(v.stderr.lines().count(), 1, "{what}: {}", v.stderr);
        assert!(
            !v.stderr.contains("SECRET") && !v.stdout.contains("SECRET"),
            "{what}: read the file"
        );
    }
    // Declared but unused: the document is judged as it is.
    assert_judged(
        &check(&host, with_doctype(&read(BAD), &dtd)),
        1,
        &["hostdev-on-default-phb"],
    );
}

#[test]
fn hundred_thousand_deep_nesting() {
    let host = support::case_host();
    let depth = 100_000;
    let nest = |inner: &str| format!("{}{inner}{}", "<a>".repeat(depth), "</a>".repeat(depth));
    // Inside <metadata> and inside a device: judged as the same guest without them.
    let doc = read(BAD)
        .replace(
            "<devices>",
            &format!("<metadata>{}</metadata>\n  <devices>", nest("x")),
        )
        .replacen("<driver name='qemu' type='qcow2'/>", &nest("<b/>"), 1);
    assert_judged(&check(&host, doc.clone()), 1, &["hostdev-on-default-phb"]);
    assert_eq!(hook(&host, doc).code, Some(1));
    // Never closed: truncated, one line.
    let doc = read(COMPLIANT).replace("<devices>", &format!("<devices>{}", "<a>".repeat(depth)));
    // (quick-xml meets </devices> while 100,000 <a> are open.)
    assert_bad_input(&check(&host, doc), "malformed XML");
}

#[test]
fn ten_megabyte_attribute_values() {
    let host = support::case_host();
    let big = "A".repeat(10 << 20);
    // Where no rule reads it.
    let doc = read(BAD).replace("/var/lib/libvirt/images/vda.qcow2", &big);
    assert_judged(&check(&host, doc), 1, &["hostdev-on-default-phb"]);
    // Where a rule reads it: ten megabytes of leading zeros are still the number 1, as
    // libvirt's strtoul-based parsing reads them; ten megabytes of digits are out of range, in
    // one error line that does not echo them.
    let zeros = format!("0x{}1", "0".repeat(10 << 20));
    let doc = read(COMPLIANT).replacen("bus='0x01' slot='0x01'", &format!("bus='{zeros}' slot='0x01'"), 1);
    assert_judged(&check(&host, doc), 0, &[]);
    let digits = "9".repeat(10 << 20);
    let doc = read(COMPLIANT).replacen(
        "bus='0x01' slot='0x01'",
        &format!("bus='{digits}' slot='0x01'"),
        1,
    );
    let v = check(&host, doc);
    assert_bad_input(&v, "bus");
    // A 10 MB device name (alias) that appears in findings: reported, bounded by the input.
    let doc = read(BAD).replace("<driver name='vfio'/>", &format!("<alias name='ua-{big}'/>"));
    let v = check(&host, doc);
    assert_eq!(v.code, Some(1), "{}", &v.stderr[..v.stderr.len().min(300)]);
}

#[test]
fn twenty_thousand_devices() {
    let host = support::case_host();
    // A pSeries guest has at most 31 PHBs (target index 0..=30) of 248 functions: 7,192 PCI
    // disks on PHBs 2..=30, and 12,808 SCSI disks with drive addresses (no PCI address).
    // With COMPLIANT's hostdev alone on PHB 1: compliant.
    let mut devices = String::new();
    for phb in 2..=30 {
        devices.push_str(&format!(
            "<controller type='pci' index='{phb}' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='{phb}'/></controller>\n"
        ));
    }
    for i in 0..20_000 {
        let address = if i < 29 * 248 {
            let (phb, slot_fn) = (2 + i / 248, i % 248);
            format!(
                "<address type='pci' domain='0x0000' bus='{phb:#04x}' slot='{:#04x}' function='{:#x}'/>",
                1 + slot_fn / 8,
                slot_fn % 8
            )
        } else {
            format!(
                "<address type='drive' controller='0' bus='0' target='{}' unit='{}'/>",
                i / 16384,
                i % 16384
            )
        };
        devices.push_str(&format!(
            "<disk type='file' device='disk'><source file='/img/{i}.img'/><target dev='sd{i}' bus='scsi'/>{address}</disk>\n"
        ));
    }
    let doc = read(COMPLIANT).replace("</devices>", &format!("{devices}</devices>"));
    assert!(doc.matches("<disk ").count() + 3 >= 20_000);
    assert_judged(&check(&host, doc.clone()), 0, &[]);
    assert_eq!(hook(&host, doc.clone()).code, Some(0));
    // One hostdev moved onto the default PHB among them: found.
    let doc = doc.replacen(
        "<address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/>",
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x0'/>",
        1,
    );
    assert_judged(&check(&host, doc.clone()), 1, &["hostdev-on-default-phb"]);
    assert_eq!(hook(&host, doc).code, Some(1));
}

#[test]
fn invalid_utf8_and_nul() {
    let host = support::case_host();
    let mut doc = read(COMPLIANT).into_bytes();
    let at = doc.windows(6).position(|w| w == b"<name>").unwrap() + 6;
    doc.insert(at, 0xff);
    assert_bad_input(
        &check(&host, doc),
        &format!("not UTF-8 text (invalid byte at offset {at})"),
    );
    // NUL is not an XML character: libvirt's parser refuses it, so must phbguard.
    let doc = read(COMPLIANT).replace("<name>", "<name>\0");
    assert_bad_input(&check(&host, doc), "malformed XML");
    let doc = read(COMPLIANT).replace("bus='0x01' slot", "bus='0x01\0' slot");
    assert_eq!(check(&host, doc).code, Some(2));
}

#[test]
fn crlf_line_ends_judge_the_same() {
    let host = support::case_host();
    assert_judged(&check(&host, read(COMPLIANT).replace('\n', "\r\n")), 0, &[]);
    assert_judged(
        &check(&host, read(BAD).replace('\n', "\r\n")),
        1,
        &["hostdev-on-default-phb"],
    );
}

#[test]
fn byte_order_marks() {
    let host = support::case_host();
    // UTF-8 with a BOM is valid XML that libvirt reads: judged as without it.
    let with_bom = |s: String| [b"\xef\xbb\xbf".as_slice(), s.as_bytes()].concat();
    assert_judged(&check(&host, with_bom(read(COMPLIANT))), 0, &[]);
    assert_judged(&check(&host, with_bom(read(BAD))), 1, &["hostdev-on-default-phb"]);
    // UTF-16 (libvirt's domain XML never is): one line, exit 2.
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(read(COMPLIANT).encode_utf16().flat_map(|u| u.to_le_bytes()))
        .collect();
    assert_bad_input(&check(&host, utf16), "not UTF-8");
}

#[test]
fn namespaced_elements_are_not_devices() {
    let host = support::case_host();
    // A hostdev on the default PHB under another namespace, and QEMU's own command line: not
    // libvirt devices, not judged; the compliant guest stays compliant.
    let foreign = "<x:hostdev xmlns:x='urn:example' mode='subsystem' type='pci'><x:source><x:address domain='0x0002' bus='0x02' slot='0x00' function='0x0'/></x:source>\
                   <x:address type='pci' domain='0x0000' bus='0x00' slot='0x1e' function='0x0'/></x:hostdev>";
    let doc = read(COMPLIANT)
        .replace("<domain type='kvm'>", "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>")
        .replace("</devices>", &format!("{foreign}\n  </devices>\n  <qemu:commandline><qemu:arg value='-device'/><qemu:arg value='vfio-pci,host=0002:02:00.0,bus=pci.0'/></qemu:commandline>"));
    assert_judged(&check(&host, doc), 0, &[]);
    // The same hostdev in libvirt's (no) namespace is judged.
    let doc = read(COMPLIANT).replace(
        "</devices>",
        &format!(
            "{}\n  </devices>",
            foreign.replace(" xmlns:x='urn:example'", "").replace("x:", "")
        ),
    );
    assert_judged(&check(&host, doc), 1, &["hostdev-on-default-phb"]);
}

#[test]
fn comments_and_processing_instructions_everywhere() {
    let host = support::case_host();
    let sprinkle = |s: String| -> String {
        let mut out = String::from("<?xml version='1.0'?><!-- before --><?pi before?>\n");
        for (i, part) in s.split_inclusive('>').enumerate() {
            out.push_str(part);
            out.push_str(&format!("<!-- c{i} --><?pi-{i} data?>"));
        }
        out
    };
    assert_judged(&check(&host, sprinkle(read(COMPLIANT))), 0, &[]);
    assert_judged(&check(&host, sprinkle(read(BAD))), 1, &["hostdev-on-default-phb"]);
    // Every rule case, sprinkled, gets the findings it gets plain.
    for entry in std::fs::read_dir(support::repo().join("tests/cases")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_none_or(|e| e != "xml") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let (plain, sprinkled) = (check(&host, text.clone()), check(&host, sprinkle(text)));
            assert_eq!(plain.code, sprinkled.code, "{}", file.display());
            if plain.code != Some(2) {
                assert_eq!(rules(&plain), rules(&sprinkled), "{}", file.display());
            }
        }
    }
}

/// COMPLIANT's hostdev (0005:90:01.0) on a sysfs where its entry is what `make` leaves.
fn odd_sysfs(make: impl FnOnce(&Path)) -> FakeSysfs {
    let sysfs = FakeSysfs::new();
    let dev = sysfs.path().join("bus/pci/devices/0005:90:01.0");
    std::fs::create_dir_all(dev.parent().unwrap()).unwrap();
    make(&dev);
    sysfs
}

#[test]
fn sysfs_symlink_loops() {
    // The iommu_group link points at itself; the device directory is a loop of two links.
    let looped = odd_sysfs(|dev| {
        std::fs::create_dir(dev).unwrap();
        symlink("iommu_group", dev.join("iommu_group")).unwrap();
        symlink("numa_node", dev.join("numa_node")).unwrap();
    });
    assert_judged(&check(&looped, read(COMPLIANT)), 0, &["iommu-group-unknown"]);
    let looped_dir = odd_sysfs(|dev| {
        symlink("0005:90:01.0-b", dev).unwrap();
        symlink("0005:90:01.0", dev.with_file_name("0005:90:01.0-b")).unwrap();
    });
    assert_judged(&check(&looped_dir, read(COMPLIANT)), 0, &["iommu-group-unknown"]);
    assert_eq!(hook(&looped_dir, read(COMPLIANT)).code, Some(0));
}

#[test]
fn iommu_group_link_pointing_elsewhere() {
    // phbguard reads the link, never follows it, and takes the group number from its last
    // component as libvirt does (virPCIDeviceAddressGetIOMMUGroupNum): a target that does not
    // end in a number is unknown, and nothing at the target is opened.
    let elsewhere = odd_sysfs(|dev| {
        std::fs::create_dir(dev).unwrap();
        symlink("/etc/passwd", dev.join("iommu_group")).unwrap();
    });
    let v = check(&elsewhere, read(COMPLIANT));
    assert_judged(&v, 0, &["iommu-group-unknown"]);
    assert!(
        v.stdout.contains("/etc/passwd") && !v.stdout.contains("root:"),
        "{}",
        v.stdout
    );
    let numbered = odd_sysfs(|dev| {
        std::fs::create_dir(dev).unwrap();
        symlink("/nonexistent/place/42", dev.join("iommu_group")).unwrap();
    });
    assert_judged(&check(&numbered, read(COMPLIANT)), 0, &[]);
}

#[test]
fn unreadable_sysfs_attributes() {
    // As root, permissions do not stop reads: run phbguard as nobody (setpriv), as
    // tests/it/fix_cli.rs does. The tree itself is traversable by nobody; the device's entries
    // are not.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap()
        == 0;
    let sysfs = support::case_host();
    let dev = sysfs.path().join("bus/pci/devices/0005:90:01.0");
    std::fs::write(dev.join("numa_node"), "1\n").unwrap();
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(sysfs.path(), 0o755);
    mode(&dev.join("numa_node"), 0o000);
    let uid = root.then_some(65534);
    let args = ["check", "--format", "json", "--sysfs-root", sysfs.path_str(), "-"];
    // numa_node unreadable: the node is unknown, no NUMA finding, no error.
    let v = run_as(uid, &args, read(COMPLIANT).into_bytes());
    assert_judged(&v, 0, &[]);
    // The device directory unreadable and unsearchable: its group is unknown.
    mode(&dev, 0o000);
    let v = run_as(uid, &args, read(COMPLIANT).into_bytes());
    mode(&dev, 0o755);
    assert_judged(&v, 0, &["iommu-group-unknown"]);
}
