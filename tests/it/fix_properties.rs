//! Properties of `fix` over generated pSeries domains: random PHBs (with good, bad and
//! duplicate target indexes, some with a wrong model name), pci-bridges, hostdevs of random
//! IOMMU groups and NUMA nodes and emulated devices at random places, some without an address
//! (none written, or an empty `<address type='pci'/>`), some repeating the previous device's
//! address, a bus filled to its last slot, `<numatune>` memnodes, in random formatting. For every such domain:
//! the output checks clean, fixing it again changes nothing, the devices are the same but for
//! their addresses, lines outside the edits survive in order, and compliant input is untouched.

use proptest::prelude::*;

use phbguard_core::fix::{Change, Fixed, Options, fix};
use phbguard_core::host::StaticHost;
use phbguard_core::model::{Device, DeviceKind, Domain, PciAddr, Span};
use phbguard_core::parse_domain;
use phbguard_core::rules::{Severity, judge};

#[derive(Debug, Clone)]
struct Hostdev {
    /// `None`: the host has no such device, so its group is unknown.
    group: Option<u32>,
    bus: usize,
    interface: bool,
    addressed: bool,
    /// Share the slot of the previous device on the same bus, as its next function.
    next_function: bool,
    /// Take the very address of the previous addressed device (`pci-address-duplicate`).
    duplicate: bool,
}

#[derive(Debug, Clone)]
struct Emulated {
    kind: usize,
    bus: usize,
    addressed: bool,
    next_function: bool,
    duplicate: bool,
}

#[derive(Debug, Clone)]
struct Spec {
    /// Per extra PHB (indexes 1..): its target index, if written.
    targets: Vec<Option<u32>>,
    /// Per pci-bridge: the bus it sits on (an index into the bus list).
    bridges: Vec<usize>,
    hostdevs: Vec<Hostdev>,
    emulated: Vec<Emulated>,
    /// Per extra PHB: whether its `<model name>` is a wrong one (`phb-wrong-model`).
    wrong_models: Vec<bool>,
    /// Disks that fill this bus (an index into the bus list) up to its last slot, 0x1f: the
    /// default PHB or a PHB full, so that what moves there finds no slot.
    fill: Option<usize>,
    /// `<numatune>` with memnodes for guest cells 0 and 1 on host nodes 0 and 1.
    numatune: bool,
    /// An address without domain, bus and slot, rather than none, for unaddressed devices.
    empty_address: bool,
    double_quotes: bool,
    indent: &'static str,
    comments: bool,
}

fn hostdev() -> impl Strategy<Value = Hostdev> {
    (
        prop::option::weighted(0.9, 0..5u32),
        0..16usize,
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.08),
    )
        .prop_map(
            |(group, bus, interface, addressed, next_function, duplicate)| Hostdev {
                group,
                bus,
                interface,
                addressed,
                next_function,
                duplicate,
            },
        )
}

fn emulated() -> impl Strategy<Value = Emulated> {
    (
        0..5usize,
        0..16usize,
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.08),
    )
        .prop_map(|(kind, bus, addressed, next_function, duplicate)| Emulated {
            kind,
            bus,
            addressed,
            next_function,
            duplicate,
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(
            prop::option::weighted(0.9, prop_oneof![3 => Just(u32::MAX), 1 => 0..34u32]),
            0..6,
        ),
        prop::collection::vec(0..4usize, 0..3),
        prop::collection::vec(hostdev(), 0..10),
        prop::collection::vec(emulated(), 0..8),
        (
            prop::collection::vec(prop::bool::weighted(0.1), 0..6),
            prop::option::weighted(0.1, 0..3usize),
            any::<bool>(),
            any::<bool>(),
        ),
        any::<bool>(),
        prop_oneof![Just("  "), Just("    "), Just("\t"), Just(" ")],
        any::<bool>(),
    )
        .prop_map(
            |(
                targets,
                bridges,
                hostdevs,
                emulated,
                (wrong_models, fill, numatune, empty_address),
                double_quotes,
                indent,
                comments,
            )| Spec {
                // u32::MAX stands for "its own index", the usual, valid choice.
                targets,
                bridges,
                hostdevs,
                emulated,
                wrong_models,
                fill,
                numatune,
                empty_address,
                double_quotes,
                indent,
                comments,
            },
        )
}

fn host_addr(i: usize) -> PciAddr {
    PciAddr {
        domain: 0x100 + i as u32,
        bus: 1,
        slot: 0,
        function: 0,
    }
}

/// The domain XML a spec describes, and the host it runs on.
fn render(spec: &Spec) -> (String, StaticHost) {
    let q = if spec.double_quotes { '"' } else { '\'' };
    let i1 = spec.indent;
    let i2 = i1.repeat(2);
    let i3 = i1.repeat(3);
    let i4 = i1.repeat(4);
    let phbs = spec.targets.len();
    // Bus numbers: 0, the PHBs 1..=phbs, then the bridges.
    let buses: Vec<u8> = (0..=phbs + spec.bridges.len()).map(|b| b as u8).collect();
    let mut next_slot = vec![1u8; buses.len()];
    let mut last: Vec<Option<(u8, u8)>> = vec![None; buses.len()];
    let mut last_any: Option<(u8, u8, u8)> = None;
    // None once the bus has no slot left: the device goes without an address.
    let mut place = |bus: usize, next_function: bool, duplicate: bool| -> Option<(u8, u8, u8)> {
        if duplicate && last_any.is_some() {
            return last_any;
        }
        let bus = bus % buses.len();
        if next_function
            && let Some((slot, f)) = last[bus]
            && f < 7
        {
            last[bus] = Some((slot, f + 1));
            last_any = Some((buses[bus], slot, f + 1));
            return last_any;
        }
        let slot = next_slot[bus];
        if slot > 0x1f {
            return None;
        }
        next_slot[bus] += 1;
        last[bus] = Some((slot, 0));
        last_any = Some((buses[bus], slot, 0));
        last_any
    };
    let empty = format!("<address type={q}pci{q}/>");
    let address = |(bus, slot, function): (u8, u8, u8)| {
        format!(
            "<address type={q}pci{q} domain={q}0x0000{q} bus={q}{bus:#04x}{q} slot={q}{slot:#04x}{q} \
             function={q}{function:#x}{q}/>"
        )
    };
    let mut devices = Vec::new();
    devices.push(format!(
        "{i2}<controller type={q}pci{q} index={q}0{q} model={q}pci-root{q}>\n{i3}<model name={q}spapr-pci-host-bridge{q}/>\n\
         {i3}<target index={q}0{q}/>\n{i2}</controller>"
    ));
    for (n, target) in spec.targets.iter().enumerate() {
        let index = n + 1;
        let target = match target {
            Some(u32::MAX) => format!("\n{i3}<target index={q}{index}{q}/>"),
            Some(t) => format!("\n{i3}<target index={q}{t}{q}/>"),
            None => String::new(),
        };
        let model = if spec.wrong_models.get(n) == Some(&true) {
            "pci-bridge"
        } else {
            "spapr-pci-host-bridge"
        };
        devices.push(format!(
            "{i2}<controller type={q}pci{q} index={q}{index}{q} model={q}pci-root{q}>\n\
             {i3}<model name={q}{model}{q}/>{target}\n{i2}</controller>"
        ));
    }
    for (n, &on) in spec.bridges.iter().enumerate() {
        let index = phbs + 1 + n;
        // A bridge sits on a bus with a lower number than its own index (libvirt requires it).
        let at = place(on % index, false, false).expect("a bridge comes before any bus fills");
        devices.push(format!(
            "{i2}<controller type={q}pci{q} index={q}{index}{q} model={q}pci-bridge{q}>\n{i3}{}\n{i2}</controller>",
            address(at)
        ));
    }
    let mut host = StaticHost::new();
    for (n, h) in spec.hostdevs.iter().enumerate() {
        let a = host_addr(n);
        if let Some(g) = h.group {
            // Groups 0, 2, 4 on host node 0; 1, 3 on node 1.
            host = host.with_device(a, g, Some(g % 2));
        }
        let at = h
            .addressed
            .then(|| place(h.bus, h.next_function, h.duplicate))
            .flatten();
        let guest = match at {
            Some(at) => format!("\n{i3}{}", address(at)),
            None if spec.empty_address => format!("\n{i3}{empty}"),
            None => String::new(),
        };
        let source = format!(
            "{i3}<source>\n{i4}<address{} domain={q}{:#06x}{q} bus={q}0x01{q} slot={q}0x00{q} function={q}0x0{q}/>\n{i3}</source>",
            if h.interface {
                format!(" type={q}pci{q}")
            } else {
                String::new()
            },
            a.domain
        );
        devices.push(if h.interface {
            format!("{i2}<interface type={q}hostdev{q} managed={q}yes{q}>\n{source}{guest}\n{i2}</interface>")
        } else {
            format!("{i2}<hostdev mode={q}subsystem{q} type={q}pci{q} managed={q}yes{q}>\n{source}{guest}\n{i2}</hostdev>")
        });
    }
    let mut emulated = spec.emulated.clone();
    if let Some(bus) = spec.fill {
        emulated.extend((0..0x1f).map(|_| Emulated {
            kind: 0,
            bus,
            addressed: true,
            next_function: false,
            duplicate: false,
        }));
    }
    for (n, e) in emulated.iter().enumerate() {
        let at = e
            .addressed
            .then(|| place(e.bus, e.next_function, e.duplicate))
            .flatten();
        let guest = match at {
            Some(at) => format!("\n{i3}{}", address(at)),
            None if spec.empty_address => format!("\n{i3}{empty}"),
            None => String::new(),
        };
        devices.push(match e.kind {
            0 => format!(
                "{i2}<disk type={q}file{q} device={q}disk{q}>\n{i3}<source file={q}/img/d{n}.qcow2{q}/>\n\
                 {i3}<target dev={q}vd{n}{q} bus={q}virtio{q}/>{guest}\n{i2}</disk>"
            ),
            1 => format!(
                "{i2}<interface type={q}network{q}>\n{i3}<mac address={q}52:54:00:00:00:{n:02x}{q}/>\n\
                 {i3}<source network={q}default{q}/>\n{i3}<model type={q}virtio{q}/>{guest}\n{i2}</interface>"
            ),
            2 => format!("{i2}<controller type={q}scsi{q} index={q}{n}{q} model={q}virtio-scsi{q}>{guest}\n{i2}</controller>"),
            3 => format!("{i2}<rng model={q}virtio{q}>\n{i3}<backend model={q}random{q}>/dev/urandom</backend>{guest}\n{i2}</rng>"),
            _ => format!("{i2}<memballoon model={q}virtio{q}>{guest}\n{i2}</memballoon>"),
        });
    }
    let mut body = String::new();
    for (n, d) in devices.iter().enumerate() {
        if spec.comments && n % 3 == 1 {
            body.push_str(&format!(
                "{i2}<!-- device {n}: <address bus='0x00'/> in a comment -->\n"
            ));
        }
        body.push_str(d);
        body.push('\n');
    }
    let numatune = if spec.numatune {
        format!(
            "{i1}<numatune>\n{i2}<memnode cellid={q}0{q} mode={q}strict{q} nodeset={q}0{q}/>\n\
             {i2}<memnode cellid={q}1{q} mode={q}strict{q} nodeset={q}1{q}/>\n{i1}</numatune>\n\
             {i1}<cpu>\n{i2}<numa>\n{i3}<cell id={q}0{q} cpus={q}0{q} memory={q}1048576{q}/>\n\
             {i3}<cell id={q}1{q} cpus={q}1{q} memory={q}1048576{q}/>\n{i2}</numa>\n{i1}</cpu>\n"
        )
    } else {
        String::new()
    };
    let xml = format!(
        "<domain type={q}kvm{q}>\n{i1}<name>prop</name>\n{numatune}{i1}<os>\n{i2}<type arch={q}ppc64le{q} machine={q}pseries{q}>hvm</type>\n\
         {i1}</os>\n{i1}<devices>\n{body}{i1}</devices>\n</domain>\n"
    );
    (xml, host)
}

/// Whether the spec can always be fixed: no unknown group has to leave the default PHB or a
/// bridge. (Everything else fits: at most 6 + 3 + 5 PHBs and 10 slots a bus.)
fn fixable(domain: &Domain, host: &StaticHost) -> bool {
    use phbguard_core::host::HostFacts;
    domain.devices.iter().all(|d| match (d.host_addr(), d.address) {
        (Some(h), Some(a)) if host.iommu_group(h).is_err() => {
            a.bus != 0
                && !domain
                    .pci_controllers()
                    .any(|(_, c)| c.index == u32::from(a.bus) && !c.is_phb())
        }
        _ => true,
    })
}

fn fixed(xml: &str, host: &StaticHost) -> (Domain, Fixed) {
    fixed_with(xml, host, Options::default())
}

fn fixed_with(xml: &str, host: &StaticHost, options: Options) -> (Domain, Fixed) {
    let domain =
        parse_domain(xml.as_bytes()).unwrap_or_else(|e| panic!("generated XML does not parse: {e}\n{xml}"));
    let fixed = fix(xml, &domain, host, options).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    (domain, fixed)
}

fn spares(n: u8) -> Options {
    Options {
        spare_phbs: n,
        ..Options::default()
    }
}

fn errors(domain: &Domain, host: &StaticHost) -> Vec<String> {
    judge(domain, host)
        .into_iter()
        .filter(|f| f.severity() == Severity::Error)
        .map(|f| format!("{} {}", f.rule.id, f.device))
        .collect()
}

/// A device's text with its own `<address>` (and a PHB's `<target>`) cut out: what fix must
/// not change.
fn without_placement(text: &str, device: &Device) -> String {
    let mut cuts: Vec<Span> = device.address_span.into_iter().collect();
    if let DeviceKind::PciController(c) = &device.kind {
        cuts.extend(c.target_span);
        cuts.extend(c.model_span);
    }
    cuts.sort_by_key(|s| s.start);
    let mut out = String::new();
    let mut pos = device.span.start;
    for cut in cuts {
        out.push_str(&text[pos..cut.start]);
        pos = cut.end;
    }
    out.push_str(&text[pos..device.span.end]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn fix_makes_domains_compliant_idempotently_and_touches_only_placement(spec in spec()) {
        let (xml, host) = render(&spec);
        let (domain, result) = fixed(&xml, &host);
        let before = errors(&domain, &host);

        // Compliant input is left byte for byte.
        if before.is_empty() {
            prop_assert!(result.plan.changes.is_empty(), "{:?}\n{xml}", result.plan);
            prop_assert_eq!(&result.output, &xml);
        }

        // The output checks clean whenever the input can be fixed.
        let after = parse_domain(result.output.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{}", result.output));
        if fixable(&domain, &host) {
            prop_assert!(result.is_clean(), "{:?}\n{xml}", result.problems());
            prop_assert_eq!(errors(&after, &host), Vec::<String>::new(), "\n{}\n{}", xml, result.output);
        } else {
            prop_assert!(!result.is_clean());
        }

        // Fixing again changes nothing.
        let (_, again) = fixed(&result.output, &host);
        prop_assert!(again.plan.changes.is_empty(), "{:?}\n{}", again.plan, result.output);
        prop_assert_eq!(&again.output, &result.output);

        // The same devices, but for their placement; added PHBs are PHBs, removed controllers
        // were bridges.
        let removed: Vec<usize> = result.plan.changes.iter().filter_map(|c| match c {
            Change::RemoveController { device, .. } => Some(*device),
            _ => None,
        }).collect();
        let added: Vec<u32> = result.plan.changes.iter().filter_map(|c| match c {
            Change::AddPhb { index, .. } => Some(*index),
            _ => None,
        }).collect();
        for &d in &removed {
            prop_assert_eq!(domain.devices[d].model_attr.as_deref(), Some("pci-bridge"));
        }
        let mut kept: Vec<String> = domain.devices.iter().enumerate()
            .filter(|(i, _)| !removed.contains(i))
            .map(|(_, d)| without_placement(&xml, d))
            .collect();
        let new_phb = |d: &Device| match &d.kind {
            DeviceKind::PciController(c) => c.is_phb() && added.contains(&c.index)
                && !domain.pci_controllers().any(|(i, old)| old.index == c.index && !removed.contains(&i)),
            _ => false,
        };
        let mut out: Vec<String> = after.devices.iter().filter(|d| !new_phb(d))
            .map(|d| without_placement(&result.output, d))
            .collect();
        for d in after.devices.iter().filter(|d| new_phb(d)) {
            let DeviceKind::PciController(c) = &d.kind else { unreachable!() };
            prop_assert_eq!(c.model_name.as_deref(), Some("spapr-pci-host-bridge"));
        }
        prop_assert_eq!(after.devices.len() - out.len(), added.len());
        kept.sort();
        out.sort();
        prop_assert_eq!(kept, out);

        // Every line outside the edits is still there, in order.
        let mut output_lines = result.output.lines();
        for (i, line) in xml.lines().enumerate() {
            let in_removed = removed.iter().any(|&d| {
                let s = domain.devices[d].span;
                let (first, last) = (xml[..s.start].lines().count(), xml[..s.end].lines().count());
                i + 1 >= first && i < last
            });
            if in_removed
                || line.contains("<address type=")
                || line.contains("<target index=")
                || line.contains("<model name=")
            {
                continue;
            }
            prop_assert!(output_lines.any(|l| l == line), "line {} lost: {line:?}\n{}", i + 1, result.output);
        }
    }

    #[test]
    fn an_unknown_group_on_the_default_phb_is_reported_not_guessed(spec in spec()) {
        let (xml, host) = render(&spec);
        // One more hostdev, on a slot the generator never reaches, whose host device is missing.
        let lost = "<hostdev mode='subsystem' type='pci'><source><address domain='0x0fff' bus='0x01' \
                    slot='0x00' function='0x0'/></source><address type='pci' domain='0x0000' bus='0x00' \
                    slot='0x1f' function='0x0'/></hostdev>\n";
        let at = xml.rfind("</devices>").unwrap();
        let xml = format!("{}{lost}{}", &xml[..at], &xml[at..]);
        let (_, result) = fixed(&xml, &host);
        prop_assert!(!result.is_clean());
        prop_assert!(
            result.problems().iter().any(|p| p.text.starts_with("hostdev 0fff:01:00.0 at 0000:00:1f.0: has to move")),
            "{:?}", result.problems()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// `--spare-phbs N`: the same fix plus empty PHBs, idempotent, and a guest that keeps the
    /// rules with N spares already comes out byte for byte.
    #[test]
    fn spare_phbs_are_added_on_top_of_the_fix_and_only_once(spec in spec(), n in 0..5u8) {
        let (xml, host) = render(&spec);
        let (_, plain) = fixed(&xml, &host);
        let (domain, result) = fixed_with(&xml, &host, spares(n));

        // The devices move as without spares; only empty PHBs are added on top.
        let (added, rest): (Vec<&Change>, Vec<&Change>) = result.plan.changes.iter()
            .partition(|c| matches!(c, Change::AddSparePhb { .. }));
        prop_assert_eq!(rest, plain.plan.changes.iter().collect::<Vec<_>>());
        prop_assert_eq!(result.is_clean(), plain.is_clean());
        prop_assert_eq!(&result.problems(), &plain.problems());

        // As many as asked for, unless QEMU's 31 PHBs are reached, which is said.
        let after = parse_domain(result.output.as_bytes()).unwrap();
        let kept = &result.plan.spares;
        prop_assert_eq!(kept.wanted, usize::from(n));
        let phbs = after.pci_controllers().filter(|(_, c)| c.is_phb()).count()
            + usize::from(!after.pci_controllers().any(|(_, c)| c.is_phb() && c.index == 0));
        match &kept.short {
            None => prop_assert!(kept.kept >= usize::from(n), "{:?}", kept),
            Some(_) => prop_assert_eq!(phbs, 31, "{:?}", kept),
        }
        if n > 0 && result.is_clean() {
            let facts = phbguard_core::host::Facts::gather(&after, &host);
            let empty = phbguard_core::spare::spare_phbs(&after, &facts).unwrap().len();
            prop_assert!(empty >= kept.kept, "{} < {:?}\n{}", empty, kept, result.output);
            prop_assert_eq!(errors(&after, &host), Vec::<String>::new());
        }

        // Spread over the guest's NUMA cells: every new spare has a cell, none has two more
        // than another.
        if !domain.numa_cells.is_empty() {
            let mut per_cell = std::collections::BTreeMap::new();
            for c in &added {
                let Change::AddSparePhb { node, .. } = c else { unreachable!() };
                prop_assert!(node.is_some());
                *per_cell.entry(*node).or_insert(0usize) += 1;
            }
            let (lo, hi) = (per_cell.values().min(), per_cell.values().max());
            prop_assert!(hi.zip(lo).is_none_or(|(h, l)| h - l <= 1), "{:?}", per_cell);
        }

        // Fixing again with the same N changes nothing: N spares present, byte for byte.
        let (_, again) = fixed_with(&result.output, &host, spares(n));
        prop_assert!(again.plan.changes.is_empty(), "{:?}\n{}", again.plan, result.output);
        prop_assert_eq!(&again.output, &result.output);
    }
}

/// The properties above mean something only if the generator makes domains that need every
/// kind of change: count them over a fixed sample.
#[test]
fn the_generator_covers_every_kind_of_change() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let (mut compliant, mut unfixable, mut moves, mut shared_slot) = (0, 0, 0, 0);
    let (mut added, mut retargeted, mut removed, mut models) = (0, 0, 0, 0);
    let (mut duplicates, mut with_node, mut full_bus, mut unaddressed) = (0, 0, 0, 0);
    for _ in 0..400 {
        let (xml, host) = render(&spec().new_tree(&mut runner).unwrap().current());
        let (domain, result) = fixed(&xml, &host);
        let errors = errors(&domain, &host);
        compliant += usize::from(errors.is_empty());
        unfixable += usize::from(!result.is_clean());
        duplicates += usize::from(errors.iter().any(|e| e.starts_with("pci-address-duplicate ")));
        unaddressed += usize::from(
            domain
                .devices
                .iter()
                .any(|d| d.address.is_none() && d.address_span.is_some()),
        );
        // A bus whose 31 slots are all in use, and a fix that had to move something anyway.
        let mut slots = std::collections::HashMap::<u8, std::collections::HashSet<u8>>::new();
        for a in domain.devices.iter().filter_map(|d| d.address) {
            slots.entry(a.bus).or_default().insert(a.slot);
        }
        full_bus += usize::from(slots.values().any(|s| s.len() == 0x1f) && !result.plan.is_empty());
        for change in &result.plan.changes {
            match change {
                Change::Move { to, .. } => {
                    moves += 1;
                    shared_slot += usize::from(to.function > 0);
                }
                Change::AddPhb { node, .. } => {
                    added += 1;
                    with_node += usize::from(node.is_some());
                }
                Change::AddSparePhb { .. } => panic!("no spare PHB is asked for"),
                Change::Retarget { .. } => retargeted += 1,
                Change::RemoveController { .. } => removed += 1,
                Change::SetPhbModel { .. } => models += 1,
                Change::RaiseHardLimit { .. } => panic!("no <hard_limit> is generated, none is raised"),
            }
        }
    }
    let names = "compliant, unfixable, moves, multifunction moves, added, retargeted, removed, \
                 models set, duplicate addresses, PHBs with a NUMA node, full bus, empty addresses";
    let counts = [
        compliant,
        unfixable,
        moves,
        shared_slot,
        added,
        retargeted,
        removed,
        models,
        duplicates,
        with_node,
        full_bus,
        unaddressed,
    ];
    eprintln!("{names}: {counts:?}");
    assert!(counts.iter().all(|&n| n >= 5), "{names}: {counts:?}");
}
