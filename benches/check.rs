//! Parse + judge cost for a realistic 40-device domain and a 2,000-device one. Cost must grow
//! linearly with the device count: compare the per-device figures of the two. Then the cost of
//! `fix` on a broken domain: plan, render, apply and judge again.

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phbguard_core::host::StaticHost;
use phbguard_core::model::PciAddr;
use phbguard_core::{parse_domain, rules};

/// Hostdev PHBs 1..=15 (one IOMMU group each), emulated devices on PHB 0 and PHBs 16..=30,
/// filling slots 1..=31 and functions 0..=7 of each.
fn domain(devices: usize) -> (String, StaticHost) {
    let mut xml = String::from(
        "<domain type='kvm'>\n  <name>bench</name>\n  <uuid>00000000-0000-4000-8000-000000000001</uuid>\n  \
         <memory unit='GiB'>64</memory>\n  <os>\n    <type arch='ppc64le' machine='pseries'>hvm</type>\n  </os>\n  \
         <devices>\n",
    );
    for phb in 0..=30 {
        writeln!(
            xml,
            "    <controller type='pci' index='{phb}' model='pci-root'>\n      \
             <model name='spapr-pci-host-bridge'/>\n      <target index='{phb}'/>\n    </controller>"
        )
        .unwrap();
    }
    let mut host = StaticHost::new();
    let (mut hostdev_pos, mut emulated_pos) = (0usize, 0usize);
    for i in 0..devices {
        if i % 2 == 0 {
            // 15 PHBs x 248 functions
            let (phb, slot_fn) = (1 + hostdev_pos % 15, hostdev_pos / 15);
            let (slot, function) = (1 + slot_fn / 8, slot_fn % 8);
            let host_addr = PciAddr {
                domain: phb as u32,
                bus: 1,
                slot: slot as u8,
                function: function as u8,
            };
            host = host.with_device(host_addr, phb as u32 + 100, Some(0));
            writeln!(
                xml,
                "    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n        \
                 <address domain='{:#06x}' bus='0x01' slot='{slot:#04x}' function='{function:#x}'/>\n      </source>\n      \
                 <address type='pci' domain='0x0000' bus='{phb:#04x}' slot='{slot:#04x}' function='{function:#x}'/>\n    </hostdev>",
                phb
            )
            .unwrap();
            hostdev_pos += 1;
        } else {
            let (phb_pos, slot_fn) = (emulated_pos % 16, emulated_pos / 16);
            let phb = if phb_pos == 0 { 0 } else { 15 + phb_pos };
            let (slot, function) = (1 + slot_fn / 8, slot_fn % 8);
            writeln!(
                xml,
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
                 <source file='/var/lib/libvirt/images/d{i}.img'/>\n      <target dev='vd{i}' bus='virtio'/>\n      \
                 <address type='pci' domain='0x0000' bus='{phb:#04x}' slot='{slot:#04x}' function='{function:#x}'/>\n    </disk>"
            )
            .unwrap();
            emulated_pos += 1;
        }
    }
    xml.push_str("  </devices>\n</domain>\n");
    (xml, host)
}

fn parse_and_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse+check");
    for devices in [40, 2000] {
        let (xml, host) = domain(devices);
        // The generated layout is compliant: the benchmark measures the clean path admins hit.
        let parsed = parse_domain(xml.as_bytes()).unwrap();
        assert!(rules::judge(&parsed, &host).is_empty());
        group.throughput(Throughput::Elements(devices as u64));
        // The parser alone, to tell its share from the rules'.
        group.bench_function(format!("{devices} devices, parse only"), |b| {
            b.iter(|| parse_domain(black_box(xml.as_bytes())).unwrap())
        });
        group.bench_function(format!("{devices} devices"), |b| {
            b.iter(|| {
                let domain = parse_domain(black_box(xml.as_bytes())).unwrap();
                black_box(rules::judge(&domain, &host))
            })
        });
    }
    group.finish();
}

/// 20 virtio disks and 10 hostdevs (5 IOMMU groups of 2 functions) all on the default PHB:
/// `fix` adds 5 PHBs and moves the 10 hostdevs.
fn broken_domain() -> (String, StaticHost) {
    let mut xml = String::from(
        "<domain type='kvm'>\n  <name>bench-fix</name>\n  <os>\n    <type arch='ppc64le' machine='pseries'>hvm</type>\n  \
         </os>\n  <devices>\n",
    );
    let mut host = StaticHost::new();
    for slot in 1..=20 {
        writeln!(
            xml,
            "    <disk type='file' device='disk'>\n      <source file='/img/d{slot}.img'/>\n      \
             <target dev='vd{slot}' bus='virtio'/>\n      \
             <address type='pci' domain='0x0000' bus='0x00' slot='{slot:#04x}' function='0x0'/>\n    </disk>"
        )
        .unwrap();
    }
    for i in 0..10u8 {
        let (group, function) = (u32::from(i / 2), i % 2);
        let host_addr = PciAddr {
            domain: 0x10 + u32::from(i / 2),
            bus: 1,
            slot: 0,
            function,
        };
        host = host.with_device(host_addr, group, Some(0));
        writeln!(
            xml,
            "    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n        \
             <address domain='{:#06x}' bus='0x01' slot='0x00' function='{function:#x}'/>\n      </source>\n      \
             <address type='pci' domain='0x0000' bus='0x00' slot='{:#04x}' function='0x0'/>\n    </hostdev>",
            host_addr.domain,
            21 + i
        )
        .unwrap();
    }
    xml.push_str("  </devices>\n</domain>\n");
    (xml, host)
}

fn fix(c: &mut Criterion) {
    let (xml, host) = broken_domain();
    let parsed = parse_domain(xml.as_bytes()).unwrap();
    let fixed = phbguard_core::fix::fix(&xml, &parsed, &host, Default::default()).unwrap();
    assert!(
        fixed.is_clean() && fixed.plan.changes.len() == 15,
        "{:?}",
        fixed.plan
    );
    c.bench_function("fix 30 devices, 10 moves", |b| {
        b.iter(|| {
            let domain = parse_domain(black_box(xml.as_bytes())).unwrap();
            black_box(phbguard_core::fix::fix(&xml, &domain, &host, Default::default()).unwrap())
        })
    });
}

criterion_group!(benches, parse_and_check, fix);
criterion_main!(benches);
