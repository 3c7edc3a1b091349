//! `audit` and `groups` only read, so they connect read-only (`virConnectOpenReadOnly`, served
//! on libvirtd's read-only socket, which a monitoring agent without write access may use).
//! Against the real libvirtd (the sandbox daemon scripts/test-all starts), in a mount namespace
//! of their own where the read-write socket is covered by /dev/null: the read-only socket is all
//! they have. Run as root with `flock /run/phbguard-libvirtd.lock cargo test -p phbguard-libvirt
//! --test it read_only_libvirtd:: -- --include-ignored`.

use std::process::Output;

use phbguard_testkit::{Run, output_text as text};

use crate::bin;

/// libvirt's read-write socket for qemu:///system (the read-only one is `...-sock-ro`).
const RW_SOCKET: &str = "/run/libvirt/libvirt-sock";

/// `program args` in a private mount namespace where [`RW_SOCKET`] is /dev/null.
fn without_rw_socket(program: &str, args: &[&str]) -> Output {
    Run::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("mount --bind /dev/null {RW_SOCKET} && exec \"$@\""))
        .arg("sh")
        .arg(program)
        .args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .output()
}

#[test]
#[ignore = "needs libvirtd"]
fn audit_and_groups_need_only_the_read_only_socket() {
    let _daemon = crate::libvirtd();
    // The premise: there, a read-write connection fails and a read-only one works.
    let rw = without_rw_socket("virsh", &["-q", "-c", "qemu:///system", "uri"]);
    assert!(!rw.status.success(), "read-write still connects: {}", text(&rw));
    let ro = without_rw_socket("virsh", &["-r", "-q", "-c", "qemu:///system", "uri"]);
    assert!(ro.status.success(), "read-only does not connect: {}", text(&ro));

    let bin = bin();
    let audit = without_rw_socket(bin, &["audit", "-c", "qemu:///system", "--format", "json"]);
    // 0 or 1 (other tests' guests may break rules), never 2 (cannot connect).
    assert!(
        matches!(audit.status.code(), Some(0 | 1)),
        "{:?}: {}",
        audit.status,
        text(&audit)
    );
    let json: serde_json::Value = serde_json::from_slice(&audit.stdout).expect("audit JSON");
    assert!(json["results"].is_array(), "{json}");

    let groups = without_rw_socket(bin, &["groups", "-c", "qemu:///system", "--format", "json"]);
    assert_eq!(groups.status.code(), Some(0), "{}", text(&groups));
    let json: serde_json::Value = serde_json::from_slice(&groups.stdout).expect("groups JSON");
    assert!(json["groups"].is_array(), "{json}");
}
