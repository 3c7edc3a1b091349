//! libvirt's own pSeries test data (tests/corpus/libvirt, its README names each upstream file):
//! what libvirt itself places must check clean on a host laid out like libvirt's test mock,
//! except where libvirt honoured a user address that breaks isolation.

use crate::support;

use std::path::PathBuf;

use serde_json::Value;

fn corpus() -> PathBuf {
    support::repo().join("tests/corpus/libvirt")
}

/// `(exit code, ["severity rule device", ...])` of `phbguard check` on one corpus file.
fn check(name: &str, sysfs: &str) -> (i32, Vec<String>) {
    let path = corpus().join(name);
    let (out, json) = support::check_json(sysfs, path.to_str().unwrap());
    let findings = support::finding_lines(&json);
    (out.status.code().unwrap(), findings)
}

#[test]
fn libvirts_own_placements_check_clean() {
    let mock = support::virpcimock();
    let mut outs: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".out.xml"))
        .collect();
    outs.sort();
    assert!(outs.len() >= 9, "corpus incomplete: {outs:?}");
    for name in &outs {
        let (code, findings) = check(name, mock.path_str());
        if name == "pseries-hostdevs-2.out.xml" {
            // libvirt kept the user's address: virtio-scsi beside hostdev 0001:01:00.0 on PHB 1.
            assert_eq!(
                findings,
                ["error emulated-on-hostdev-phb controller scsi index 0 at 0000:01:01.0"]
            );
            assert_eq!(code, 1);
        } else {
            assert_eq!((code, findings), (0, vec![]), "{name}");
        }
    }
}

#[test]
fn hostdevs_on_a_host_without_those_devices_only_warn() {
    let empty = support::FakeSysfs::new();
    let (code, findings) = check("pseries-hostdevs-1.out.xml", empty.path_str());
    assert_eq!(code, 0);
    assert_eq!(
        findings,
        [
            "warning iommu-group-unknown interface hostdev 0005:90:01.0 at 0000:01:01.0",
            "warning iommu-group-unknown hostdev 0001:01:00.0 at 0000:02:01.0",
            "warning iommu-group-unknown hostdev 0001:01:00.1 at 0000:02:02.0",
        ]
    );
}

#[test]
fn libvirts_invalid_target_indexes_are_errors() {
    let mock = support::virpcimock();
    // libvirt: "Only the PCI controller with index 0 can have target index 0, and vice versa"
    let (code, findings) = check("pseries-phb-invalid-target-index-1.in.xml", mock.path_str());
    assert_eq!(
        (code, findings),
        (
            1,
            vec!["error phb-default-target controller pci index 0".to_string()]
        )
    );
    let (code, findings) = check("pseries-phb-invalid-target-index-2.in.xml", mock.path_str());
    assert_eq!(code, 1);
    assert!(
        findings.contains(&"error phb-default-target controller pci index 1".to_string()),
        "{findings:?}"
    );
}

#[test]
fn a_mixed_phb_in_a_libvirt_layout_is_caught() {
    // Put libvirt's two IOMMU groups of pseries-hostdevs-1 on one PHB by hand.
    let text = std::fs::read_to_string(corpus().join("pseries-hostdevs-1.out.xml")).unwrap();
    let mixed = text
        .replace("bus='0x02' slot='0x01'", "bus='0x01' slot='0x02'")
        .replace("bus='0x02' slot='0x02'", "bus='0x01' slot='0x03'");
    let mock = support::virpcimock();
    let out = support::run(
        &["check", "--format", "json", "--sysfs-root", mock.path_str(), "-"],
        mixed.as_bytes(),
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = json["results"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["phb-mixes-iommu-groups"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn every_corpus_input_parses() {
    let mock = support::virpcimock();
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "xml") {
            let out = support::run(
                &["check", "--sysfs-root", mock.path_str(), path.to_str().unwrap()],
                b"",
            );
            assert_ne!(
                out.status.code(),
                Some(2),
                "{}: {}",
                path.display(),
                support::stderr(&out)
            );
        }
    }
}
