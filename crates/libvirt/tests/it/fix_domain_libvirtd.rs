//! `phbguard fix --domain` against the real libvirtd (qemu:///system, the sandbox daemon that
//! scripts/test-all starts): the VNC password survives the redefine, and nothing is redefined
//! unless told. Run with `flock /tmp/phbguard-libvirtd.lock cargo test -p phbguard-libvirt
//! --test it fix_domain_libvirtd:: -- --include-ignored`.

use std::path::Path;
use std::process::Output;

use phbguard_testkit::libvirtd::{URI, virsh};
use phbguard_testkit::xml::{guest, hostdev, with_vnc};
use phbguard_testkit::{FakeSysfs, stderr};

use crate::phbguard;

const NAME: &str = "phbguard-e2e-i11-fix-domain";

/// Undefines the guest, also when an assertion fails.
struct Defined;

impl Drop for Defined {
    fn drop(&mut self) {
        virsh(&["undefine", NAME]);
    }
}

fn fix_domain(sysfs: &Path, extra: &[&str]) -> Output {
    phbguard(&["fix", "--domain", NAME, "-c", URI, "--sysfs-root"])
        .arg(sysfs)
        .args(extra)
        .output()
}

fn secure_xml() -> String {
    let out = virsh(&["dumpxml", "--inactive", "--security-info", NAME]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs libvirtd"]
fn fix_domain_keeps_the_vnc_password_and_redefines_only_when_told() {
    let _daemon = crate::libvirtd();
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("guest.xml");
    // QEMU's VNC takes at most 8 characters (libvirt refuses longer ones).
    std::fs::write(
        &xml,
        with_vnc(&guest(NAME, &hostdev("0002:02:00.0", 0, 5)), "e2es3cr8"),
    )
    .unwrap();
    // The guest's host device in IOMMU group 8: the sandbox has no such device, and its node
    // devices cannot be faked.
    let sysfs = FakeSysfs::new().device("0002:02:00.0", Some(8), None);
    let sysfs = sysfs.path();

    virsh(&["undefine", NAME]);
    let out = virsh(&["define", xml.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _cleanup = Defined;
    let before = secure_xml();
    assert!(before.contains("passwd='e2es3cr8'"));

    // Not told: the diff, and the definition stays as it was.
    let out = fix_domain(sysfs, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("+    <controller type='pci' index='1' model='pci-root'>")
    );
    assert_eq!(secure_xml(), before);

    // A confirmation names the change it was given for (what a web page passes back): the
    // digest of one run's proposal.
    let digest = |out: &Output| -> String {
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(json["redefined"], false, "{json}");
        let d = json["digest"].as_str().unwrap().to_string();
        assert!(d.starts_with("sha256:") && d.len() == 7 + 64, "{d}");
        d
    };
    let shown = digest(&fix_domain(sysfs, &["--format", "json"]));
    assert_eq!(
        digest(&fix_domain(sysfs, &["--format", "json"])),
        shown,
        "one proposal, one digest"
    );
    // Someone else redefines the guest after the diff was shown: the confirmed digest no longer
    // names what would be defined, and nothing is.
    let edited = dir.path().join("edited.xml");
    let edit = secure_xml().replacen(
        "<memory",
        "<description>edited meanwhile</description>\n  <memory",
        1,
    );
    std::fs::write(&edited, edit).unwrap();
    let out = virsh(&["define", edited.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = secure_xml();
    let out = fix_domain(sysfs, &["--yes", "--if-digest", &shown]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "not redefined: this is not the change with digest {shown}"
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(secure_xml(), before);
    let now = digest(&fix_domain(sysfs, &["--format", "json"]));
    assert_ne!(now, shown);
    // The right digest is not a confirmation by itself.
    assert_eq!(fix_domain(sysfs, &["--if-digest", &now]).status.code(), Some(1));
    assert_eq!(secure_xml(), before);

    // Told, for the change shown: redefined, the hostdev on a PHB of its own, the password kept.
    let out = fix_domain(sysfs, &["--yes", "--if-digest", &now]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = secure_xml();
    assert_ne!(after, before);
    assert!(
        after.contains("passwd='e2es3cr8'"),
        "the VNC password was lost:\n{after}"
    );
    assert!(
        after.contains("<address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/>"),
        "{after}"
    );

    // Compliant now: a second run changes nothing.
    let out = fix_domain(sysfs, &["--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("already keeps the rules"));
    assert_eq!(secure_xml(), after);
}
