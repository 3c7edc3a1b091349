//! docs/admin.md followed on the real libvirtd (tests/e2e/libvirtd-sandbox.sh): the policy the
//! RPM ships (packaging/phbguard.toml plus the line the spec appends) refuses nothing; the fix
//! round trip, the switch to enforce, the opt-out and the roll-back run as the page writes them,
//! with only the guest's name, the file paths and a fake sysfs put in.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const HOOK_DIR: &str = "/etc/libvirt/hooks/qemu.d";
const GUEST: &str = "phbguard-e2e-admin-page";

/// The `sh` code blocks of docs/admin.md under the heading that starts with `section`.
fn page_block(section: &str) -> Vec<String> {
    let page = std::fs::read_to_string(support::repo().join("docs/admin.md")).unwrap();
    let start = page
        .find(&format!("\n## {section}"))
        .unwrap_or_else(|| panic!("docs/admin.md has no section '{section}'"));
    let body = &page[start + 1..];
    let body = &body[..body[3..].find("\n## ").map_or(body.len(), |e| e + 3)];
    let mut lines = Vec::new();
    let mut inside = false;
    for line in body.lines() {
        match line.trim() {
            "```sh" => inside = true,
            "```" => inside = false,
            l if inside && !l.is_empty() => lines.push(l.to_string()),
            _ => {}
        }
    }
    lines
}

/// What the package installs as /etc/phbguard/phbguard.toml: the file as it is in the tree
/// (the spec installs it unchanged).
fn packaged_policy() -> String {
    let spec = std::fs::read_to_string(support::repo().join("packaging/phbguard.spec")).unwrap();
    assert!(
        spec.contains(
            "install -D -p -m 0644 packaging/phbguard.toml %{buildroot}%{_sysconfdir}/phbguard/phbguard.toml\n"
        ),
        "the spec installs the policy file as it is"
    );
    assert!(
        !spec.contains("phbguard.toml <<"),
        "the spec appends nothing to the policy file"
    );
    std::fs::read_to_string(support::repo().join("packaging/phbguard.toml")).unwrap()
}

/// Runs one line of the page with `sh`, in `dir`, after the substitutions.
fn run_line(line: &str, dir: &Path, substitutions: &[(&str, String)]) -> Output {
    let mut line = line.to_string();
    for (from, to) in substitutions {
        line = line.replace(from, to);
    }
    Command::new("sh")
        .args(["-c", &line])
        .current_dir(dir)
        .env("LIBVIRT_DEFAULT_URI", "qemu:///system")
        .output()
        .unwrap()
}

/// SIGHUP to the sandbox's libvirtd, the page's reload where no systemd runs the daemon.
fn reload_daemon() {
    let state = std::env::var("PHBGUARD_E2E_STATE_DIR").unwrap_or_else(|_| "/run/phbguard-e2e".into());
    let pid = std::fs::read_to_string(Path::new(&state).join("libvirtd.pid")).unwrap();
    let status = Command::new("kill").args(["-HUP", pid.trim()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    std::thread::sleep(Duration::from_millis(300));
    while !support::virsh(&["list", "--name"]).status.success() {
        assert!(Instant::now() < deadline, "libvirtd did not answer after SIGHUP");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes the guest and the hook whatever happens to the test.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = support::virsh(&["destroy", GUEST]);
        let _ = support::virsh(&["undefine", GUEST]);
        if self.0.exists() {
            let _ = std::fs::remove_file(&self.0);
            reload_daemon();
        }
    }
}

fn start() -> String {
    let out = support::virsh(&["start", GUEST]);
    let _ = support::virsh(&["destroy", GUEST]);
    support::output_text(&out)
}

fn refused_by_phbguard(start: &str) -> bool {
    start.contains("Hook script execution failed") && start.contains("refused to start")
}

#[test]
#[ignore = "needs libvirtd"]
fn the_admin_page_from_warn_to_enforce_and_back() {
    let _daemon = support::libvirtd();
    let dir = tempfile::tempdir().unwrap();
    let sysfs = support::repo().join("examples/sysfs");

    // 1. Install: the packaged policy (a fake sysfs for this host, a syslog socket nobody
    // reads), the hook pointing at it, a reload.
    let policy = dir.path().join("phbguard.toml");
    let mut text = packaged_policy();
    text.push_str(&format!(
        "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\n",
        sysfs.display(),
        dir.path().join("no-syslog").display()
    ));
    std::fs::write(&policy, text).unwrap();
    let hook = Path::new(HOOK_DIR).join("phbguard-e2e-admin-page");
    let shipped = std::fs::read_to_string(support::repo().join("hooks/qemu.d/phbguard")).unwrap();
    let rest = shipped.split_once('\n').unwrap().1;
    let first = format!(
        "#!{} hook --config={}",
        support::bin().display(),
        policy.display()
    );
    std::fs::create_dir_all(HOOK_DIR).unwrap();
    std::fs::write(&hook, format!("{first}\n{rest}")).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _cleanup = Cleanup(hook.clone());
    reload_daemon();

    // A guest with its NVMe drive on the default PHB and a VNC password.
    let template = std::fs::read_to_string(support::repo().join("tests/e2e/guest.xml.in")).unwrap();
    let xml = template
        // VNC brings a USB tablet.
        .replace("<controller type='usb' model='none'/>", "")
        .replace("@NAME@", GUEST)
        .replace(
            "@DEVICES@",
            "<graphics type='vnc' port='-1' autoport='yes' passwd='s3cret'/>\n\
             <hostdev mode='subsystem' type='pci' managed='yes'><source>\
             <address domain='0x0001' bus='0x01' slot='0x00' function='0x0'/></source>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></hostdev>",
        );
    let original = dir.path().join("original.xml");
    std::fs::write(&original, xml).unwrap();
    let defined = support::virsh(&["define", original.to_str().unwrap()]);
    assert!(defined.status.success(), "{}", support::output_text(&defined));

    // Warn mode: the start goes past phbguard (and fails later: this host lacks the device).
    let warned = start();
    assert!(!refused_by_phbguard(&warned), "{warned}");
    assert!(warned.contains("passthrough"), "{warned}");

    let bin = support::bin().display().to_string();
    let subs = [
        ("web02", GUEST.to_string()),
        (
            "phbguard fix",
            format!("{bin} fix --sysfs-root {}", sysfs.display()),
        ),
        (
            "phbguard check",
            format!("{bin} check --sysfs-root {}", sysfs.display()),
        ),
        ("phbguard check-config", format!("{bin} check-config")),
        ("/etc/phbguard/phbguard.toml", policy.display().to_string()),
        ("/etc/libvirt/hooks/qemu.d/phbguard", hook.display().to_string()),
    ];

    // 4. The fix round trip, line by line as the page writes it.
    let round_trip = page_block("4. Fix");
    assert!(round_trip.len() >= 4, "{round_trip:?}");
    for line in &round_trip {
        let out = run_line(line, dir.path(), &subs);
        assert!(out.status.success(), "{line}: {}", support::output_text(&out));
    }
    let now = support::virsh(&["dumpxml", "--inactive", "--security-info", GUEST]);
    let now = support::stdout(&now);
    assert!(now.contains("passwd='s3cret'"), "the VNC password survived");
    let check = support::run(
        &["check", "--sysfs-root", sysfs.to_str().unwrap(), "-"],
        now.as_bytes(),
    );
    assert_eq!(check.status.code(), Some(0), "{}", support::stdout(&check));

    // 6. Enforce, with the guest's old placement back: refused, and virsh says why.
    let broken = now.replace(
        "bus='0x01' slot='0x01' function='0x0'/>\n    </hostdev>",
        "bus='0x00' slot='0x05' function='0x0'/>\n    </hostdev>",
    );
    assert_ne!(broken, now);
    let broken_file = dir.path().join("broken.xml");
    std::fs::write(&broken_file, &broken).unwrap();
    assert!(
        support::virsh(&["define", broken_file.to_str().unwrap()])
            .status
            .success()
    );
    let enforce = page_block("6. Switch to enforce");
    let switch = enforce.iter().find(|l| l.starts_with("sed ")).unwrap();
    assert!(run_line(switch, dir.path(), &subs).status.success());
    assert!(
        std::fs::read_to_string(&policy)
            .unwrap()
            .contains("\nmode = \"enforce\"\n")
    );
    let refused = start();
    assert!(refused_by_phbguard(&refused), "{refused}");
    assert!(refused.contains("hostdev-on-default-phb"), "{refused}");

    // 5. Opt the guest out; then back to the file's mode.
    let opt_out = page_block("5. Opt a guest out");
    assert_eq!(opt_out.len(), 2, "{opt_out:?}");
    let out = run_line(&opt_out[0], dir.path(), &subs);
    assert!(out.status.success(), "{}", support::output_text(&out));
    let let_through = start();
    assert!(!refused_by_phbguard(&let_through), "{let_through}");
    let out = run_line(&opt_out[1], dir.path(), &subs);
    assert!(out.status.success(), "{}", support::output_text(&out));
    assert!(refused_by_phbguard(&start()));

    // 7. Roll back: remove the hook, reload (SIGHUP: this daemon is not under systemd).
    let roll_back = page_block("7. Roll back");
    let remove = roll_back.iter().find(|l| l.starts_with("rm ")).unwrap();
    assert!(run_line(remove, dir.path(), &subs).status.success());
    assert!(!hook.exists());
    reload_daemon();
    let after = start();
    assert!(!refused_by_phbguard(&after), "{after}");
}

/// What the e2e test above reads from the page and the spec is there (runs without libvirtd).
#[test]
fn the_page_and_the_spec_hold_what_the_walk_follows() {
    let round_trip = page_block("4. Fix");
    assert!(round_trip[0].starts_with("virsh dumpxml --inactive --security-info web02 > "));
    assert!(round_trip.iter().any(|l| l.starts_with("virsh define web02.xml")));
    assert!(
        round_trip
            .iter()
            .any(|l| l.starts_with("phbguard fix -i web02.xml"))
    );
    let enforce = page_block("6. Switch to enforce");
    assert!(enforce.iter().any(|l| l.starts_with("sed -i ")), "{enforce:?}");
    let opt_out = page_block("5. Opt a guest out");
    assert!(
        opt_out[0].contains("--set \"<policy mode='warn'/>\""),
        "{opt_out:?}"
    );
    assert!(opt_out[1].contains("--remove"), "{opt_out:?}");
    let roll_back = page_block("7. Roll back");
    assert!(roll_back.contains(&"rm /etc/libvirt/hooks/qemu.d/phbguard".to_string()));
    // The package's policy: the example's keys all commented out, then warn.
    let policy = packaged_policy();
    let set: Vec<&str> = policy
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(set, ["mode = \"warn\""]);
    // The page's switch turns exactly that line into enforce.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, &policy).unwrap();
    let switch = enforce.iter().find(|l| l.starts_with("sed ")).unwrap();
    let out = run_line(
        switch,
        dir.path(),
        &[("/etc/phbguard/phbguard.toml", file.display().to_string())],
    );
    assert!(out.status.success(), "{}", support::output_text(&out));
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        policy.replace("\nmode = \"warn\"\n", "\nmode = \"enforce\"\n")
    );
}
