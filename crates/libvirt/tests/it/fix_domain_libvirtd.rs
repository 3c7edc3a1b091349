//! `phbguard fix --domain` against the real libvirtd (qemu:///system, the sandbox daemon that
//! scripts/test-all starts): the VNC password survives the redefine, and nothing is redefined
//! unless told. Run with `flock /run/phbguard-libvirtd.lock cargo test -p phbguard-libvirt
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

    // Told: redefined, the hostdev on a PHB of its own, the password kept.
    let out = fix_domain(sysfs, &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
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
