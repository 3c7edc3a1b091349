//! docs/admin.md followed as written: the manual install puts every file where the program
//! looks for it, the outputs the page shows are the program's, and on the real libvirtd
//! (tests/e2e/libvirtd-sandbox.sh) the packaged policy refuses nothing; audit, the `check`
//! loop, the fix round trip, the switch to enforce, the opt-out and the roll-back run as the
//! page writes them, with only the guest's name, the file paths and a fake sysfs put in.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use phbguard_testkit::audit_row;

use crate::support;

const HOOK_DIR: &str = "/etc/libvirt/hooks/qemu.d";
const GUEST: &str = "phbguard-e2e-admin-page";
const POLICY: &str = "/etc/phbguard/phbguard.toml";

fn page() -> String {
    std::fs::read_to_string(support::repo().join("docs/admin.md")).unwrap()
}

/// The text of docs/admin.md under the heading that starts with `section`.
fn section(section: &str) -> String {
    let page = page();
    let start = page
        .find(&format!("\n## {section}"))
        .unwrap_or_else(|| panic!("docs/admin.md has no section '{section}'"));
    let body = &page[start + 1..];
    body[..body[3..].find("\n## ").map_or(body.len(), |e| e + 3)].to_string()
}

/// The code blocks of a section fenced with ```` ```kind ```` (`""`: the page's output
/// samples), each as its lines.
fn blocks(section_text: &str, kind: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    // The open block's kind and lines.
    let mut open: Option<(String, Vec<String>)> = None;
    for line in section_text.lines() {
        let fence = line.trim();
        match open.as_mut() {
            None => {
                if let Some(k) = fence.strip_prefix("```") {
                    open = Some((k.to_string(), Vec::new()));
                }
            }
            Some(_) if fence == "```" => {
                let (k, lines) = open.take().unwrap();
                if k == kind {
                    blocks.push(lines);
                }
            }
            Some((_, lines)) => lines.push(line.to_string()),
        }
    }
    blocks
}

/// The non-empty lines of the `sh` blocks under the heading that starts with `name`.
fn page_block(name: &str) -> Vec<String> {
    blocks(&section(name), "sh")
        .into_iter()
        .flatten()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
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

/// `line` after the substitutions, in order, each on the page's text only (never on what an
/// earlier one put in).
fn substituted(line: &str, substitutions: &[(&str, String)]) -> String {
    let mut line = line.to_string();
    for (i, (from, _)) in substitutions.iter().enumerate() {
        line = line.replace(from, &format!("\u{0}{i}\u{0}"));
    }
    for (i, (_, to)) in substitutions.iter().enumerate() {
        line = line.replace(&format!("\u{0}{i}\u{0}"), to);
    }
    line
}

/// Runs a piece of the page with `sh`, in `dir`, after the substitutions, with `env`.
fn run_sh(script: &str, dir: &Path, substitutions: &[(&str, String)], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &substituted(script, substitutions)])
        .current_dir(dir)
        .env("LIBVIRT_DEFAULT_URI", "qemu:///system")
        .env_remove("PHBGUARD_CONFIG")
        .env_remove("PHBGUARD_LIBVIRT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn run_line(line: &str, dir: &Path, substitutions: &[(&str, String)]) -> Output {
    run_sh(line, dir, substitutions, &[])
}

/// The packaged policy edited as an admin on this test host would, in place: the fake sysfs
/// and a syslog socket nobody reads uncommented and set.
fn host_policy(dir: &Path, sysfs: &Path) -> String {
    let mut text = String::new();
    for line in packaged_policy().lines() {
        let line = if line.starts_with("#sysfs_root = ") {
            format!("sysfs_root = \"{}\"", sysfs.display())
        } else if line.starts_with("#syslog_socket = ") {
            format!("syslog_socket = \"{}\"", dir.join("no-syslog").display())
        } else {
            line.to_string()
        };
        text.push_str(&line);
        text.push('\n');
    }
    assert!(text.contains("\nsysfs_root = ") && text.contains("\nsyslog_socket = "));
    text
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

/// What `check-config` prints for a valid policy file that enforces.
fn enforcing(policy: &Path) -> String {
    format!(
        "{}: valid; the hook applies mode = \"enforce\" (guests with error findings are refused)\n",
        policy.display()
    )
}

/// The output the page shows right after the first `sh` block of a section.
fn shown_output(section_name: &str) -> Vec<String> {
    blocks(&section(section_name), "")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no output block in '{section_name}'"))
}

#[test]
#[ignore = "needs libvirtd"]
fn the_admin_page_from_warn_to_enforce_and_back() {
    let _daemon = support::libvirtd();
    let dir = tempfile::tempdir().unwrap();
    let sysfs = support::repo().join("examples/sysfs");

    // 1. Install: the packaged policy (edited for this host), the hook pointing at it, a reload.
    let policy = dir.path().join("phbguard.toml");
    std::fs::write(&policy, host_policy(dir.path(), &sysfs)).unwrap();
    std::fs::create_dir_all(HOOK_DIR).unwrap();
    let hook =
        crate::hook_support::install_hook_with(Path::new(HOOK_DIR), "phbguard-e2e-admin-page", Some(&policy));
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

    let bin = support::bin().display().to_string();
    let audit_dir = dir.path().join("audit");
    let subs = [
        ("web02", GUEST.to_string()),
        (
            "phbguard fix",
            format!("{bin} fix --sysfs-root {}", sysfs.display()),
        ),
        ("phbguard check-config", format!("{bin} check-config")),
        (
            "phbguard check",
            format!("{bin} check --sysfs-root {}", sysfs.display()),
        ),
        ("phbguard audit", format!("{bin} audit")),
        ("/root/phbguard-audit", audit_dir.display().to_string()),
        (POLICY, policy.display().to_string()),
        ("/etc/libvirt/hooks/qemu.d/phbguard", hook.display().to_string()),
    ];
    // The hook's policy file, as audit and check-config read it when run by hand.
    let env = [("PHBGUARD_CONFIG", policy.as_path())];
    let page_output = |line: &str| {
        substituted(
            line,
            &[
                ("web02", GUEST.to_string()),
                (POLICY, policy.display().to_string()),
            ],
        )
    };

    // 1. check-config prints what the page shows.
    let check = page_block("1. Install")
        .into_iter()
        .find(|l| l.starts_with("phbguard check-config"))
        .unwrap();
    let out = run_sh(&check, dir.path(), &subs, &env);
    assert_eq!(out.status.code(), Some(0), "{}", support::output_text(&out));
    let shown: Vec<String> = blocks(&section("1. Install"), "")
        .into_iter()
        .flatten()
        .filter(|l| l.starts_with(POLICY))
        .map(|l| page_output(&l))
        .collect();
    assert_eq!(shown, [support::stdout(&out).trim_end().to_string()]);

    // Warn mode: the start goes past phbguard (and fails later: this host lacks the device).
    let warned = start();
    assert!(!refused_by_phbguard(&warned), "{warned}");
    assert!(warned.contains("passthrough"), "{warned}");

    // 2. audit as written: the policy line and the guest's row as the page shows web02's; exit 1
    // (enforce would refuse it).
    let find = page_block("2. Find");
    let out = run_sh(&find[0], dir.path(), &subs, &env);
    let text = support::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", support::stderr(&out));
    let sample = shown_output("2. Find");
    assert_eq!(
        text.lines().next(),
        Some(page_output(&sample[0]).as_str()),
        "{text}"
    );
    let mut row = audit_row(&text, GUEST, "persistent");
    row[1] = "shut off".into();
    let page_row: Vec<String> = audit_row(&sample.join("\n"), "web02", "persistent")
        .into_iter()
        .map(|c| page_output(&c))
        .collect();
    assert_eq!(row, page_row, "{text}");
    // The check loop as written: one file per guest, findings named by the guest's file.
    let script: Vec<&str> = find
        .iter()
        .skip_while(|l| !l.starts_with("mkdir "))
        .map(String::as_str)
        .collect();
    assert!(
        script.last().is_some_and(|l| l.starts_with("phbguard check ")),
        "{script:?}"
    );
    let out = run_sh(&script.join("\n"), dir.path(), &subs, &[]);
    let found = support::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{found}{}", support::stderr(&out));
    let line = found
        .lines()
        .find(|l| l.starts_with(&format!("{GUEST}.xml:")))
        .unwrap_or_else(|| panic!("no finding of {GUEST}.xml in\n{found}"));
    let page_line = blocks(&section("2. Find"), "")
        .into_iter()
        .flatten()
        .find(|l| l.starts_with("web02.xml:"))
        .unwrap();
    let after_line = |l: &str| l.splitn(3, ':').nth(2).unwrap().to_string();
    assert_eq!(after_line(line), after_line(&page_output(&page_line)));

    // 4. The fix round trip, line by line as the page writes it; the watch service's policy
    // line edited as the page says (no watch service runs here to reload).
    let round_trip = page_block("4. Fix");
    assert!(round_trip.len() >= 4, "{round_trip:?}");
    for line in round_trip.iter().filter(|l| !l.starts_with("systemctl ")) {
        let out = run_line(line, dir.path(), &subs);
        assert!(out.status.success(), "{line}: {}", support::output_text(&out));
    }
    assert!(
        std::fs::read_to_string(&policy)
            .unwrap()
            .contains("\nwatch.action = \"fix\"\n")
    );
    let now = support::virsh(&["dumpxml", "--inactive", "--security-info", GUEST]);
    let now = support::stdout(&now);
    assert!(now.contains("passwd='s3cret'"), "the VNC password survived");
    let check = support::run(
        &["check", "--sysfs-root", sysfs.to_str().unwrap(), "-"],
        now.as_bytes(),
    );
    assert_eq!(check.status.code(), Some(0), "{}", support::stdout(&check));

    // 6. Enforce, with the guest's old placement back: audit says the hook refuses it, the
    // hook does, and virsh says why.
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
    for line in &enforce {
        let out = run_sh(line, dir.path(), &subs, &env);
        if line.starts_with("sed ") {
            assert!(out.status.success(), "{line}: {}", support::output_text(&out));
        } else if line.starts_with("phbguard check-config") {
            assert_eq!(
                support::stdout(&out),
                enforcing(&policy),
                "{}",
                support::stderr(&out)
            );
        } else if line.starts_with("phbguard audit") {
            assert_eq!(out.status.code(), Some(1));
            let row = audit_row(&support::stdout(&out), GUEST, "persistent");
            assert_eq!(row[8..], ["no", "yes"], "{}", support::stdout(&out));
        }
    }
    assert!(
        std::fs::read_to_string(&policy)
            .unwrap()
            .contains("\nmode = \"enforce\"\n")
    );
    let refused = start();
    assert!(refused_by_phbguard(&refused), "{refused}");
    assert!(refused.contains("hostdev-on-default-phb"), "{refused}");

    // 5. Opt the guest out: audit shows it and says the hook lets it start, which it does;
    // then back to the file's mode.
    let opt_out = page_block("5. Opt a guest out");
    assert_eq!(opt_out.len(), 2, "{opt_out:?}");
    let out = run_line(&opt_out[0], dir.path(), &subs);
    assert!(out.status.success(), "{}", support::output_text(&out));
    let out = run_sh("phbguard audit", dir.path(), &subs, &env);
    assert_eq!(
        audit_row(&support::stdout(&out), GUEST, "persistent")[8..],
        ["yes (warn)", "no"]
    );
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
    // The package's policy: the example's keys all commented out, but warn.
    let policy = packaged_policy();
    let set: Vec<&str> = policy
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(set, ["mode = \"warn\""]);
    // The page's edits of the policy file (the watch service's action, then enforce) keep it
    // valid and enforcing: check-config says so, as the page shows.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, &policy).unwrap();
    let subs = [(POLICY, file.display().to_string())];
    let edits: Vec<String> = page_block("4. Fix")
        .into_iter()
        .chain(enforce.iter().cloned())
        .filter(|l| l.starts_with("sed ") && l.contains(POLICY))
        .collect();
    assert_eq!(edits.len(), 2, "{edits:?}");
    for edit in &edits {
        let out = run_line(edit, dir.path(), &subs);
        assert!(out.status.success(), "{}", support::output_text(&out));
    }
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        policy
            .replace("\nmode = \"warn\"\n", "\nmode = \"enforce\"\n")
            .replace("\n#watch.action = \"warn\"\n", "\nwatch.action = \"fix\"\n")
    );
    let out = support::run(&["check-config", file.to_str().unwrap()], b"");
    assert_eq!(
        support::stdout(&out),
        enforcing(&file),
        "{}",
        support::stderr(&out)
    );
}

/// Step 1 by hand, run as written into a scratch root: every file lands, phbguard-libvirt where
/// phbguard looks for it (so step 2's audit runs), the man pages where man finds them, and the
/// policy is the package's. And no doc appends to the policy file (`echo ... >>`), which would
/// land below a table an admin uncommented.
#[test]
fn the_manual_install_installs_what_the_next_steps_use() {
    let root = tempfile::tempdir().unwrap();
    // What every host has; the page creates the rest.
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    let r = root.path().display().to_string();
    let bin_dir = support::bin().parent().unwrap().display().to_string();
    let subs = [
        ("target/release/", format!("{bin_dir}/")),
        (" /usr/", format!(" {r}/usr/")),
        (" /etc/", format!(" {r}/etc/")),
    ];
    let lines: Vec<String> = page_block("1. Install")
        .into_iter()
        .filter(|l| l.starts_with("install "))
        .collect();
    assert!(lines.len() >= 6, "{lines:?}");
    for line in &lines {
        let out = run_sh(line, support::repo(), &subs, &[]);
        assert!(out.status.success(), "{line}: {}", support::output_text(&out));
    }
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    for (path, mode) in [
        ("/usr/bin/phbguard", 0o755),
        ("/usr/libexec/phbguard/phbguard-libvirt", 0o755),
        ("/etc/libvirt/hooks/qemu.d/phbguard", 0o755),
        ("/etc/phbguard/phbguard.toml", 0o644),
        ("/usr/local/share/man/man1/phbguard.1", 0o644),
        ("/usr/local/share/man/man1/phbguard-audit.1", 0o644),
        ("/usr/local/share/man/man5/phbguard.toml.5", 0o644),
    ] {
        let meta = std::fs::metadata(at(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{path}");
    }
    assert_eq!(std::fs::read_to_string(at(POLICY)).unwrap(), packaged_policy());
    // Where the installed phbguard runs the libvirt half from, when it is not beside it.
    let out = Command::new(at("/usr/bin/phbguard"))
        .args(["audit", "-c", "test:///default"])
        .env_remove("PHBGUARD_LIBVIRT")
        .output()
        .unwrap();
    let err = support::stderr(&out);
    if !Path::new("/usr/libexec/phbguard/phbguard-libvirt").exists() {
        assert!(
            err.contains("cannot run /usr/libexec/phbguard/phbguard-libvirt"),
            "{err}"
        );
    }
    // The same path in the page and in hook.md's manual steps.
    let hook_md = std::fs::read_to_string(support::repo().join("docs/hook.md")).unwrap();
    assert!(hook_md.contains(
        "install -D -m 0755 target/release/phbguard-libvirt /usr/libexec/phbguard/phbguard-libvirt"
    ));
    for doc in [
        "README.md",
        "docs/admin.md",
        "docs/hook.md",
        "docs/watch.md",
        "docs/rpm.md",
    ] {
        let text = std::fs::read_to_string(support::repo().join(doc)).unwrap();
        for line in text.lines() {
            assert!(
                !(line.contains(">>") && line.contains("phbguard.toml")),
                "{doc} appends to the policy file: {line}"
            );
        }
    }
}
