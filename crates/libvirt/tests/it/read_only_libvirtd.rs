//! `audit` and `groups` only read, so they connect read-only (`virConnectOpenReadOnly`, served
//! on libvirtd's read-only socket, which a monitoring agent without write access may use).
//! Against the real libvirtd (the sandbox daemon scripts/test-all starts), in a mount namespace
//! of their own where the read-write socket is covered by /dev/null: the read-only socket is all
//! they have. Run as root with `flock /tmp/phbguard-libvirtd.lock cargo test -p phbguard-libvirt
//! --test it read_only_libvirtd:: -- --include-ignored`.

use std::process::{Command, Output};

/// libvirt's read-write socket for qemu:///system (the read-only one is `...-sock-ro`).
const RW_SOCKET: &str = "/run/libvirt/libvirt-sock";

/// `program args` in a private mount namespace where [`RW_SOCKET`] is /dev/null.
fn without_rw_socket(program: &str, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("mount --bind /dev/null {RW_SOCKET} && exec \"$@\""))
        .arg("sh")
        .arg(program)
        .args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .output()
        .expect("unshare runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A guest only the rules can object to (two PHBs with target index 1), needing no host device.
const NAME: &str = "phbguard-e2e-read-only";

fn guest() -> String {
    format!(
        "<domain type='qemu'>
  <name>{NAME}</name>
  <memory unit='MiB'>512</memory>
  <os><type arch='ppc64' machine='pseries'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-ppc64</emulator>
    <controller type='pci' index='0' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='0'/></controller>
    <controller type='pci' index='1' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='1'/></controller>
    <controller type='pci' index='2' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='1'/></controller>
  </devices>
</domain>"
    )
}

/// `virsh` with both sockets, bounded so a stuck daemon fails the test instead of hanging it.
fn virsh(args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["120", "virsh", "-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("virsh runs")
}

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
    let probe = virsh(&["uri"]);
    assert!(
        probe.status.success(),
        "libvirtd does not answer on qemu:///system; start it with tests/e2e/libvirtd-sandbox.sh start"
    );
    // The premise: there, a read-write connection fails and a read-only one works.
    let rw = without_rw_socket("virsh", &["-q", "-c", "qemu:///system", "uri"]);
    assert!(!rw.status.success(), "read-write still connects: {}", text(&rw));
    let ro = without_rw_socket("virsh", &["-r", "-q", "-c", "qemu:///system", "uri"]);
    assert!(ro.status.success(), "read-only does not connect: {}", text(&ro));

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), guest()).unwrap();
    let define = virsh(&["define", file.path().to_str().unwrap()]);
    assert!(define.status.success(), "{}", text(&define));
    let _defined = Defined;

    // Read-only, audit and groups give what they give with every socket (whatever other
    // guests the daemon has): the same report and exit code.
    let bin = env!("CARGO_BIN_EXE_phbguard-libvirt");
    let audit_args = ["audit", "-c", "qemu:///system", "--format", "json"];
    let audit = without_rw_socket(bin, &audit_args);
    let audit_rw = Command::new(bin).args(audit_args).output().unwrap();
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
    let groups_rw = Command::new(bin).args(groups_args).output().unwrap();
    assert_eq!(groups_rw.status.code(), Some(0), "{}", text(&groups_rw));
    let json: serde_json::Value = serde_json::from_slice(&groups.stdout).expect("groups JSON");
    assert!(json["groups"].is_array(), "{json}");
    assert_eq!(
        json,
        serde_json::from_slice::<serde_json::Value>(&groups_rw.stdout).expect("groups JSON"),
        "read-only and read-write groups differ"
    );
}
