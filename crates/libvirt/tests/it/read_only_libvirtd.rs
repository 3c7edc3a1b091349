//! `audit` and `groups` only read, so they connect read-only (`virConnectOpenReadOnly`, served
//! on libvirtd's read-only socket, which a monitoring agent without write access may use).
//! Against the real libvirtd (the sandbox daemon scripts/test-all starts), in a mount namespace
//! of their own where the read-write socket is covered by /dev/null: the read-only socket is all
//! they have. Run as root with `flock /tmp/phbguard-libvirtd.lock cargo test -p phbguard-libvirt
//! --test it read_only_libvirtd:: -- --include-ignored`.

use std::process::Output;

use phbguard_testkit::libvirtd::{virsh, virsh_ok};
use phbguard_testkit::xml::{guest, phb};
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

/// A guest only the rules can object to (two PHBs with target index 1), needing no host device.
const NAME: &str = "phbguard-e2e-read-only";

/// Undefines the guest, also when an assertion fails.
struct Defined;

impl Drop for Defined {
    fn drop(&mut self) {
        virsh(&["undefine", NAME]);
    }
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

    let file = tempfile::NamedTempFile::new().unwrap();
    let xml = guest(NAME, &format!("{}{}{}", phb(0, 0), phb(1, 1), phb(2, 1)));
    std::fs::write(file.path(), xml).unwrap();
    virsh_ok(&["define", file.path().to_str().unwrap()]);
    let _defined = Defined;

    // Read-only, audit and groups give what they give with every socket (whatever other
    // guests the daemon has): the same report and exit code.
    let bin = bin();
    let audit_args = ["audit", "-c", "qemu:///system", "--format", "json"];
    let audit = without_rw_socket(bin, &audit_args);
    let audit_rw = crate::phbguard(&audit_args).output();
    let json: serde_json::Value =
        serde_json::from_slice(&audit.stdout).unwrap_or_else(|e| panic!("audit JSON: {e}: {}", text(&audit)));
    let json_rw: serde_json::Value = serde_json::from_slice(&audit_rw.stdout)
        .unwrap_or_else(|e| panic!("audit JSON: {e}: {}", text(&audit_rw)));
    assert_eq!(json, json_rw, "read-only and read-write audits differ");
    // Among them the guest defined here, with its error: so exit 1, as with every socket.
    let ours: Vec<&serde_json::Value> = json["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["domain"] == NAME)
        .collect();
    assert_eq!(ours.len(), 1, "{json}");
    assert_eq!(ours[0]["definition"], "persistent", "{}", ours[0]);
    let rules: Vec<&str> = ours[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["phb-target-duplicate"], "{}", ours[0]);
    assert_eq!(audit.status.code(), Some(1), "{}", text(&audit));
    assert_eq!(audit_rw.status.code(), Some(1), "{}", text(&audit_rw));

    let groups_args = ["groups", "-c", "qemu:///system", "--format", "json"];
    let groups = without_rw_socket(bin, &groups_args);
    assert_eq!(groups.status.code(), Some(0), "{}", text(&groups));
    let groups_rw = crate::phbguard(&groups_args).output();
    assert_eq!(groups_rw.status.code(), Some(0), "{}", text(&groups_rw));
    let json: serde_json::Value = serde_json::from_slice(&groups.stdout).expect("groups JSON");
    assert!(json["groups"].is_array(), "{json}");
    assert_eq!(
        json,
        serde_json::from_slice::<serde_json::Value>(&groups_rw.stdout).expect("groups JSON"),
        "read-only and read-write groups differ"
    );
}
