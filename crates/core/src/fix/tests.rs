//! The planner's decisions, one scenario each, through [`fix`] on small domains.

use super::*;
use crate::host::StaticHost;
use crate::model::PciAddr;

fn addr(text: &str) -> PciAddr {
    let hex = |s: &str| u32::from_str_radix(s, 16).unwrap();
    let (domain, rest) = text.split_once(':').unwrap();
    let (bus, rest) = rest.split_once(':').unwrap();
    let (slot, function) = rest.split_once('.').unwrap();
    PciAddr {
        domain: hex(domain),
        bus: hex(bus) as u8,
        slot: hex(slot) as u8,
        function: hex(function) as u8,
    }
}

fn host(devices: &[(&str, u32, Option<u32>)]) -> StaticHost {
    devices
        .iter()
        .fold(StaticHost::new(), |h, &(a, g, n)| h.with_device(addr(a), g, n))
}

fn guest_address(bus: u8, slot: u8, function: u8) -> String {
    format!(
        "<address type='pci' domain='0x0000' bus='{bus:#04x}' slot='{slot:#04x}' function='{function:#x}'/>"
    )
}

fn hostdev(host: &str, at: Option<(u8, u8, u8)>) -> String {
    let a = addr(host);
    let address = at.map_or(String::new(), |(b, s, f)| guest_address(b, s, f));
    format!(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='{:#06x}' bus='{:#04x}' \
         slot='{:#04x}' function='{:#x}'/></source>{address}</hostdev>",
        a.domain, a.bus, a.slot, a.function
    )
}

fn emulated(bus: u8, slot: u8) -> String {
    format!(
        "<rng model='virtio'><backend model='random'>/dev/urandom</backend>{}</rng>",
        guest_address(bus, slot, 0)
    )
}

fn phb(index: u32, target: u32) -> String {
    format!(
        "<controller type='pci' index='{index}' model='pci-root'><model name='spapr-pci-host-bridge'/>\
         <target index='{target}'/></controller>"
    )
}

fn bridge(index: u32, at: (u8, u8)) -> String {
    format!(
        "<controller type='pci' index='{index}' model='pci-bridge'>{}</controller>",
        guest_address(at.0, at.1, 0)
    )
}

fn domain(extra: &str, devices: &[String]) -> String {
    let devices: String = devices.iter().map(|d| format!("    {d}\n")).collect();
    format!(
        "<domain type='kvm'>\n  <name>t</name>\n  <os>\n    <type arch='ppc64le' machine='pseries'>hvm</type>\n  \
         </os>\n{extra}  <devices>\n{devices}  </devices>\n</domain>\n"
    )
}

struct Outcome {
    changes: Vec<String>,
    problems: Vec<String>,
    output: String,
    clean: bool,
}

fn run_with(xml: &str, host: &StaticHost, options: Options) -> Outcome {
    let parsed = crate::parse_domain(xml.as_bytes()).unwrap();
    let fixed = fix(xml, &parsed, host, options).unwrap();
    Outcome {
        changes: fixed.plan.changes.iter().map(|c| c.describe(&parsed)).collect(),
        problems: fixed.problems().iter().map(ToString::to_string).collect(),
        clean: fixed.is_clean(),
        output: fixed.output,
    }
}

fn run(xml: &str, host: &StaticHost) -> Outcome {
    run_with(xml, host, Options::default())
}

/// What a fix that must come out clean changes.
fn clean_changes(xml: &str, host: &StaticHost) -> Vec<String> {
    let out = run(xml, host);
    assert!(out.clean, "{:?}", out.problems);
    out.changes
}

#[test]
fn each_group_keeps_the_phb_that_holds_most_of_it() {
    let h = host(&[
        ("0001:01:00.0", 5, None),
        ("0001:01:00.1", 5, None),
        ("0002:01:00.0", 6, None),
        ("0002:01:00.1", 6, None),
    ]);
    let xml = domain(
        "",
        &[
            phb(1, 1),
            phb(2, 2),
            hostdev("0001:01:00.0", Some((1, 1, 0))),
            hostdev("0001:01:00.1", Some((1, 2, 0))),
            hostdev("0002:01:00.0", Some((1, 3, 0))),
            hostdev("0002:01:00.1", Some((2, 1, 0))),
        ],
    );
    assert_eq!(
        clean_changes(&xml, &h),
        ["hostdev 0002:01:00.0: 0000:01:03.0 -> 0000:02:02.0"]
    );
}

#[test]
fn functions_of_one_slot_move_together_and_keep_their_numbers() {
    let h = host(&[("0003:01:00.0", 7, None), ("0003:01:00.1", 7, None)]);
    let xml = domain(
        "",
        &[
            hostdev("0003:01:00.0", Some((0, 5, 0))),
            hostdev("0003:01:00.1", Some((0, 5, 1))),
        ],
    );
    assert_eq!(
        clean_changes(&xml, &h),
        [
            "added PHB index 1 target 1",
            "hostdev 0003:01:00.0: 0000:00:05.0 -> 0000:01:01.0",
            "hostdev 0003:01:00.1: 0000:00:05.1 -> 0000:01:01.1",
        ]
    );
}

#[test]
fn a_function_that_moves_alone_becomes_function_0() {
    let h = host(&[("0003:01:00.0", 7, None), ("0003:01:00.1", 8, None)]);
    let xml = domain(
        "",
        &[
            phb(1, 1),
            hostdev("0003:01:00.0", Some((1, 1, 0))),
            hostdev("0003:01:00.1", Some((1, 1, 1))),
        ],
    );
    assert_eq!(
        clean_changes(&xml, &h),
        [
            "added PHB index 2 target 2",
            "hostdev 0003:01:00.1: 0000:01:01.1 -> 0000:02:01.0"
        ]
    );
}

#[test]
fn a_hostdev_of_unknown_group_that_must_move_is_reported_and_left() {
    let xml = domain("", &[hostdev("0009:01:00.0", Some((0, 4, 0)))]);
    let out = run(&xml, &StaticHost::new());
    assert!(!out.clean);
    assert!(out.changes.is_empty(), "{:?}", out.changes);
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert!(
        out.problems[0]
            .starts_with("hostdev 0009:01:00.0 at 0000:00:04.0: has to move but its IOMMU group is unknown"),
        "{}",
        out.problems[0]
    );
}

/// A pci-bridge with an emulated device and a hostdev (group 3) behind it: the hostdev moves to
/// a new PHB, the bridge stays for the emulated device.
fn bridge_keeping_an_emulated_device_and_a_hostdev() -> Vec<String> {
    vec![
        bridge(1, (0, 3)),
        emulated(1, 2),
        hostdev("0002:02:00.0", Some((1, 1, 0))),
    ]
}

#[test]
fn what_is_left_broken_is_matched_to_its_finding_after_devices_shift() {
    // A PHB is added before it, so the unknown hostdev is at another position in the output:
    // its finding must still be known as the one the planner gave up on.
    let h = host(&[("0002:02:00.0", 3, None)]);
    let mut devices = bridge_keeping_an_emulated_device_and_a_hostdev();
    devices.push(hostdev("0009:01:00.0", Some((0, 4, 0))));
    let xml = domain("", &devices);
    let out = run(&xml, &h);
    assert!(!out.clean);
    assert!(out.changes.iter().any(|c| c.starts_with("added PHB index 2")));
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert!(
        out.problems[0].starts_with("hostdev 0009:01:00.0 at 0000:00:04.0: has to move"),
        "{}",
        out.problems[0]
    );
}

#[test]
fn nested_bridges_emptied_by_the_move_are_removed() {
    let h = host(&[("0002:02:00.0", 3, None)]);
    let xml = domain(
        "",
        &[
            bridge(1, (0, 3)),
            bridge(2, (1, 1)),
            hostdev("0002:02:00.0", Some((2, 1, 0))),
        ],
    );
    let out = run(&xml, &h);
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes,
        [
            "removed controller pci index 2 (pci-bridge), nothing is behind it now",
            "removed controller pci index 1 (pci-bridge), nothing is behind it now",
            "added PHB index 1 target 1",
            "hostdev 0002:02:00.0: 0000:02:01.0 -> 0000:01:01.0",
        ]
    );
    assert!(!out.output.contains("pci-bridge"), "{}", out.output);
}

#[test]
fn a_bridge_that_keeps_emulated_devices_stays() {
    let h = host(&[("0002:02:00.0", 3, None)]);
    let xml = domain("", &bridge_keeping_an_emulated_device_and_a_hostdev());
    assert_eq!(
        clean_changes(&xml, &h),
        [
            "added PHB index 2 target 1",
            "hostdev 0002:02:00.0: 0000:01:01.0 -> 0000:02:01.0"
        ]
    );
}

#[test]
fn emulated_devices_overflow_from_a_full_default_phb_to_a_new_one() {
    let h = host(&[("0001:01:00.0", 5, None)]);
    let mut devices: Vec<String> = (1..=31).map(|slot| emulated(0, slot)).collect();
    devices.push(phb(1, 1));
    devices.push(hostdev("0001:01:00.0", Some((1, 1, 0))));
    devices.push(emulated(1, 2));
    let out = run(&domain("", &devices), &h);
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes,
        ["added PHB index 2 target 2", "rng: 0000:01:02.0 -> 0000:02:01.0"]
    );
}

#[test]
fn no_thirty_second_phb_is_added() {
    let mut devices = Vec::new();
    let mut facts = Vec::new();
    let names: Vec<String> = (1..=31).map(|g| format!("00{g:02x}:01:00.0")).collect();
    for (g, name) in names.iter().enumerate() {
        let g = g as u32 + 1;
        facts.push((name.as_str(), g, None));
        if g <= 30 {
            devices.push(phb(g, g));
            devices.push(hostdev(name, Some((g as u8, 1, 0))));
        } else {
            devices.push(hostdev(name, Some((0, 1, 0))));
        }
    }
    let out = run(&domain("", &devices), &host(&facts));
    assert!(!out.clean);
    assert!(
        out.problems.iter().any(|p| p.contains("hostdev 001f:01:00.0")
            && p.contains("the guest needs 32 PHBs")
            && p.contains("QEMU allows at most 31 (SPAPR_MAX_PHBS, index 0 included)")),
        "{:?}",
        out.problems
    );
}

#[test]
fn an_added_phb_takes_the_guest_cell_backed_by_the_devices_host_node() {
    let numatune = "  <numatune>\n    <memnode cellid='0' mode='strict' nodeset='0'/>\n    <memnode cellid='1' mode='strict' nodeset='8'/>\n  </numatune>\n";
    let h = host(&[("0030:01:00.0", 12, Some(8))]);
    let out = run(&domain(numatune, &[hostdev("0030:01:00.0", Some((0, 2, 0)))]), &h);
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(out.changes[0], "added PHB index 1 target 1 node 1");
    assert!(
        out.output
            .contains("      <target index='1'>\n        <node>1</node>\n      </target>\n"),
        "{}",
        out.output
    );
}

#[test]
fn an_empty_phb_is_used_before_one_is_added() {
    let h = host(&[("0001:01:00.0", 5, None)]);
    let out = run(
        &domain("", &[phb(1, 1), hostdev("0001:01:00.0", Some((0, 5, 0)))]),
        &h,
    );
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes,
        ["hostdev 0001:01:00.0: 0000:00:05.0 -> 0000:01:01.0"]
    );
}

#[test]
fn assigning_addresses_follows_libvirts_device_order() {
    // libvirt's pseries-hostdevs-1: the <interface type='hostdev'> gets PHB 1 although a
    // <hostdev> comes first in the XML.
    let h = host(&[
        ("0001:01:00.0", 5, None),
        ("0001:01:00.1", 5, None),
        ("0005:90:01.0", 7, None),
    ]);
    let iface = "<interface type='hostdev' managed='yes'><source><address type='pci' domain='0x0005' bus='0x90' \
                 slot='0x01' function='0x0'/></source><mac address='52:54:00:6d:90:02'/></interface>";
    let xml = domain(
        "",
        &[
            hostdev("0001:01:00.0", None),
            iface.to_string(),
            hostdev("0001:01:00.1", None),
        ],
    );
    assert!(
        run(&xml, &h).changes.is_empty(),
        "unaddressed devices are libvirt's to place"
    );
    let out = run_with(
        &xml,
        &h,
        Options {
            assign_unaddressed: true,
            ..Options::default()
        },
    );
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes,
        [
            "added PHB index 1 target 1",
            "added PHB index 2 target 2",
            "interface hostdev 0005:90:01.0: placed at 0000:01:01.0",
            "hostdev 0001:01:00.0: placed at 0000:02:01.0",
            "hostdev 0001:01:00.1: placed at 0000:02:02.0",
        ]
    );
}

#[test]
fn new_text_follows_the_documents_quotes_and_indentation() {
    let h = host(&[("0001:01:00.0", 5, None)]);
    let xml = "<domain type=\"kvm\">\n\t<os><type arch=\"ppc64le\" machine=\"pseries\">hvm</type></os>\n\t<devices>\n\
               \t\t<controller type=\"pci\" index=\"0\" model=\"pci-root\"/>\n\
               \t\t<hostdev mode=\"subsystem\" type=\"pci\"><source><address domain=\"0x0001\" bus=\"0x01\" \
               slot=\"0x00\" function=\"0x0\"/></source><address type=\"pci\" bus=\"0\" slot=\"5\"/></hostdev>\n\
               \t</devices>\n</domain>\n";
    let out = run(xml, &h);
    assert!(out.clean, "{:?}", out.problems);
    assert!(
        out.output.contains(
            "\t\t<controller type=\"pci\" index=\"0\" model=\"pci-root\"/>\n\
             \t\t<controller type=\"pci\" index=\"1\" model=\"pci-root\">\n\
             \t\t\t<model name=\"spapr-pci-host-bridge\"/>\n\
             \t\t\t<target index=\"1\"/>\n\
             \t\t</controller>\n\t\t<hostdev"
        ),
        "{}",
        out.output
    );
    // Only the values that change are rewritten; the missing function is added.
    assert!(
        out.output.contains(
            "<address type=\"pci\" bus=\"0x01\" slot=\"0x01\" domain=\"0x0000\" function=\"0x0\"/>"
        ),
        "{}",
        out.output
    );
}

#[test]
fn nine_hostdevs_on_one_address_of_the_default_phb_take_nine_slots_of_their_phb() {
    // Before: the nine were one unit without a function 0, numbered 0..=8, and 1 << 8
    // overflowed (a panic in debug builds, an "internal error" in release).
    let hosts: Vec<String> = (0..9).map(|i| format!("0001:{:02x}:00.0", 0x10 + i)).collect();
    let h = hosts
        .iter()
        .fold(StaticHost::new(), |h, a| h.with_device(addr(a), 5, None));
    let devices: Vec<String> = hosts.iter().map(|a| hostdev(a, Some((0, 5, 1)))).collect();
    let out = run(&domain("", &devices), &h);
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(out.changes[0], "added PHB index 1 target 1");
    let targets: Vec<&str> = out.changes[1..]
        .iter()
        .map(|c| c.rsplit(" -> ").next().unwrap())
        .collect();
    let expected: Vec<String> = (1..=9).map(|s| format!("0000:01:{s:02x}.0")).collect();
    assert_eq!(targets, expected);
}

#[test]
fn a_duplicate_on_a_full_default_phb_goes_where_emulated_devices_go() {
    let mut devices: Vec<String> = (1..=0x1f).map(|s| emulated(0, s)).collect();
    devices.push(emulated(0, 5));
    let out = run(&domain("", &devices), &StaticHost::new());
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes,
        ["added PHB index 1 target 1", "rng: 0000:00:05.0 -> 0000:01:01.0"]
    );
}

#[test]
fn a_hostdev_repeating_an_address_on_its_groups_full_phb_is_for_a_person_to_resolve() {
    // Group 5's PHB holds 31 of its functions (slots 1..=31), and one more repeats slot 1.
    let hosts: Vec<String> = (0..32).map(|i| format!("0001:{:02x}:00.0", 0x10 + i)).collect();
    let h = hosts
        .iter()
        .fold(StaticHost::new(), |h, a| h.with_device(addr(a), 5, None));
    let mut devices = vec![phb(1, 1)];
    devices.extend(
        hosts
            .iter()
            .take(31)
            .enumerate()
            .map(|(i, a)| hostdev(a, Some((1, i as u8 + 1, 0)))),
    );
    devices.push(hostdev(&hosts[31], Some((1, 1, 0))));
    let out = run(&domain("", &devices), &h);
    assert!(!out.clean);
    assert_eq!(
        out.problems,
        [
            "hostdev 0001:2f:00.0 at 0000:01:01.0: repeats an earlier device's address and bus 1, where \
          its IOMMU group is, has no free slot left; free a slot on it by hand"
        ]
    );
}

#[test]
fn a_wrong_phb_model_name_is_set_to_the_only_right_one() {
    let xml = domain(
        "",
        &["<controller type='pci' index='1' model='pci-root'><model name='pci-bridge'/><target index='1'/></controller>".into()],
    );
    let out = run(&xml, &StaticHost::new());
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes,
        ["controller pci index 1: model name 'pci-bridge' -> 'spapr-pci-host-bridge'"]
    );
    assert!(
        out.output
            .contains("<model name='spapr-pci-host-bridge'/><target index='1'/>"),
        "{}",
        out.output
    );
}

#[test]
fn an_empty_address_is_filled_in_not_joined_by_a_second_one() {
    let h = host(&[("0001:01:00.0", 5, None)]);
    let xml = domain(
        "",
        &[
            "<hostdev mode='subsystem' type='pci'><source><address domain='0x0001' bus='0x01' slot='0x00' \
           function='0x0'/></source><address type='pci'/></hostdev>"
                .into(),
        ],
    );
    let out = run_with(
        &xml,
        &h,
        Options {
            assign_unaddressed: true,
            ..Options::default()
        },
    );
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.output.matches("<address type='pci'").count(),
        1,
        "{}",
        out.output
    );
    assert!(
        out.output
            .contains("<address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/>")
    );
}

#[test]
fn new_lines_follow_a_crlf_document() {
    let h = host(&[("0001:01:00.0", 5, None)]);
    let xml = domain("", &[hostdev("0001:01:00.0", Some((0, 5, 0)))]).replace('\n', "\r\n");
    let out = run(&xml, &h);
    assert!(out.clean, "{:?}", out.problems);
    assert!(
        out.output
            .contains("<controller type='pci' index='1' model='pci-root'>\r\n")
    );
    assert_eq!(
        out.output.matches('\n').count(),
        out.output.matches("\r\n").count()
    );
}

/// Host facts that count how often each is asked for.
struct CountingHost {
    inner: StaticHost,
    asked: std::cell::RefCell<Vec<PciAddr>>,
}

impl HostFacts for CountingHost {
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, crate::host::GroupUnknown> {
        self.asked.borrow_mut().push(addr);
        self.inner.iommu_group(addr)
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        self.asked.borrow_mut().push(addr);
        self.inner.numa_node(addr)
    }
}

#[test]
fn the_host_is_read_once_for_the_plan_and_the_recheck() {
    let facts = [("0002:02:00.0", 3, Some(0)), ("0003:01:00.0", 4, Some(0))];
    let host = CountingHost {
        inner: host(&facts),
        asked: Default::default(),
    };
    let numatune = "  <numatune>\n    <memnode cellid='0' nodeset='0'/>\n  </numatune>\n";
    let xml = domain(
        numatune,
        &[
            hostdev("0002:02:00.0", Some((0, 4, 0))),
            hostdev("0003:01:00.0", Some((0, 5, 0))),
        ],
    );
    let parsed = crate::parse_domain(xml.as_bytes()).unwrap();
    let fixed = fix(&xml, &parsed, &host, Options::default()).unwrap();
    assert!(fixed.is_clean(), "{:?}", fixed.problems());
    assert_eq!(fixed.plan.changes.len(), 4, "{:?}", fixed.plan.changes);
    // One group and one node per host device, though the planner and the re-check both use them.
    let mut asked = host.asked.into_inner();
    asked.sort();
    let once: Vec<PciAddr> = facts.iter().flat_map(|&(a, ..)| [addr(a), addr(a)]).collect();
    assert_eq!(asked, once);
}

/// An `<interface type='network'>` on network `net` (a hostdev pool when the host says so).
fn pool_interface(net: &str, mac: u8, at: (u8, u8, u8)) -> String {
    format!(
        "<interface type='network'><mac address='52:54:00:00:00:{mac:02x}'/><source network='{net}'/>{}</interface>",
        guest_address(at.0, at.1, at.2)
    )
}

#[test]
fn a_pool_interface_sharing_a_phb_gets_one_of_its_own() {
    let h = host(&[("0001:01:00.0", 5, None)]).with_hostdev_network("vfpool");
    // On the default PHB with an emulated device, and on a hostdev's PHB: both move, each to a
    // PHB to itself; the hostdev and the emulated device stay.
    let xml = domain(
        "",
        &[
            phb(1, 1),
            emulated(0, 1),
            pool_interface("vfpool", 1, (0, 2, 0)),
            hostdev("0001:01:00.0", Some((1, 1, 0))),
            pool_interface("vfpool", 2, (1, 2, 0)),
        ],
    );
    assert_eq!(
        clean_changes(&xml, &h),
        [
            "added PHB index 2 target 2",
            "added PHB index 3 target 3",
            "interface 52:54:00:00:00:01: 0000:00:02.0 -> 0000:02:01.0",
            "interface 52:54:00:00:00:02: 0000:01:02.0 -> 0000:03:01.0",
        ]
    );
}

#[test]
fn a_pool_interface_alone_on_its_phb_stays_and_a_second_one_there_moves() {
    let h = StaticHost::new().with_hostdev_network("vfpool");
    let alone = domain("", &[phb(1, 1), pool_interface("vfpool", 1, (1, 1, 0))]);
    assert!(clean_changes(&alone, &h).is_empty());
    // Two on one PHB, functions of one slot: the first keeps it, the second takes an empty PHB
    // the guest already has before a new one is added.
    let two = domain(
        "",
        &[
            phb(1, 1),
            phb(2, 2),
            pool_interface("vfpool", 1, (1, 1, 0)),
            pool_interface("vfpool", 2, (1, 1, 1)),
        ],
    );
    assert_eq!(
        clean_changes(&two, &h),
        ["interface 52:54:00:00:00:02: 0000:01:01.1 -> 0000:02:01.0"]
    );
    // Without the host saying the network is a pool, it is an emulated interface: nothing moves.
    let unknown = domain("", &[phb(1, 1), pool_interface("vfpool", 1, (0, 3, 0))]);
    assert!(clean_changes(&unknown, &StaticHost::new()).is_empty());
}

#[test]
fn a_device_repeating_the_address_of_one_that_moves_away_keeps_it() {
    // The rng repeats the pool interface's address; the interface leaves for a PHB of its own,
    // so the rng keeps the address, and bus 1, which it still holds, is not that PHB.
    let h = StaticHost::new().with_hostdev_network("vfpool");
    let xml = domain(
        "",
        &[phb(1, 1), pool_interface("vfpool", 1, (1, 1, 0)), emulated(1, 1)],
    );
    assert_eq!(
        clean_changes(&xml, &h),
        [
            "added PHB index 2 target 2",
            "interface 52:54:00:00:00:01: 0000:01:01.0 -> 0000:02:01.0",
        ]
    );
}

/// `fix --raise-hard-limit`.
fn raising() -> Options {
    Options {
        raise_hard_limit: true,
        ..Options::default()
    }
}

/// 4 GiB and the hard limit one PHB needs (4255744 KiB), with `devices`.
fn limited(devices: &[String]) -> String {
    domain(
        "  <memory unit='GiB'>4</memory>\n  <memtune>\n    <hard_limit unit='KiB'>4256000</hard_limit>\n  </memtune>\n",
        devices,
    )
}

#[test]
fn a_new_phb_past_the_hard_limit_is_refused_unless_raising_it_is_asked() {
    let h = host(&[("0002:02:00.0", 8, None)]);
    let xml = limited(&[hostdev("0002:02:00.0", Some((0, 5, 0)))]);
    let out = run(&xml, &h);
    assert!(!out.clean);
    assert!(
        out.problems
            .iter()
            .any(|p| p.starts_with("memtune hard_limit: the PHB this fix adds")
                && p.contains("from 4255744 KiB (4.06 GiB) to 4268032 KiB (4.07 GiB)")
                && p.contains("above this <hard_limit> of 4256000 KiB")),
        "{:?}",
        out.problems
    );
    let raise = raising();
    let out = run_with(&xml, &h, raise);
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes.last().unwrap(),
        "memtune hard_limit: 4256000 KiB -> 4268032 KiB, what libvirt 9.0 computes QEMU must lock"
    );
    assert!(
        out.output.contains("<hard_limit unit='KiB'>4268032</hard_limit>"),
        "{}",
        out.output
    );
    // Enough already: nothing is raised.
    let roomy = xml.replace("4256000", "5000000");
    let out = run_with(&roomy, &h, raise);
    assert!(
        out.clean && !out.output.contains("<hard_limit unit='KiB'>4"),
        "{}",
        out.output
    );
}

#[test]
fn a_limit_below_the_memory_stays_an_error_until_raising_it_is_asked() {
    let h = host(&[("0002:02:00.0", 8, None)]);
    let xml = limited(&[phb(1, 1), hostdev("0002:02:00.0", Some((1, 1, 0)))]).replace("4256000", "1048576");
    let out = run(&xml, &h);
    assert!(!out.clean);
    assert!(
        out.problems[0].contains("(memlock-limit-too-low)"),
        "{:?}",
        out.problems
    );
    let raise = raising();
    let out = run_with(&xml, &h, raise);
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(out.changes.len(), 1);
}

#[test]
fn the_hosts_drivers_are_noted_never_left_as_unfixed() {
    let a = addr("0006:01:00.0");
    let b = addr("0006:01:00.1");
    let h = StaticHost::new()
        .with_device(a, 20, None)
        .with_device(b, 20, None)
        .with_driver(b, "mlx5_core");
    let xml = domain("", &[hostdev("0006:01:00.0", Some((0, 5, 0)))]);
    let parsed = crate::parse_domain(xml.as_bytes()).unwrap();
    let fixed = fix(&xml, &parsed, &h, Options::default()).unwrap();
    assert!(fixed.is_clean(), "{:?}", fixed.problems());
    assert!(!fixed.plan.is_empty());
    let notes = fixed.host_notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].text.contains("0006:01:00.1 is bound to mlx5_core"),
        "{notes:?}"
    );
    // The line of a rewritten document is not the input's: none is given.
    assert_eq!(notes[0].line, None);
}

fn spares(n: u8) -> Options {
    Options {
        spare_phbs: n,
        ..Options::default()
    }
}

#[test]
fn spares_are_added_after_the_fix_with_the_lowest_free_indexes_and_targets() {
    let h = host(&[("0001:01:00.0", 5, None)]);
    let xml = domain("", &[phb(2, 7), hostdev("0001:01:00.0", Some((0, 5, 0)))]);
    let out = run_with(&xml, &h, spares(2));
    assert!(out.clean, "{:?}", out.problems);
    // The empty PHB 2 takes the hostdev; two new ones are left empty.
    assert_eq!(
        out.changes,
        [
            "added spare PHB index 1 target 1",
            "added spare PHB index 3 target 2",
            "hostdev 0001:01:00.0: 0000:00:05.0 -> 0000:02:01.0"
        ]
    );
    let again = run_with(&out.output, &h, spares(2));
    assert!(again.clean && again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.output, out.output);
}

#[test]
fn spares_already_there_count_and_a_compliant_guest_with_enough_is_unchanged() {
    let h = host(&[("0001:01:00.0", 5, None)]);
    let xml = domain(
        "",
        &[
            phb(1, 1),
            phb(2, 2),
            phb(3, 3),
            hostdev("0001:01:00.0", Some((1, 1, 0))),
        ],
    );
    for n in [0, 1, 2] {
        let out = run_with(&xml, &h, spares(n));
        assert!(out.clean && out.changes.is_empty(), "{n}: {:?}", out.changes);
        assert_eq!(out.output, xml);
    }
    assert_eq!(
        run_with(&xml, &h, spares(4)).changes,
        [
            "added spare PHB index 4 target 4",
            "added spare PHB index 5 target 5"
        ]
    );
}

#[test]
fn spares_are_spread_over_the_guest_numa_cells_fewest_first() {
    let cpu = "  <cpu>\n    <numa>\n      <cell id='0' cpus='0' memory='1048576'/>\n      \
               <cell id='1' cpus='1' memory='1048576'/>\n      <cell id='2' cpus='2' memory='1048576'/>\n    \
               </numa>\n  </cpu>\n";
    let on_cell_0 = "<controller type='pci' index='1' model='pci-root'><target index='1'><node>0</node></target></controller>";
    let out = run_with(&domain(cpu, &[on_cell_0.to_string()]), &host(&[]), spares(4));
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes,
        [
            "added spare PHB index 2 target 2 node 1",
            "added spare PHB index 3 target 3 node 2",
            "added spare PHB index 4 target 4 node 0"
        ]
    );
    assert!(
        out.output
            .contains("<target index='3'>\n        <node>2</node>\n      </target>"),
        "{}",
        out.output
    );
    // One cell: a node would say nothing.
    let one = "  <cpu>\n    <numa>\n      <cell id='0' cpus='0' memory='1048576'/>\n    </numa>\n  </cpu>\n";
    assert_eq!(
        run_with(&domain(one, &[]), &host(&[]), spares(1)).changes,
        ["added spare PHB index 1 target 1"]
    );
}

#[test]
fn a_hostdev_without_an_address_will_take_a_spare_at_define_so_one_more_is_kept() {
    let h = host(&[("0001:01:00.0", 5, None), ("0002:01:00.0", 6, None)]);
    let xml = domain(
        "",
        &[
            phb(1, 1),
            hostdev("0001:01:00.0", Some((1, 1, 0))),
            hostdev("0002:01:00.0", None),
        ],
    );
    // libvirt gives the unaddressed hostdev the first empty PHB when it defines the guest.
    assert_eq!(
        run_with(&xml, &h, spares(1)).changes,
        [
            "added spare PHB index 2 target 2",
            "added spare PHB index 3 target 3"
        ]
    );
    // Pinned by --assign-addresses, it takes a new PHB and one spare is left.
    let assigned = Options {
        assign_unaddressed: true,
        ..spares(1)
    };
    assert_eq!(
        run_with(&xml, &h, assigned).changes,
        [
            "added PHB index 2 target 2",
            "added spare PHB index 3 target 3",
            "hostdev 0002:01:00.0: placed at 0000:02:01.0"
        ]
    );
}

#[test]
fn spares_stop_at_qemus_31_phbs_and_say_how_many_were_kept() {
    let h = host(&[("0001:01:00.0", 5, None)]);
    let mut devices: Vec<String> = (1..=28).map(|i| phb(i, i)).collect();
    devices.push(hostdev("0001:01:00.0", Some((1, 1, 0))));
    let xml = domain("", &devices);
    let parsed = crate::parse_domain(xml.as_bytes()).unwrap();
    let fixed = fix(&xml, &parsed, &h, spares(30)).unwrap();
    // Rules kept: the fix is clean, with fewer spares than asked for, and says so.
    assert!(fixed.is_clean());
    let added: Vec<String> = fixed.plan.changes.iter().map(|c| c.describe(&parsed)).collect();
    assert_eq!(
        added,
        [
            "added spare PHB index 29 target 29",
            "added spare PHB index 30 target 30"
        ]
    );
    assert_eq!(
        fixed.plan.spares.shortfall().as_deref(),
        Some(
            "29 spare PHBs kept, not the 30 asked for: the guest already has 31, the most QEMU allows is 31"
        )
    );
    assert_eq!(
        fix(&xml, &parsed, &h, spares(29))
            .unwrap()
            .plan
            .spares
            .shortfall(),
        None
    );
}

#[test]
fn spares_go_into_a_devices_element_with_nothing_in_it() {
    let empty = "<domain type='kvm'>\n  <name>t</name>\n  <os>\n    <type arch='ppc64le' machine='pseries'>hvm</type>\n  </os>\n  <devices>\n  </devices>\n</domain>\n";
    let out = run_with(empty, &host(&[]), spares(2));
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.output,
        empty.replace(
            "  <devices>\n",
            "  <devices>\n    <controller type='pci' index='1' model='pci-root'>\n      \
             <model name='spapr-pci-host-bridge'/>\n      <target index='1'/>\n    </controller>\n    \
             <controller type='pci' index='2' model='pci-root'>\n      <model name='spapr-pci-host-bridge'/>\n      \
             <target index='2'/>\n    </controller>\n"
        )
    );
    let one_line = empty.replace("<devices>\n  </devices>", "<devices></devices>");
    let out = run_with(&one_line, &host(&[]), spares(1));
    assert!(
        out.output.contains("<devices><controller type='pci' index='1'"),
        "{}",
        out.output
    );
    assert_eq!(
        run_with(&out.output, &host(&[]), spares(1)).changes,
        Vec::<String>::new()
    );
    // Nowhere to write them: said, and nothing else changes.
    for xml in [
        empty.replace("<devices>\n  </devices>", "<devices/>"),
        empty.replace("  <devices>\n  </devices>\n", ""),
    ] {
        let parsed = crate::parse_domain(xml.as_bytes()).unwrap();
        let fixed = fix(&xml, &parsed, &host(&[]), spares(1)).unwrap();
        assert_eq!(fixed.output, xml);
        assert_eq!(
            fixed.plan.spares.shortfall().as_deref(),
            Some(
                "0 spare PHBs kept, not the 1 asked for: the definition has no <devices> element to add them to"
            )
        );
    }
}

#[test]
fn spares_stay_under_a_hard_limit_unless_raising_it_is_asked() {
    let h = host(&[("0002:02:00.0", 8, None)]);
    // Compliant, and the limit is what its two PHBs need (4268032 KiB).
    let xml = limited(&[phb(1, 1), hostdev("0002:02:00.0", Some((1, 1, 0)))]).replace("4256000", "4268032");
    let parsed = crate::parse_domain(xml.as_bytes()).unwrap();
    let fixed = fix(&xml, &parsed, &h, spares(2)).unwrap();
    assert!(fixed.is_clean(), "{:?}", fixed.problems());
    assert_eq!(fixed.output, xml);
    assert_eq!(
        fixed.plan.spares.shortfall().as_deref(),
        Some(
            "0 spare PHBs kept, not the 2 asked for: each more would raise what libvirt 9.0 computes \
             QEMU must lock past this <hard_limit> of 4268032 KiB (4.07 GiB); 'phbguard fix \
             --raise-hard-limit' raises it with them"
        )
    );
    // Room for one.
    // Room for one: with a hostdev each PHB costs 2 GiB more here (QEMU's pre-DDW DMA windows).
    let roomy = xml.replace("4268032", "6400000");
    let out = run_with(&roomy, &h, spares(2));
    assert_eq!(out.changes, ["added spare PHB index 2 target 2"]);
    // Raised: both, and the limit with them.
    let out = run_with(
        &xml,
        &h,
        Options {
            raise_hard_limit: true,
            ..spares(2)
        },
    );
    assert!(out.clean, "{:?}", out.problems);
    assert_eq!(
        out.changes,
        [
            "added spare PHB index 2 target 2",
            "added spare PHB index 3 target 3",
            "memtune hard_limit: 4268032 KiB -> 8445952 KiB, what libvirt 9.0 computes QEMU must lock"
        ]
    );
}
