//! `iommu-group-not-viable` and `memlock-limit-too-low` through the libvirt API: the guests of
//! tests/data/vfio.xml judged by `audit` on the test driver's node devices and on a sysfs tree
//! with drivers, and `groups`' view of each group.

use std::process::Output;

use phbguard_testkit::{FakeSysfs, stderr, stdout};
use serde_json::Value;

use crate::{data, phbguard};

fn uri() -> String {
    format!("test://{}", data("vfio.xml").display())
}

fn run(args: &[&str]) -> Output {
    phbguard(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env("PHBGUARD_CONFIG", data("policy-defaults.toml"))
        .output()
}

/// `domain/definition: severity rule device` for every finding of `audit --format json`.
fn audit(extra: &[&str]) -> Vec<String> {
    let u = uri();
    let mut args = vec!["audit", "-c", &u, "--format", "json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    crate::audit::finding_lines(&json)
}

#[test]
fn audit_judges_both_rules_on_node_devices_and_not_a_running_guests_drivers() {
    // The node devices of libvirt 9.0's test driver show no driver: a managed='no' hostdev is
    // on none, so not on vfio-pci; the running guest's is left alone; managed groups, the one
    // with a bridge and unbound functions are viable.
    assert_eq!(
        audit(&[]),
        [
            "memlock/persistent: error memlock-limit-too-low memtune hard_limit",
            "unmanaged/persistent: error iommu-group-not-viable hostdev 0009:01:00.0 at 0000:01:01.0",
        ]
    );
}

/// The host of vfio.xml as sysfs shows it, drivers bound as a host would have them.
fn sysfs() -> FakeSysfs {
    let mut host = FakeSysfs::new();
    for (addr, group, driver) in [
        ("0006:01:00.0", 20, Some("vfio-pci")),
        ("0006:01:00.1", 20, Some("mlx5_core")),
        ("0007:01:00.0", 21, Some("mlx5_core")),
        ("0007:01:00.1", 21, Some("mlx5_core")),
        ("0008:00:00.0", 22, Some("pcieport")),
        ("0008:01:00.0", 22, Some("vfio-pci")),
        ("0008:01:00.1", 22, None),
        ("0009:01:00.0", 23, Some("mlx5_core")),
        ("0009:02:00.0", 24, Some("vfio-pci")),
        ("000a:01:00.0", 25, Some("vfio-pci")),
    ] {
        host = host.device(addr, Some(group), Some(0)).driver(addr, driver);
    }
    host.class("0008:00:00.0", 0x060400)
}

#[test]
fn audit_on_a_sysfs_tree_sees_the_sibling_on_its_host_driver() {
    let host = sysfs();
    let lines = audit(&["--sysfs-root", host.path_str()]);
    assert_eq!(
        lines,
        [
            "memlock/persistent: error memlock-limit-too-low memtune hard_limit",
            "sibling/persistent: error iommu-group-not-viable hostdev 0006:01:00.0 at 0000:01:01.0",
            "unmanaged/persistent: error iommu-group-not-viable hostdev 0009:01:00.0 at 0000:01:01.0",
        ]
    );
    let u = uri();
    let out = run(&["audit", "-c", &u, "--sysfs-root", host.path_str()]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "is in IOMMU group 20, which VFIO cannot open while 0006:01:00.1 is bound to mlx5_core: \
             detach it from the host ('virsh nodedev-detach pci_0006_01_00_1') or give it to this \
             guest too, as a managed='yes' hostdev; else QEMU fails at start with 'group 20 is not \
             viable'"
        ),
        "{text}"
    );
    // The bridge: a switch port on pcieport shares the group; a member of no driver too.
    assert!(!text.contains("bridged (persistent)"), "{text}");
}

#[test]
fn groups_shows_each_groups_viability_for_each_guest() {
    let u = uri();
    let out = run(&["groups", "-c", &u]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "  VFIO: viable for guest 'bridged'",
        "  VFIO: viable for guest 'whole-group'",
        "  VFIO: not viable for guest 'unmanaged': 0009:01:00.0, a managed='no' hostdev, is on no \
         driver, not vfio-pci",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let out = run(&["groups", "-c", &u, "--format", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let group = |n: u64| {
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == n)
            .unwrap_or_else(|| panic!("no group {n}"))
            .clone()
    };
    let unmanaged = &group(23)["vfio"];
    assert_eq!(unmanaged["guests"][0]["domain"], "unmanaged");
    assert_eq!(unmanaged["guests"][0]["viable"], false);
    assert_eq!(
        unmanaged["guests"][0]["blockers"],
        serde_json::json!([{"address": "0009:01:00.0", "driver": null, "unmanaged_hostdev": true}])
    );
    // Nothing holds it now: the guest's own setting is what blocks.
    assert_eq!(unmanaged["viable"], true);
    let bridged = &group(22)["vfio"];
    assert_eq!(bridged["guests"][0]["viable"], true);
    assert_eq!(
        group(22)["devices"][0]["address"],
        "0008:00:00.0",
        "the switch port is listed in its group"
    );
}
