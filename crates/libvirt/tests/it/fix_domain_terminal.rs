//! README: `fix --domain` redefines "only with `--yes` or when confirmed on a terminal". On the
//! real libvirtd, with a real terminal: util-linux's `script` runs it on a pseudo-terminal and
//! types the answer. "n" leaves the guest as it is; "y" redefines it.

use phbguard_testkit::libvirtd::{virsh, virsh_ok};
use phbguard_testkit::xml::{guest, hostdev};
use phbguard_testkit::{FakeSysfs, Run, output_text};

const NAME: &str = "phbguard-e2e-fix-on-a-terminal";

/// Undefines the guest, also when an assertion fails.
struct Defined;

impl Drop for Defined {
    fn drop(&mut self) {
        virsh(&["undefine", NAME]);
    }
}

/// `fix --domain` on a pseudo-terminal, `answer` typed on it; its exit code and all it showed.
fn on_a_terminal(sysfs: &FakeSysfs, answer: &str) -> (Option<i32>, String) {
    let command = format!(
        "exec '{}' fix --domain {NAME} -c qemu:///system --sysfs-root '{}'",
        crate::bin(),
        sysfs.path_str()
    );
    // -e: script exits with the command's status; -q: no "Script started" lines; the
    // typescript goes nowhere, what the terminal showed comes out on script's stdout.
    let out = Run::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(answer)
        .hang_after(std::time::Duration::from_secs(300))
        .output();
    (out.status.code(), output_text(&out))
}

#[test]
#[ignore = "needs libvirtd"]
fn fix_domain_redefines_only_what_is_confirmed_on_a_terminal() {
    let _daemon = crate::libvirtd();
    // The guest's host device in IOMMU group 8: the sandbox has no such device.
    let sysfs = FakeSysfs::new().device("0002:02:00.0", Some(8), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guest.xml");
    std::fs::write(&file, guest(NAME, &hostdev("0002:02:00.0", 0, 5))).unwrap();
    let _ = virsh(&["undefine", NAME]); // an earlier run's, if it failed half-way
    virsh_ok(&["define", file.to_str().unwrap()]);
    let _defined = Defined;
    let before = virsh_ok(&["dumpxml", "--inactive", "--security-info", NAME]);
    let prompt = format!("Redefine domain '{NAME}' with these changes? [y/N]");

    let (code, shown) = on_a_terminal(&sysfs, "n\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains(&prompt), "no question asked: {shown}");
    assert!(
        shown.contains(&format!(
            "{NAME}: not redefined (not confirmed); run with --yes to redefine"
        )),
        "{shown}"
    );
    assert_eq!(
        virsh_ok(&["dumpxml", "--inactive", "--security-info", NAME]),
        before
    );

    let (code, shown) = on_a_terminal(&sysfs, "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains(&prompt), "no question asked: {shown}");
    assert!(shown.contains(&format!("{NAME}: redefined")), "{shown}");
    let after = virsh_ok(&["dumpxml", "--inactive", "--security-info", NAME]);
    assert!(
        after.contains("<address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/>"),
        "the hostdev did not move to a PHB of its own:\n{after}"
    );
}
