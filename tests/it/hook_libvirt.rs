//! The hook under a real libvirtd (tests/e2e/libvirtd-sandbox.sh; scripts/test-all starts it):
//! installed into /etc/libvirt/hooks/qemu.d/, judging pSeries TCG guests that `virsh start`,
//! `save` and `restore`, logging to a datagram socket of the test's own.
//!
//! One test function runs the scenarios in order: they share the installed hook and its
//! policy file, which are global to the daemon. A guard removes the hook, the domains and the
//! save image afterwards, also when a scenario fails. It needs the sandbox daemon, so it is
//! `#[ignore = "needs libvirtd"]`; scripts/test-all runs it with `--include-ignored`. Run it by
//! hand under the shared daemon's lock:
//! `flock /tmp/phbguard-libvirtd.lock cargo test --test it hook_libvirt:: -- --include-ignored`.

use crate::hook_support;
use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hook_support::{install_hook_line, install_hook_with};
use phbguard_testkit::xml::{bridge, guest, hostdev, pci_root, phb, scsi};
use support::{output_text as text, virsh};

const HOOK_DIR: &str = "/etc/libvirt/hooks/qemu.d";
/// Sorted after most hooks; named so that nobody mistakes it for a real one.
const HOOK_NAME: &str = "phbguard-e2e-hook";
const PREFIX: &str = "phbguard-e2e-hook-";

/// Everything the scenarios set up, undone on drop.
struct E2e {
    world: hook_support::World,
    hook: PathBuf,
    domains: Vec<String>,
    work: tempfile::TempDir,
}

impl E2e {
    fn setup() -> E2e {
        let world = hook_support::World::new("");
        let work = tempfile::tempdir().unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

        // libvirtd learns whether qemu.d holds any executable when it starts, and again on
        // SIGHUP only. If it held none, the daemon may have started without it: make it look.
        let had_hooks = std::fs::read_dir(HOOK_DIR)
            .map(|entries| {
                entries.flatten().any(|e| {
                    e.metadata()
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
            })
            .unwrap_or(false);
        let hook = install_hook_with(Path::new(HOOK_DIR), HOOK_NAME, Some(&world.policy.path));
        let e2e = E2e {
            world,
            hook,
            domains: Vec::new(),
            work,
        };
        if !had_hooks {
            reload_daemon();
        }
        e2e
    }

    fn set_policy(&self, extra: &str) {
        self.world.set_policy(extra);
    }

    fn log(&self) -> Vec<String> {
        self.world.log.take()
    }

    /// Defines `phbguard-e2e-hook-<case>`; returns its name, or the define error.
    fn define(&mut self, case: &str, xml: &str) -> Result<String, String> {
        let name = format!("{PREFIX}{case}");
        let file = self.work.path().join(format!("{case}.xml"));
        std::fs::write(&file, xml).unwrap();
        let out = virsh(&["define", file.to_str().unwrap()]);
        if !out.status.success() {
            return Err(text(&out));
        }
        self.domains.push(name.clone());
        Ok(name)
    }

    fn define_guest(&mut self, case: &str, devices: &str) -> String {
        let name = format!("{PREFIX}{case}");
        self.define(case, &guest(&name, devices))
            .unwrap_or_else(|e| panic!("libvirt refused to define {name}: {e}"))
    }

    fn start(&self, name: &str) -> Output {
        virsh(&["start", name])
    }

    fn destroy(&self, name: &str) {
        let _ = virsh(&["destroy", name]);
    }

    fn state(&self, name: &str) -> String {
        text(&virsh(&["domstate", name])).trim().to_string()
    }

    /// `virsh start` of `name`, and `phbguard audit` on the same daemon with the same policy
    /// file asked beforehand whether the hook would refuse that start: it must have said what
    /// the hook then did.
    fn start_as_audit_says(&self, name: &str) -> Output {
        let said = self.audit_would_refuse(name);
        let out = self.start(name);
        let refused = text(&out).contains("Hook script execution failed");
        assert_eq!(
            said,
            refused,
            "audit said would refuse = {said} for {name}: {}",
            text(&out)
        );
        out
    }

    /// `start_refused` of `name`'s persistent definition in `phbguard audit --format json`.
    fn audit_would_refuse(&self, name: &str) -> bool {
        let libvirt_half = support::bin().with_file_name("phbguard-libvirt");
        assert!(
            libvirt_half.is_file(),
            "{} is not built: run the tests with --workspace (scripts/test-all does)",
            libvirt_half.display()
        );
        let out = Command::new(support::bin())
            .args(["audit", "-c", "qemu:///system", "--format", "json", "--config"])
            .arg(&self.world.policy.path)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("audit printed no JSON ({e}): {}", text(&out)));
        let result = json["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["domain"] == name && r["definition"] == "persistent")
            .unwrap_or_else(|| panic!("audit does not list {name}: {json}"));
        result["start_refused"].as_bool().expect("start_refused")
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.hook);
        for name in &self.domains {
            let _ = virsh(&["destroy", name]);
            let _ = virsh(&["undefine", "--managed-save", name]);
        }
    }
}

/// The sandbox's state directory (pid and log files).
fn state_dir() -> PathBuf {
    PathBuf::from(std::env::var("PHBGUARD_E2E_STATE_DIR").unwrap_or_else(|_| "/run/phbguard-e2e".into()))
}

/// The sandbox daemon's log (it logs hook calls: PHBGUARD_E2E_LOG_FILTERS).
fn daemon_log_path() -> PathBuf {
    state_dir().join("libvirtd.log")
}

/// SIGHUP to the sandbox's libvirtd (its pid file), then wait until it answers again.
fn reload_daemon() {
    let pid_file = state_dir().join("libvirtd.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; is libvirtd-sandbox.sh's daemon running?",
            pid_file.display()
        )
    });
    let pid: u32 = pid.trim().parse().expect("a pid");
    // The shell's builtin kill: a bare machine need not have procps' kill.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -HUP {pid}")])
        .status()
        .unwrap();
    assert!(status.success(), "kill -HUP {pid}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !virsh(&["list", "--name"]).status.success() {
        assert!(Instant::now() < deadline, "libvirtd did not answer after SIGHUP");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a start rejected by the hook looks like.
fn assert_rejected(out: &Output, name: &str, rule: &str) {
    let t = text(out);
    assert!(!out.status.success(), "{name} started: {t}");
    assert!(t.contains("Hook script execution failed"), "{name}: {t}");
    assert!(
        t.contains(&format!(
            "{HOOK_NAME} {name} prepare begin -) unexpected exit status 1"
        )),
        "{name}: {t}"
    );
    assert!(t.contains(&format!(": {rule}: ")), "{name}: no '{rule}: ' in {t}");
    assert!(t.contains(&format!("'phbguard explain {rule}'")), "{name}: {t}");
}

/// What a start that went past the hook and failed on this host's missing devices looks like.
fn assert_passed_hook_then_no_passthrough(out: &Output, name: &str) {
    let t = text(out);
    assert!(!out.status.success(), "{name} started with a fake hostdev?! {t}");
    assert!(!t.contains("Hook script"), "{name} was rejected by the hook: {t}");
    assert!(t.contains("host doesn't support passthrough"), "{name}: {t}");
}

/// How many of the hook's finding lines virsh shows (`RULE: ...` or `RULE (warning): ...`,
/// the first one after libvirt's "unexpected exit status 1: ").
fn finding_lines_shown(virsh_text: &str) -> usize {
    virsh_text
        .lines()
        .map(|l| {
            l.split_once("unexpected exit status 1: ")
                .map_or(l, |(_, rest)| rest)
        })
        .filter(|l| {
            phbguard_core::rules::RULES.iter().any(|r| {
                l.strip_prefix(r.id.as_str())
                    .is_some_and(|rest| rest.starts_with(": ") || rest.starts_with(" ("))
            })
        })
        .count()
}

/// The finding lines (rejected, warned, exempt) of one domain, checked for the fields every
/// finding line carries.
fn lines_for(lines: &[String], name: &str) -> Vec<String> {
    let mine: Vec<String> = lines
        .iter()
        .filter(|l| {
            ["rejected", "warned", "exempt"]
                .iter()
                .any(|verb| l.contains(&format!(": {verb} domain={name} ")))
        })
        .cloned()
        .collect();
    for l in &mine {
        assert!(l.starts_with('<') && l.contains(" phbguard["), "{l}");
        for key in [" uuid=", " op=", " rule=", " device="] {
            assert!(l.contains(key), "{key} missing: {l}");
        }
    }
    mine
}

#[test]
#[ignore = "needs libvirtd"]
fn hook_under_real_libvirtd() {
    let _daemon = support::libvirtd();
    let started = Instant::now();
    let mut e = E2e::setup();
    let mut timings = Vec::new();
    let mut lap = Instant::now();
    let mut mark = |what: &str, lap: &mut Instant| {
        timings.push(format!("{what} {:.2}s", lap.elapsed().as_secs_f64()));
        *lap = Instant::now();
    };

    // 1. Every error rule a pSeries guest can break and libvirt lets one define: the start is
    //    refused at 'prepare begin', virsh shows the rule id, syslog has one line per finding.
    for (rule, devices, errors) in hook_support::rule_scenarios() {
        let name = e.define_guest(rule, &devices);
        let out = e.start_as_audit_says(&name);
        assert_rejected(&out, &name, rule);
        assert_eq!(e.state(&name), "shut off");
        let logged = lines_for(&e.log(), &name);
        let rejected: Vec<_> = logged.iter().filter(|l| l.contains(" severity=error ")).collect();
        assert_eq!(rejected.len(), errors.len(), "{rule}: {logged:#?}");
        assert!(
            rejected
                .iter()
                .all(|l| l.contains(": rejected ") && l.contains(" op=prepare ")),
            "{rejected:#?}"
        );
        for id in &errors {
            assert!(
                rejected.iter().any(|l| l.contains(&format!(" rule={id} "))),
                "{rule}: {rejected:#?}"
            );
        }
        // One line per finding: exactly as many as virsh shows finding lines.
        let shown = finding_lines_shown(&text(&out));
        assert_eq!(shown, logged.len(), "{rule}: {}\n{logged:#?}", text(&out));
        // At 'prepare begin', before libvirt detached anything (qemuProcessInit runs the hook
        // before qemuProcessPrepareHost's qemuHostdevPrepareDomainDevices): virsh shows the
        // group, what holds it and what to do.
        if rule == "iommu-group-not-viable" {
            let t = text(&out);
            assert!(
                t.contains(
                    "iommu-group-not-viable: hostdev 0005:01:00.0 at 0000:01:01.0 is in IOMMU group 5, \
                     which VFIO cannot open while 0005:01:00.1 is bound to mlx5_core: detach it from \
                     the host ('virsh nodedev-detach pci_0005_01_00_1')"
                ),
                "{t}"
            );
        }
    }
    mark("seven rejections", &mut lap);

    // The other PHB rules are ones libvirt enforces itself, at define: the hook never sees them.
    let p = pci_root;
    for (rule, devices) in [
        ("phb-wrong-model", p(1, "pci-bridge", 1)),
        ("phb-target-out-of-range", p(1, "spapr-pci-host-bridge", 31)),
        ("phb-default-target", p(1, "spapr-pci-host-bridge", 0)),
    ] {
        let name = format!("{PREFIX}{rule}");
        let err = e
            .define(rule, &guest(&name, &devices))
            .expect_err("libvirt refuses it");
        assert!(err.contains("unsupported configuration"), "{rule}: {err}");
    }

    // 2. A compliant guest with a 300 KiB definition starts and runs. The hook reads the XML
    //    whole at 'prepare begin' and not at all at 'start begin' / 'started begin'.
    let big = guest(
        &format!("{PREFIX}compliant"),
        &format!("{}{}", phb(1, 1), scsi(0, 1, 1)),
    )
    .replacen(
        "<memory",
        &format!("<description>{}</description>\n  <memory", "x".repeat(300 * 1024)),
        1,
    );
    let name = e.define("compliant", &big).unwrap();
    let out = e.start_as_audit_says(&name);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(e.state(&name), "running");
    e.destroy(&name);
    assert!(lines_for(&e.log(), &name).is_empty());
    mark("compliant start+destroy", &mut lap);

    // 3. A compliant guest with a hostdev passes the hook, then fails on this host.
    let name = e.define_guest(
        "compliant-hostdev",
        &format!("{}{}", phb(1, 1), hostdev("0002:02:00.0", 1, 1)),
    );
    assert_passed_hook_then_no_passthrough(&e.start_as_audit_says(&name), &name);
    assert!(lines_for(&e.log(), &name).is_empty());

    // 4. warn mode: a bad guest passes the hook, with a syslog line.
    e.set_policy("mode = \"warn\"\n");
    let bad = format!("{PREFIX}hostdev-on-default-phb");
    assert_passed_hook_then_no_passthrough(&e.start_as_audit_says(&bad), &bad);
    let logged = lines_for(&e.log(), &bad);
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(
        logged[0].contains(": warned ")
            && logged[0].contains(" rule=hostdev-on-default-phb ")
            && logged[0].contains(" mode=warn")
    );
    let dup = format!("{PREFIX}phb-target-duplicate");
    let out = e.start_as_audit_says(&dup);
    assert!(
        !text(&out).contains("Hook script") && text(&out).contains("already attached"),
        "{}",
        text(&out)
    );
    e.log();
    // exempt: the other opt-out, in the policy file.
    e.set_policy(&format!("exempt = [\"{bad}\"]\n"));
    assert_passed_hook_then_no_passthrough(&e.start_as_audit_says(&bad), &bad);
    let logged = lines_for(&e.log(), &bad);
    assert!(logged.iter().all(|l| l.contains(": exempt ")), "{logged:#?}");
    e.set_policy("");
    mark("warn mode, exempt", &mut lap);

    // 5. The per-domain opt-out, set with virsh metadata, lets a bad guest through; removed, the
    //    guest is rejected again.
    let set = virsh(&[
        "metadata",
        &bad,
        "--uri",
        phbguard_core::parse::METADATA_NS,
        "--key",
        "phbguard",
        "--set",
        "<policy mode='warn'/>",
        "--config",
    ]);
    assert!(set.status.success(), "{}", text(&set));
    assert_passed_hook_then_no_passthrough(&e.start_as_audit_says(&bad), &bad);
    let logged = lines_for(&e.log(), &bad);
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(
        logged[0].contains(": warned ") && logged[0].contains(" mode=warn"),
        "{}",
        logged[0]
    );
    let rm = virsh(&[
        "metadata",
        &bad,
        "--uri",
        phbguard_core::parse::METADATA_NS,
        "--remove",
        "--config",
    ]);
    assert!(rm.status.success(), "{}", text(&rm));
    assert_rejected(&e.start_as_audit_says(&bad), &bad, "hostdev-on-default-phb");
    e.log();
    mark("metadata opt-out", &mut lap);

    // 6. A warning-only guest starts (one 'warned' line), then goes through save and restore:
    //    'restore begin' judges the XML from the image, prints nothing (the guest is not tainted)
    //    and lets it in, even with incoming = "refuse" (warnings never refuse).
    let name = e.define_guest("warning-only", &bridge(1, 6));
    let out = e.start_as_audit_says(&name);
    assert!(out.status.success(), "{}", text(&out));
    let logged = lines_for(&e.log(), &name);
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(logged[0].contains(": warned ") && logged[0].contains(" op=prepare rule=pci-bridge-on-pseries "));
    mark("warning-only start", &mut lap);
    e.set_policy("incoming = \"refuse\"\n");
    let image = e.work.path().join("warning-only.save");
    let out = virsh(&["save", &name, image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(e.state(&name), "shut off");
    mark("save", &mut lap);
    let out = virsh(&["restore", image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(e.state(&name), "running");
    mark("restore", &mut lap);
    // 'restore begin' judged it and left the mark; the 'prepare begin' libvirt runs next for
    // the same guest took the incoming path (incoming decides, not mode), and syslog says so.
    let all = e.log();
    let logged = lines_for(&all, &name);
    assert_eq!(
        logged
            .iter()
            .filter(|l| l.contains(" op=restore rule=pci-bridge-on-pseries "))
            .count(),
        1,
        "{logged:#?}"
    );
    assert_eq!(
        logged
            .iter()
            .filter(|l| l.contains(" op=prepare incoming=restore rule=pci-bridge-on-pseries "))
            .count(),
        1,
        "{logged:#?}"
    );
    let incoming: Vec<_> = all
        .iter()
        .filter(|l| l.contains(&format!(" incoming domain={name} ")))
        .collect();
    assert_eq!(incoming.len(), 1, "{all:#?}");
    assert!(
        incoming[0].contains(" op=prepare after=restore: the start that follows 'restore begin' is judged by incoming = \"refuse\""),
        "{}",
        incoming[0]
    );
    assert_eq!(
        std::fs::read_dir(e.world.state_dir()).unwrap().count(),
        0,
        "the mark was consumed"
    );
    // libvirt writes each taint of a QEMU run into the guest's log ("Domain id=N is tainted:
    // WHY") after that run's "starting up" line; the restore is the last run (-incoming). The
    // sandbox's QEMU runs as root, which libvirt records as high-privileges: that line shows
    // taints do reach this log, so the absence of hook-script means something.
    let log_path = format!("/var/log/libvirt/qemu/{name}.log");
    let qemu_log = std::fs::read_to_string(&log_path).unwrap_or_else(|e| panic!("{log_path}: {e}"));
    let (_, restored) = qemu_log
        .rsplit_once(": starting up libvirt")
        .unwrap_or_else(|| panic!("{log_path} records no QEMU start"));
    assert!(
        restored.contains("-incoming"),
        "{log_path}: its last run is not the restore"
    );
    assert!(
        restored.contains(" is tainted: high-privileges"),
        "{log_path}: no taint recorded for the restore, so a hook-script one would not show either"
    );
    assert!(
        !restored.contains(" is tainted: hook-script"),
        "restore tainted the guest: the hook printed XML?"
    );
    mark("incoming checks", &mut lap);

    // 7. A broken '#!' line (a typo in an option) while guests run, then a libvirtd restart:
    //    the new daemon calls 'reconnect begin' for the running guest, which must exit 0 (a
    //    failing hook there makes libvirt stop the guest, qemuProcessReconnect). The guest
    //    keeps running. A start is judged in warn mode: the bad guest passes the hook. (audit
    //    reads the policy file, not the hook file's '#!' line: it cannot see this mistake.)
    e.set_policy("");
    install_hook_line(
        Path::new(HOOK_DIR),
        HOOK_NAME,
        " hook --confg=/etc/phbguard/typo.toml",
    );
    let pid_before = std::fs::read_to_string(format!("/run/libvirt/qemu/{name}.pid")).unwrap();
    let log_before = std::fs::metadata(daemon_log_path()).map_or(0, |m| m.len() as usize);
    let status = Command::new(support::repo().join("tests/e2e/libvirtd-sandbox.sh"))
        .arg("restart-daemon")
        .status()
        .unwrap();
    assert!(status.success(), "libvirtd-sandbox.sh restart-daemon");
    support::assert_libvirtd_answers();
    mark("libvirtd restart", &mut lap);
    assert_eq!(e.state(&name), "running", "the guest did not survive the restart");
    let pid_after = std::fs::read_to_string(format!("/run/libvirt/qemu/{name}.pid")).unwrap();
    assert_eq!(pid_before.trim(), pid_after.trim(), "the same QEMU process");
    // libvirtd reconnects to running guests on threads of their own (qemuProcessReconnect), so
    // the daemon may answer before it has run the hook for this one: wait for the line. Only
    // what this restart wrote counts (the file is appended to, unless the start truncated it).
    let reconnect_line = format!("{HOOK_NAME} {name} reconnect begin -");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let daemon_log = std::fs::read(daemon_log_path()).unwrap_or_default();
        let daemon_log = String::from_utf8_lossy(daemon_log.get(log_before..).unwrap_or(&daemon_log[..]));
        if daemon_log.contains(&reconnect_line) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "libvirtd ran the hook at reconnect (its log: {})",
            daemon_log_path().display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_passed_hook_then_no_passthrough(&e.start(&bad), &bad);
    e.destroy(&name);
    mark("destroy", &mut lap);

    drop(e);
    assert!(!Path::new(HOOK_DIR).join(HOOK_NAME).exists());
    eprintln!(
        "hook_under_real_libvirtd: {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        timings.join(", ")
    );
}

/// An incoming migration, as far as one machine can have one: libvirt refuses to migrate a
/// guest to the host it runs on (the migration cookie's host UUID), and a second QEMU driver
/// here cannot be the other end (the embedded driver, `qemu:///embed`, has no remote driver to
/// reach this daemon with). So the destination's first call, `migrate begin -` with the
/// migratable XML on stdin (qemuMigrationDstPrepareAny), is made here as libvirtd makes it:
/// the installed hook file, libvirt's environment, the XML `virsh dumpxml --migratable
/// --security-info` gives. The second, `prepare begin -` of the incoming guest's start
/// (qemuProcessInit), is the real daemon's: it must find the mark the first left and be judged
/// by `incoming`, not by `mode`.
#[test]
#[ignore = "needs libvirtd"]
fn the_prepare_after_a_migrate_begin_is_judged_as_incoming_under_the_real_daemon() {
    let _daemon = support::libvirtd();
    let mut e = E2e::setup();
    let bad = e.define_guest("incoming", &hostdev("0002:02:00.0", 0, 5));
    let migratable = support::virsh(&["dumpxml", "--migratable", "--security-info", &bad]);
    assert!(migratable.status.success(), "{}", text(&migratable));

    // Enforce mode would refuse this guest's start; an incoming guest is judged by incoming =
    // "warn" (the default), which lets it in.
    e.set_policy("mode = \"enforce\"\n");
    assert_rejected(&e.start(&bad), &bad, "hostdev-on-default-phb");
    e.log();
    let out = hook_support::run_exe(&e.hook, &[&bad, "migrate", "begin", "-"], &[], &migratable.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out.stdout.is_empty(),
        "the hook printed XML at migrate: {}",
        text(&out)
    );
    let logged = lines_for(&e.log(), &bad);
    assert!(
        logged.len() == 1 && logged[0].contains(" op=migrate ") && logged[0].contains(": warned "),
        "{logged:#?}"
    );
    assert_eq!(
        std::fs::read_dir(e.world.state_dir()).unwrap().count(),
        1,
        "migrate begin left no mark"
    );

    // libvirtd's own 'prepare begin': past the hook (then this host has no such device).
    assert_passed_hook_then_no_passthrough(&e.start(&bad), &bad);
    let all = e.log();
    let incoming: Vec<&String> = all
        .iter()
        .filter(|l| l.contains(&format!(" incoming domain={bad} ")))
        .collect();
    assert_eq!(incoming.len(), 1, "{all:#?}");
    assert!(
        incoming[0].contains(" op=prepare after=migrate: the start that follows 'migrate begin' is judged by incoming = \"warn\""),
        "{}",
        incoming[0]
    );
    let logged = lines_for(&all, &bad);
    assert!(
        logged.len() == 1 && logged[0].contains(" op=prepare incoming=migrate rule=hostdev-on-default-phb "),
        "{logged:#?}"
    );
    assert_eq!(
        std::fs::read_dir(e.world.state_dir()).unwrap().count(),
        0,
        "the mark was consumed"
    );
    // Once: the next start is judged by mode again.
    assert_rejected(&e.start(&bad), &bad, "hostdev-on-default-phb");
}
