//! `phbguard watch` as a service under the real libvirtd of tests/e2e/libvirtd-sandbox.sh:
//! the watcher is this crate's binary, its policy file names a fake sysfs tree and a syslog
//! datagram socket of the test's own, `NOTIFY_SOCKET` another, and `virsh event` counts the
//! DEFINED events a define causes.
//!
//! They need the daemon (and restart it), so they are `#[ignore = "needs libvirtd"]`:
//! `scripts/test-all` runs them with `--include-ignored` under the daemon's lock. Each takes the
//! crate's libvirtd guard, so they run one at a time with the crate's other tests on the daemon.
//!
//! The last test runs on libvirt's test driver and needs nothing.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use phbguard_core::rules::{Severity, judge};
use phbguard_io::sysfs::Sysfs;
use phbguard_testkit::libvirtd::{URI, virsh, virsh_ok};
use phbguard_testkit::xml::{guest, hostdev, phb, rng, with_numa_cells, with_vnc};
use phbguard_testkit::{Datagrams, FakeSysfs, eventually, kill, output_text as text, repo};

use crate::phbguard;

mod promises;
mod races;

const PREFIX: &str = "phbguard-e2e-watch-";
/// The VNC password of the guests that have one.
const VNC: &str = "s3cr3t-8";

/// One scenario at a time: they share the daemon, and one of them restarts it.
fn serial() -> MutexGuard<'static, ()> {
    crate::libvirtd()
}

/// `virsh event --loop --event lifecycle` (every domain), as printed.
struct LifecycleEvents {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LifecycleEvents {
    /// Starts listening and returns once events are seen to arrive (a sentinel domain's).
    fn listen(work: &Path) -> LifecycleEvents {
        // virsh's stdout is a pipe here, which stdio buffers: line-buffer it (coreutils).
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "virsh",
                "-q",
                "-c",
                URI,
                "event",
                "--loop",
                "--event",
                "lifecycle",
                "--timestamp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("virsh event starts");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut events = LifecycleEvents { child, lines };
        // virsh says nothing once it is registered: define until its event shows.
        // A UUID of its own, so that defining it again is an update, not a second domain.
        let sentinel = format!("{PREFIX}sentinel");
        let xml = guest(&sentinel, "").replacen(
            "<memory",
            "<uuid>5d2c1a8e-7b3f-4e21-9c4d-000000e2e001</uuid>\n  <memory",
            1,
        );
        let file = work.join("sentinel.xml");
        std::fs::write(&file, xml).unwrap();
        let _ = virsh(&["undefine", &sentinel]); // an earlier run's, if it failed half-way
        eventually("virsh event to see a define", || {
            if let Some(status) = events.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(events.child.stderr.as_mut().unwrap(), &mut err);
                panic!("virsh event exited ({status}): {err}");
            }
            virsh_ok(&["define", file.to_str().unwrap()]);
            std::thread::sleep(Duration::from_millis(200));
            (!events.defined(&sentinel).is_empty()).then_some(())
        });
        virsh_ok(&["undefine", &sentinel]);
        events
    }

    /// `Defined Added`, `Defined Updated`... for `name`, in order.
    fn defined(&self, name: &str) -> Vec<String> {
        let prefix = format!("for domain '{name}': Defined ");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split_once(&prefix).map(|(_, detail)| detail.to_owned()))
            .collect()
    }
}

impl LifecycleEvents {
    /// Returns once every event libvirt sent before the call has reached this listener: libvirt
    /// delivers a client's events in order, so the event of a define made now comes after them.
    fn barrier(&self, work: &Path) {
        let marker = format!("{PREFIX}barrier");
        let file = work.join("barrier.xml");
        std::fs::write(&file, guest(&marker, "")).unwrap();
        let seen = self.defined(&marker).len();
        virsh_ok(&["define", file.to_str().unwrap()]);
        eventually("virsh event to see the barrier's define", || {
            (self.defined(&marker).len() > seen).then_some(())
        });
        virsh_ok(&["undefine", &marker]);
    }

    /// Every event seen so far, as `virsh event --timestamp` printed it.
    fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for LifecycleEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A watcher process with its policy, syslog and sd_notify sockets, and the domains a test
/// defined (undefined when it ends, also when it fails).
struct World {
    work: tempfile::TempDir,
    sysfs: FakeSysfs,
    log: Datagrams,
    notify: Datagrams,
    watcher: Option<Child>,
    domains: Vec<String>,
}

impl World {
    fn new(action: &str) -> World {
        let work = tempfile::tempdir().unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The host: hostdev 0002:01:00.0 in IOMMU group 1, 0002:02:00.0 in group 2.
        let sysfs = FakeSysfs::new().device("0002:01:00.0", Some(1), Some(0)).device(
            "0002:02:00.0",
            Some(2),
            Some(0),
        );
        let log = Datagrams::bind(&work.path().join("log"));
        let notify = Datagrams::bind(&work.path().join("notify"));
        let w = World {
            work,
            sysfs,
            log,
            notify,
            watcher: None,
            domains: Vec::new(),
        };
        w.write_policy(&format!("[watch]\naction = \"{action}\"\n"));
        w
    }

    /// The policy file: the test's sysfs tree and syslog socket, then `rest`.
    fn write_policy(&self, rest: &str) {
        let policy = format!(
            "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\n{rest}",
            self.sysfs.path().display(),
            self.log.path.display()
        );
        std::fs::write(self.work.path().join("phbguard.toml"), policy).unwrap();
    }

    /// Writes the policy, sends the watcher SIGHUP, and returns the first log line with
    /// `verb` (": reloaded " or ": not-reloaded ").
    fn reload(&self, rest: &str, verb: &str) -> String {
        self.write_policy(rest);
        kill("HUP", self.watcher_pid());
        self.log.wait_for(&[verb])
    }

    /// Starts `phbguard-libvirt watch` and waits for its READY=1 (after the earlier
    /// watchers' ones, when this world has had some).
    fn start_watcher(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.path().join("watch.stderr"))
            .unwrap();
        let child = phbguard(&["watch", "-c", URI, "--config"])
            .arg(self.work.path().join("phbguard.toml"))
            .env("NOTIFY_SOCKET", &self.notify.path)
            .stderr_to(stderr)
            .spawn();
        self.watcher = Some(child);
        let readies = self.notify.matching(&["READY=1"]).len();
        eventually("the watcher's READY=1", || {
            (self.notify.matching(&["READY=1"]).len() > readies).then_some(())
        });
    }

    fn watcher_pid(&self) -> u32 {
        self.watcher.as_ref().expect("started").id()
    }

    fn assert_watcher_running(&mut self) {
        let status = self.watcher.as_mut().unwrap().try_wait().unwrap();
        assert!(
            status.is_none(),
            "the watcher exited: {status:?}; stderr: {}",
            self.stderr()
        );
    }

    /// SIGTERM, then its exit status.
    fn stop_watcher(&mut self) -> ExitStatus {
        kill("TERM", self.watcher_pid());
        let child = self.watcher.as_mut().unwrap();
        let status = eventually("the watcher to exit after SIGTERM", || child.try_wait().unwrap());
        self.watcher = None;
        status
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.work.path().join("watch.stderr")).unwrap_or_default()
    }

    /// Brings the test to where the watcher has done all it ever will about what the test did
    /// so far, and `events` holds every event that caused, without waiting a fixed time (a late
    /// redefine would come after any such wait). A non-compliant sentinel defined now settles
    /// after every guest defined before it, so its log line says those were judged; SIGTERM
    /// then ends the watcher (exit 0) once it has worked out what followed its own defines, so
    /// nothing more comes from it; and [`LifecycleEvents::barrier`] waits for the events it
    /// caused. The watcher is stopped afterwards.
    fn quiesce(&mut self, events: &LifecycleEvents) {
        let sentinel = format!("{PREFIX}sentinel-judged");
        self.define(&sentinel, &guest(&sentinel, &hostdev("0002:02:00.0", 0, 5)));
        self.log.wait_for(&[&format!("domain={sentinel} ")]);
        let status = self.stop_watcher();
        assert_eq!(status.code(), Some(0), "{}", self.stderr());
        events.barrier(self.work.path());
    }

    /// Defines `xml` (named `name`) with `virsh define`.
    fn define(&mut self, name: &str, xml: &str) {
        let file = self.work.path().join(format!("{name}.xml"));
        std::fs::write(&file, xml).unwrap();
        self.domains.push(name.to_owned());
        virsh_ok(&["define", file.to_str().unwrap()]);
    }

    /// The persistent definition with its secrets.
    fn definition(&self, name: &str) -> String {
        virsh_ok(&["dumpxml", "--inactive", "--security-info", name])
    }

    /// The error findings of `xml` on the test's host.
    fn errors(&self, xml: &str) -> Vec<String> {
        let domain = phbguard_core::parse_domain(xml.as_bytes()).unwrap();
        judge(&domain, &Sysfs::new(self.sysfs.path()))
            .into_iter()
            .filter(|f| f.severity() == Severity::Error)
            .map(|f| format!("{} {}", f.rule.id, f.device))
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut child) = self.watcher.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.domains {
            let _ = virsh(&["destroy", name]);
            let _ = virsh(&["undefine", name]);
        }
    }
}

/// Once the watcher has done all it will ([`World::quiesce`], which stops it): `bad` (name,
/// definition after the fix) has virsh's define and the watcher's one redefine and nothing
/// after; `good` (name, definition) was defined once, never redefined or logged about.
fn fixed_once_and_left_alone(w: &mut World, events: &LifecycleEvents, bad: (&str, &str), good: (&str, &str)) {
    w.quiesce(events);
    assert_eq!(events.defined(bad.0), ["Added", "Updated"]);
    assert_eq!(events.defined(good.0), ["Added"]);
    assert_eq!(w.definition(good.0), good.1);
    assert!(
        w.log.matching(&[&format!("domain={} ", good.0)]).is_empty(),
        "{:#?}",
        w.log.all()
    );
    assert_eq!(w.definition(bad.0), bad.1, "redefined again");
}

#[test]
#[ignore = "needs libvirtd"]
fn fix_redefines_a_bad_definition_once_keeps_its_vnc_password_and_leaves_a_good_one() {
    let _one = serial();
    let mut w = World::new("fix");
    let events = LifecycleEvents::listen(w.work.path());
    w.start_watcher();

    // Two hostdevs on the default PHB: each needs a PHB of its own.
    let bad = format!("{PREFIX}fix-bad");
    w.define(
        &bad,
        &with_vnc(
            &guest(
                &bad,
                &format!(
                    "{}{}",
                    hostdev("0002:01:00.0", 0, 5),
                    hostdev("0002:02:00.0", 0, 6)
                ),
            ),
            VNC,
        ),
    );
    w.log
        .wait_for(&[": redefined ", &format!("domain={bad} "), "op=define"]);
    let after = w.definition(&bad);
    assert_eq!(w.errors(&after), Vec::<String>::new(), "{after}");
    assert!(
        after.contains("passwd='s3cr3t-8'"),
        "the VNC password was lost:\n{after}"
    );
    let fixed = w.log.matching(&[": fixed ", &format!("domain={bad} ")]);
    assert_eq!(fixed.len(), 2, "one line per finding fixed: {fixed:#?}");
    assert!(
        fixed
            .iter()
            .all(|l| l.contains("rule=hostdev-on-default-phb") && l.contains("action=fix"))
    );

    // A compliant definition is judged and left alone.
    let good = format!("{PREFIX}fix-good");
    let phb = "<controller type='pci' index='1' model='pci-root'><model name='spapr-pci-host-bridge'/>\
               <target index='1'/></controller>";
    w.define(
        &good,
        &guest(&good, &format!("{phb}{}", hostdev("0002:01:00.0", 1, 1))),
    );
    let before = w.definition(&good);

    // An opted-out guest is left as it is; `virsh metadata --remove --config` ends the opt-out
    // with no DEFINED event (a metadata change), and the watcher fixes it then.
    let opted = format!("{PREFIX}fix-opted-out");
    w.define(
        &opted,
        &guest(&opted, &hostdev("0002:01:00.0", 0, 5)).replacen(
            "<memory",
            &format!(
                "<metadata><phbguard:policy xmlns:phbguard='{}' mode='warn'/></metadata><memory",
                phbguard_core::parse::METADATA_NS
            ),
            1,
        ),
    );
    w.log
        .wait_for(&[": warned ", &format!("domain={opted} "), "op=define"]);
    assert_eq!(w.errors(&w.definition(&opted)).len(), 1);
    virsh_ok(&[
        "metadata",
        &opted,
        "--uri",
        phbguard_core::parse::METADATA_NS,
        "--remove",
        "--config",
    ]);
    w.log
        .wait_for(&[": redefined ", &format!("domain={opted} "), "op=metadata"]);
    assert_eq!(w.errors(&w.definition(&opted)), Vec::<String>::new());

    fixed_once_and_left_alone(&mut w, &events, (&bad, &after), (&good, &before));
    // The metadata change is followed by the watcher's one redefine; nothing after it.
    assert_eq!(events.defined(&opted), ["Added", "Updated"]);

    w.notify.wait_for(&["STOPPING=1"]);
    w.log.wait_for(&[": stopped ", "signal=SIGTERM"]);
}

#[test]
#[ignore = "needs libvirtd"]
fn warn_logs_the_findings_and_leaves_the_definition_as_it_is() {
    let _one = serial();
    let mut w = World::new("warn");
    let events = LifecycleEvents::listen(w.work.path());
    w.start_watcher();

    let name = format!("{PREFIX}warn");
    w.define(
        &name,
        &with_vnc(&guest(&name, &hostdev("0002:01:00.0", 0, 5)), VNC),
    );
    let before = w.definition(&name);
    let line = w.log.wait_for(&[": warned ", &format!("domain={name} ")]);
    assert!(
        line.contains("op=define rule=hostdev-on-default-phb")
            && line.contains("severity=error action=warn:")
            && line.starts_with("<28>"),
        "daemon.warning, the hook's fields: {line}"
    );
    w.quiesce(&events);
    assert_eq!(events.defined(&name), ["Added"]);
    assert_eq!(w.definition(&name), before);
    assert_eq!(w.errors(&before).len(), 1);
}

#[test]
#[ignore = "needs libvirtd"]
fn a_libvirtd_restart_does_not_end_the_watcher_and_the_next_define_is_handled() {
    let _one = serial();
    let mut w = World::new("fix");
    w.start_watcher();
    let connected = || w.log.matching(&[": connected "]).len();
    assert_eq!(connected(), 1);

    let restart = Command::new(repo().join("tests/e2e/libvirtd-sandbox.sh"))
        .arg("restart")
        .output()
        .unwrap();
    assert!(restart.status.success(), "sandbox restart: {}", text(&restart));
    w.log.wait_for(&[": disconnected "]);
    eventually("the watcher to reconnect", || (connected() == 2).then_some(()));
    w.assert_watcher_running();
    // Reconnected and audited: the same judging as at start (its line follows `connected`).
    eventually("the audit after reconnecting", || {
        (w.log.matching(&[": audited "]).len() == 2).then_some(())
    });

    let name = format!("{PREFIX}restart");
    w.define(&name, &guest(&name, &hostdev("0002:02:00.0", 0, 7)));
    w.log.wait_for(&[": redefined ", &format!("domain={name} ")]);
    assert_eq!(w.errors(&w.definition(&name)), Vec::<String>::new());
    // READY=1 once; systemd is told the status of the reconnect, not a second READY. Stopped
    // first, so that every state it sent is in (`take` waits for what was sent).
    assert!(w.stop_watcher().success());
    let states = w.notify.take();
    assert_eq!(
        states.iter().filter(|m| m.contains("READY=1")).count(),
        1,
        "{states:#?}"
    );
}

/// `systemctl reload`: SIGHUP reads the policy file again. A clean file turns `warn` into `fix`
/// for the next definition; a broken one is logged and changes nothing; systemd hears
/// RELOADING=1, then READY=1, each time.
#[test]
#[ignore = "needs libvirtd"]
fn sighup_applies_a_clean_policy_and_keeps_the_previous_one_when_the_new_one_is_broken() {
    let _one = serial();
    let mut w = World::new("warn");
    w.start_watcher();
    let name = format!("{PREFIX}reload");
    // A UUID of its own, so that defining it again updates it.
    let bad = guest(&name, &hostdev("0002:01:00.0", 0, 5)).replacen(
        "<memory",
        "<uuid>5d2c1a8e-7b3f-4e21-9c4d-000000e2e002</uuid>\n  <memory",
        1,
    );
    let mentions = format!("domain={name} ");

    w.define(&name, &bad);
    let before = w.definition(&name);
    w.log.wait_for(&[": warned ", &mentions, "action=warn:"]);
    assert_eq!(w.definition(&name), before, "redefined under action=warn");
    assert_eq!(w.errors(&before).len(), 1);

    let line = w.reload("[watch]\naction = \"fix\"\n", ": reloaded ");
    assert!(
        line.contains("reloaded uri=qemu:///system action=fix changed=1: ")
            && line.ends_with(" read again; watch.action: warn -> fix")
            && line.starts_with("<29>"),
        "daemon.notice, the new action and what changed: {line}"
    );
    eventually("READY=1 after the reload", || {
        (w.notify.matching(&["READY=1"]).len() == 2).then_some(())
    });
    let states = w.notify.all();
    let reloading = states.iter().position(|m| m.contains("RELOADING=1"));
    let ready_again = states.iter().rposition(|m| m.contains("READY=1"));
    assert!(
        matches!((reloading, ready_again), (Some(r), Some(a)) if r < a),
        "RELOADING=1 before the second READY=1: {states:#?}"
    );
    assert!(
        states[reloading.unwrap()].contains("MONOTONIC_USEC="),
        "{states:#?}"
    );
    w.assert_watcher_running();

    // The same definition again: now it is fixed.
    w.define(&name, &bad);
    w.log.wait_for(&[": redefined ", &mentions]);
    assert_eq!(w.errors(&w.definition(&name)), Vec::<String>::new());

    // A broken file: its mistake is logged, the watcher goes on with action=fix.
    let kept = w.reload("[watch]\naction = fix\n", ": not-reloaded ");
    assert!(
        kept.contains("not-reloaded uri=qemu:///system action=fix mistakes=1: ")
            && kept.ends_with("has 1 mistake; the previous policy stays in force")
            && kept.starts_with("<27>"),
        "{kept}"
    );
    let errors = w.log.matching(&[": config-error op=reload: "]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let policy = w.work.path().join("phbguard.toml");
    assert!(
        errors[0].contains(&format!("{}:4: not valid TOML", policy.display())),
        "the file and the line: {errors:#?}"
    );
    eventually("READY=1 after the refused reload", || {
        (w.notify.matching(&["READY=1"]).len() == 3).then_some(())
    });
    w.assert_watcher_running();
    w.define(&name, &bad);
    eventually("the second fix", || {
        (w.log.matching(&[": redefined ", &mentions]).len() == 2).then_some(())
    });
    assert_eq!(w.errors(&w.definition(&name)), Vec::<String>::new());
    assert_eq!(w.log.matching(&[": reloaded "]).len(), 1);

    assert_eq!(w.stop_watcher().code(), Some(0), "{}", w.stderr());
    w.log.wait_for(&[": stopped ", "signal=SIGTERM"]);
}

/// A hot-plugged device is judged in the running guest's live definition. A PCI hostdev
/// cannot be hot-plugged here (no IOMMU, no VFIO on the sandbox: libvirt refuses it before
/// QEMU sees it), so the guest runs with a pci-bridge and a virtio-scsi controller is plugged
/// behind it; what the watcher logs is the rule the live definition breaks.
#[test]
#[ignore = "needs libvirtd"]
fn a_hotplug_into_a_running_guest_is_judged_and_logged() {
    let _one = serial();
    let mut w = World::new("warn");
    w.start_watcher();
    let name = format!("{PREFIX}hotplug");
    let bridge = "<controller type='pci' index='1' model='pci-bridge'><address type='pci' \
                  domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></controller>";
    w.define(&name, &guest(&name, bridge));
    virsh_ok(&["start", &name]);
    // What the define itself was told: one bridge, warned at define time.
    w.log.wait_for(&[
        ": warned ",
        &format!("domain={name} "),
        "op=define rule=pci-bridge-on-pseries",
    ]);

    let hostdev_file = w.work.path().join("hostdev.xml");
    std::fs::write(&hostdev_file, hostdev("0002:01:00.0", 1, 3)).unwrap();
    let plugged = virsh(&["attach-device", &name, hostdev_file.to_str().unwrap(), "--live"]);
    if plugged.status.success() {
        // A host that can pass devices through: the hostdev behind a bridge is the finding.
        w.log.wait_for(&[
            ": warned ",
            &format!("domain={name} "),
            "op=hotplug",
            "rule=hostdev-behind-bridge",
        ]);
    } else {
        assert!(
            text(&plugged).contains("host doesn't support passthrough of host PCI devices"),
            "{}",
            text(&plugged)
        );
    }

    let scsi = w.work.path().join("scsi.xml");
    std::fs::write(
        &scsi,
        "<controller type='scsi' index='0' model='virtio-scsi'><address type='pci' domain='0x0000' \
         bus='0x01' slot='0x02' function='0x0'/></controller>",
    )
    .unwrap();
    virsh_ok(&["attach-device", &name, scsi.to_str().unwrap(), "--live"]);
    let line = w.log.wait_for(&[
        ": warned ",
        &format!("domain={name} "),
        "op=hotplug",
        "added=scsi0",
    ]);
    // A bridge is a warning-level rule: the hot-plug is when the admin hears of it again.
    assert!(
        line.contains("rule=pci-bridge-on-pseries") && line.contains("severity=warning:"),
        "{line}"
    );
    assert!(line.contains("virsh detach-device --live"), "{line}");
    assert!(w.stop_watcher().success());
}

/// The spare PHBs of a definition libvirt holds: (index, NUMA node) of each.
fn spares_of(xml: &str) -> Vec<(u32, Option<u32>)> {
    let domain = phbguard_core::parse_domain(xml.as_bytes()).unwrap();
    let facts = phbguard_core::host::Facts::gather(&domain, &phbguard_core::host::StaticHost::new());
    phbguard_core::spare::spare_phbs(&domain, &facts)
        .unwrap()
        .iter()
        .map(|s| (s.index, s.node))
        .collect()
}

/// `[fix] spare_phbs = 2` with `action = "fix"`: every guest the watcher fixes gets two empty
/// PHBs, one per guest NUMA cell, in the same one redefine; a guest that keeps the rules
/// without spares is not redefined for them.
#[test]
#[ignore = "needs libvirtd"]
fn a_fix_keeps_the_policys_spare_phbs_and_a_compliant_guest_is_left_without() {
    let _one = serial();
    let mut w = World::new("fix");
    w.write_policy("[watch]\naction = \"fix\"\n[fix]\nspare_phbs = 2\n");
    let events = LifecycleEvents::listen(w.work.path());
    w.start_watcher();

    let bad = format!("{PREFIX}spares-bad");
    let hostdevs = format!(
        "{}{}",
        hostdev("0002:01:00.0", 0, 5),
        hostdev("0002:02:00.0", 0, 6)
    );
    w.define(&bad, &with_numa_cells(&guest(&bad, &hostdevs), 2));
    let line = w
        .log
        .wait_for(&[": redefined ", &format!("domain={bad} "), "op=define"]);
    assert!(
        line.contains("changes=6: added PHB index 1 target 1; added PHB index 2 target 2; added spare PHB index 3 target 3 node 0; added spare PHB index 4 target 4 node 1;"),
        "{line}"
    );
    let after = w.definition(&bad);
    assert_eq!(w.errors(&after), Vec::<String>::new(), "{after}");
    assert_eq!(spares_of(&after), [(3, Some(0)), (4, Some(1))], "{after}");

    let good = format!("{PREFIX}spares-good");
    w.define(
        &good,
        &guest(&good, &format!("{}{}", phb(1, 1), hostdev("0002:01:00.0", 1, 1))),
    );
    let before = w.definition(&good);
    assert_eq!(spares_of(&before), []);
    fixed_once_and_left_alone(&mut w, &events, (&bad, &after), (&good, &before));
}

/// Each hot-plug gets one line saying where the device landed and what spares are left. Under
/// TCG QEMU hot-plugs a virtio RNG (no PCI hostdev here): with spare PHBs there libvirt puts
/// one without an address on the default PHB while it has a free slot, and on the first spare
/// once it is full (an emulated device's isolation group is an empty PHB's too,
/// `virDomainPCIAddressGetNextAddr`); a PHB itself cannot be hot-plugged.
#[test]
#[ignore = "needs libvirtd"]
fn a_hotplug_line_says_where_the_device_landed_and_the_spares_left() {
    let _one = serial();
    let mut w = World::new("warn");
    w.start_watcher();
    let name = format!("{PREFIX}spares-hotplug");
    // The default PHB with slots 1..30 taken, and two spare PHBs.
    let mut devices = format!("{}{}", phb(1, 1), phb(2, 2));
    for slot in 1..=30 {
        devices.push_str(&rng(Some((0, slot))));
    }
    w.define(&name, &guest(&name, &devices));
    virsh_ok(&["start", &name]);

    let plug = |what: &str, file: &str| -> std::process::Output {
        let path = w.work.path().join(file);
        std::fs::write(&path, what).unwrap();
        virsh(&["attach-device", &name, path.to_str().unwrap(), "--live"])
    };
    let hotplugged = |n: usize| {
        eventually("the hotplugged lines", || {
            let lines = w
                .log
                .matching(&[": hotplugged ", &format!("domain={name} "), "op=hotplug"]);
            (lines.len() >= n).then_some(lines)
        })
    };
    assert!(plug(&rng(None), "rng-a.xml").status.success());
    let first = hotplugged(1).remove(0);
    assert!(
        first.contains(" address=0000:00:1f.0 phb=0 spares_before=2 spares_left=2: rng ")
            && first.ends_with(" landed at 0000:00:1f.0 on the default PHB; 2 spare PHBs left"),
        "{first}"
    );
    assert!(plug(&rng(None), "rng-b.xml").status.success());
    let second = hotplugged(2).remove(1);
    assert!(
        second.contains(" address=0000:01:01.0 phb=1 spares_before=2 spares_left=1: rng ")
            && second.ends_with(" took spare PHB index 1 target 1 at 0000:01:01.0; 1 spare PHB left"),
        "{second}"
    );
    // Why spares have to be in the definition before the guest starts.
    let refused = plug(
        "<controller type='pci' index='3' model='pci-root'><model name='spapr-pci-host-bridge'/>\
         <target index='3'/></controller>",
        "phb.xml",
    );
    assert!(
        !refused.status.success() && text(&refused).contains("'pci' controller cannot be hot plugged"),
        "{}",
        text(&refused)
    );
    assert_eq!(spares_of(&virsh_ok(&["dumpxml", &name])), [(2, None)]);
    // audit counts the live definition's (what QEMU has) apart from the persistent one's.
    let audit = phbguard(&["audit", "-c", URI, "--format", "json", "--config"])
        .arg(w.work.path().join("phbguard.toml"))
        .output();
    let json: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let counts: Vec<String> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["domain"] == name.as_str())
        .map(|r| format!("{} {}", r["definition"].as_str().unwrap(), r["spare_phbs"]))
        .collect();
    assert_eq!(counts, ["persistent 2", "live 1"], "{}", text(&audit));
    assert!(w.stop_watcher().success());
}

/// The service contract without a daemon: libvirt's test driver, READY=1 once connected, then
/// SIGTERM → STOPPING=1 and exit 0. Without `-c`: the URI of `$LIBVIRT_DEFAULT_URI` is logged at
/// start, and the one libvirt reports (`virConnectGetURI`) on every line once connected.
#[test]
fn sigterm_stops_the_watcher_with_exit_0_after_ready() {
    let work = tempfile::tempdir().unwrap();
    let log = Datagrams::bind(&work.path().join("log"));
    let notify = Datagrams::bind(&work.path().join("notify"));
    let policy = work.path().join("phbguard.toml");
    std::fs::write(&policy, format!("syslog_socket = \"{}\"\n", log.path.display())).unwrap();
    let child = phbguard(&["watch", "--config"])
        .arg(&policy)
        .env("LIBVIRT_DEFAULT_URI", "test:///default")
        .env("NOTIFY_SOCKET", &notify.path)
        .spawn();
    notify.wait_for(&["READY=1"]);
    log.wait_for(&[": audited ", "1 defined domain"]);
    kill("TERM", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sent before the exit, but the receiving threads may not have read them yet.
    notify.wait_for(&["STOPPING=1"]);
    log.wait_for(&[": stopped "]);
    assert_eq!(notify.matching(&["STOPPING=1"]).len(), 1);
    let lines: Vec<String> = log.all();
    assert!(lines[0].contains(" phbguard[") && lines[0].contains("started uri=test:///default action=warn"));
    assert!(
        lines
            .last()
            .unwrap()
            .contains("stopped uri=test:///default signal=SIGTERM"),
        "{lines:#?}"
    );
    assert!(
        log.wait_for(&[": connected "])
            .contains("connected uri=test:///default"),
        "{lines:#?}"
    );
    // Run by hand (no JOURNAL_STREAM), stderr gets the same lines.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("phbguard: started uri=test:///default"),
        "{stderr}"
    );
}

/// SIGHUP without a daemon (libvirt's test driver): the reload's lines and systemd's states;
/// a policy whose sysfs_root is not a directory is refused on reload as it is at start, but
/// does not stop a watcher that is running.
#[test]
fn sighup_reloads_on_the_test_driver_and_a_bad_sysfs_root_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let log = Datagrams::bind(&work.path().join("log"));
    let notify = Datagrams::bind(&work.path().join("notify"));
    let policy = work.path().join("phbguard.toml");
    let write = |rest: &str| {
        let text = format!("syslog_socket = \"{}\"\n{rest}", log.path.display());
        std::fs::write(&policy, text).unwrap();
    };
    write("");
    let mut child = phbguard(&["watch", "-c", "test:///default", "--config"])
        .arg(&policy)
        .env("NOTIFY_SOCKET", &notify.path)
        .spawn();
    notify.wait_for(&["READY=1"]);

    write("exempt = [\"db01\"]\n[watch]\naction = \"fix\"\n");
    kill("HUP", child.id());
    let line = log.wait_for(&[": reloaded "]);
    assert!(
        line.contains(&format!(
            "reloaded uri=test:///default action=fix changed=2: {} read again; watch.action: \
             warn -> fix; exempt: [] -> [\"db01\"]",
            policy.display()
        )),
        "{line}"
    );
    let readies = || notify.matching(&["READY=1"]).len();
    eventually("READY=1 after the reload", || (readies() == 2).then_some(()));

    write("sysfs_root = \"/nonexistent/phbguard-sys\"\n[watch]\naction = \"warn\"\n");
    kill("HUP", child.id());
    let kept = log.wait_for(&[": not-reloaded "]);
    assert!(kept.contains("action=fix mistakes=1:"), "{kept}");
    let error = log.wait_for(&[": config-error "]);
    assert!(
        error.contains(&format!(
            "config-error op=reload: {}:2: sysfs_root = \"/nonexistent/phbguard-sys\": ",
            policy.display()
        )),
        "{error}"
    );
    eventually("READY=1 after the refused reload", || {
        (readies() == 3).then_some(())
    });
    let states = notify.all();
    let order: Vec<&str> = states
        .iter()
        .filter_map(|m| m.lines().find(|l| *l == "READY=1" || *l == "RELOADING=1"))
        .collect();
    assert_eq!(
        order,
        ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1"],
        "{states:#?}"
    );
    assert!(child.try_wait().unwrap().is_none(), "the watcher exited");

    kill("TERM", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A policy file whose sysfs_root is not a directory: the watcher would judge every host device
/// "not on this host", so it does not start; it says why (err level) and exits 2.
#[test]
fn a_sysfs_root_that_is_not_a_directory_stops_the_watcher_from_starting() {
    let work = tempfile::tempdir().unwrap();
    let log = Datagrams::bind(&work.path().join("log"));
    let notify = Datagrams::bind(&work.path().join("notify"));
    let policy = work.path().join("phbguard.toml");
    std::fs::write(
        &policy,
        format!(
            "syslog_socket = \"{}\"\nsysfs_root = \"/nonexistent/phbguard-sys\"\n",
            log.path.display()
        ),
    )
    .unwrap();
    let mut child = phbguard(&["watch", "-c", "test:///default", "--config"])
        .arg(&policy)
        .env("NOTIFY_SOCKET", &notify.path)
        .spawn();
    // It ends by itself, or it has started (READY=1): then it is stopped, and the test fails.
    let started = eventually("the watcher to exit or say READY=1", || {
        if child.try_wait().unwrap().is_some() {
            Some(false)
        } else {
            (!notify.matching(&["READY=1"]).is_empty()).then_some(true)
        }
    });
    if started {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!started, "the watcher started: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = log.wait_for(&[": config-error "]);
    // <27>: facility daemon (3) * 8 + severity err (3).
    assert!(line.starts_with("<27>"), "{line}");
    assert!(
        line.contains(&format!(
            "config-error op=watch: {}:2: sysfs_root = \"/nonexistent/phbguard-sys\": ",
            policy.display()
        )),
        "{line}"
    );
    assert!(line.ends_with("; not starting"), "{line}");
    assert!(log.matching(&[": started "]).is_empty(), "{:#?}", log.all());
    assert!(stderr.contains("not starting"), "{stderr}");
    assert!(notify.matching(&["READY=1"]).is_empty());
}
