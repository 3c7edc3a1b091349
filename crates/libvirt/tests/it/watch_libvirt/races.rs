//! `phbguard watch` with `action = "fix"` on a busy host, on the real libvirtd: parallel define
//! storms, users defining and undefining guests while the watcher fixes them (in one `virsh`
//! and in separate ones, the second operation aimed at the moment the watcher acts), a SIGTERM
//! and a libvirtd restart in the middle. What must hold: no user's change is lost without an
//! err line naming the guest, no guest undefined by a user is left defined, every guest ends
//! compliant, and every define libvirt accepted from the watcher is logged (`redefined`), counted
//! against the DEFINED events an independent `virsh event` saw.
//!
//! Bounded: `PHBGUARD_RACE_ROUNDS` race rounds (default 108) and `PHBGUARD_RACE_STORM` storm
//! guests (default 100), each phase waiting for lines and events, never for a fixed time. The
//! figures (latency, RSS, what the races hit) go to stderr (`--nocapture`); docs/watch.md
//! reports them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::ChildStdin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use phbguard_testkit::PATIENCE;
use virt::connect::Connect;

use super::*;

/// Race rounds run at once, each on a guest of its own.
const ACTORS: usize = 6;
/// The parallel `virsh` processes of a storm.
const STORM_PROCESSES: usize = 4;

fn scale(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A reproducible stream of numbers for the delays (a linear congruential generator).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// A guest with one hostdev on the default PHB (hostdev-on-default-phb), its own UUID and
/// `mib` MiB of memory: defining it again with another size is a change of the user's that
/// must not be lost.
fn race_guest(name: &str, n: usize, mib: u32) -> String {
    guest(name, &hostdev("0002:01:00.0", 0, 5))
        .replacen(
            "<memory",
            &format!("<uuid>6e3a7c1d-0b5e-4f60-8a2d-{n:012x}</uuid>\n  <memory"),
            1,
        )
        .replace("unit='MiB'>512<", &format!("unit='MiB'>{mib}<"))
}

/// What a race round does; the second operation comes from the same `virsh` right after the
/// first, from the same `virsh` shell after a delay, or from a second `virsh` after a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    TwoDefinesOneVirsh,
    TwoDefinesPaced,
    TwoDefinesSeparate,
    UndefineOneVirsh,
    UndefinePaced,
    UndefineSeparate,
    TwoDefinesUndefinePaced,
}

impl Kind {
    fn of(round: usize) -> Kind {
        const KINDS: [Kind; 9] = [
            Kind::TwoDefinesOneVirsh,
            Kind::TwoDefinesPaced,
            Kind::TwoDefinesSeparate,
            Kind::UndefineOneVirsh,
            Kind::UndefinePaced,
            Kind::UndefineSeparate,
            Kind::TwoDefinesUndefinePaced,
            Kind::TwoDefinesPaced,
            Kind::UndefinePaced,
        ];
        KINDS[round % KINDS.len()]
    }

    fn ends_undefined(self) -> bool {
        matches!(
            self,
            Kind::UndefineOneVirsh
                | Kind::UndefinePaced
                | Kind::UndefineSeparate
                | Kind::TwoDefinesUndefinePaced
        )
    }
}

/// What one round's user did, as libvirt accepted it.
struct Round {
    name: String,
    kind: Kind,
    defines: usize,
    undefines: usize,
}

/// `virsh -c URI "CMD; CMD"`: how many defines and undefines it reported done.
fn one_virsh(commands: &str) -> (usize, usize) {
    let out = Command::new("timeout")
        .args(["120", "virsh", "-c", URI, commands])
        .output()
        .expect("virsh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let defines = stdout.matches("' defined from ").count();
    let undefines = stdout.matches("' has been undefined").count();
    (defines, undefines)
}

/// A `virsh` shell fed one command at a time: each is waited for (an `echo` mark after it
/// says it is done) before the next is sent, so the delay between two is the test's.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    marks: usize,
}

impl Shell {
    fn open() -> Shell {
        let mut child = Command::new("virsh")
            .args(["-c", URI])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("virsh runs");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let stdin = child.stdin.take().unwrap();
        Shell {
            child,
            stdin,
            lines,
            marks: 0,
        }
    }

    /// Runs `command`; whether a line of its output contains `done`.
    fn run(&mut self, command: &str, done: &str) -> bool {
        self.marks += 1;
        let mark = format!("phbguard-mark-{}", self.marks);
        writeln!(self.stdin, "{command}\necho {mark}").unwrap();
        self.stdin.flush().unwrap();
        let mut ok = false;
        loop {
            let line = self
                .lines
                .recv_timeout(PATIENCE)
                .expect("virsh answers within the test's patience");
            ok |= line.contains(done);
            if line == mark {
                return ok;
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

/// `virsh define FILE` in a process of its own: whether libvirt accepted it.
fn separate_define(file: &Path) -> bool {
    let out = virsh(&["define", file.to_str().unwrap()]);
    out.status.success()
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// One race round on guest `n`: a non-compliant definition (512 MiB), then what `kind` says,
/// the second operation `delay` ms after the first returned.
fn race(work: &Path, n: usize, kind: Kind, aim: Aim, dice: &mut Dice) -> Round {
    let name = format!("{PREFIX}race-{n}");
    let a = work.join(format!("race-{n}-a.xml"));
    let b = work.join(format!("race-{n}-b.xml"));
    std::fs::write(&a, race_guest(&name, n, 512)).unwrap();
    std::fs::write(&b, race_guest(&name, n, 768)).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    // Aimed at the moment the watcher defines the guest: from a little before it (the
    // watcher's last look) to a little after.
    let paced = aim.react - 20 + dice.below(30);
    let separate = (aim.react - 20 + dice.below(30)).saturating_sub(aim.virsh);
    let (mut defines, mut undefines) = (0, 0);
    let count = |ok: bool, which: &mut usize| *which += usize::from(ok);
    match kind {
        Kind::TwoDefinesOneVirsh => {
            (defines, undefines) = one_virsh(&format!("define {a}; define {b}"));
        }
        Kind::UndefineOneVirsh => {
            (defines, undefines) = one_virsh(&format!("define {a}; undefine {name}"));
        }
        Kind::TwoDefinesPaced | Kind::UndefinePaced | Kind::TwoDefinesUndefinePaced => {
            let mut shell = Shell::open();
            count(shell.run(&format!("define {a}"), "' defined from "), &mut defines);
            sleep_ms(paced);
            if kind == Kind::UndefinePaced {
                count(
                    shell.run(&format!("undefine {name}"), "has been undefined"),
                    &mut undefines,
                );
            } else {
                count(shell.run(&format!("define {b}"), "' defined from "), &mut defines);
            }
            if kind == Kind::TwoDefinesUndefinePaced {
                sleep_ms(aim.react - 20 + dice.below(30));
                count(
                    shell.run(&format!("undefine {name}"), "has been undefined"),
                    &mut undefines,
                );
            }
        }
        Kind::TwoDefinesSeparate => {
            count(separate_define(Path::new(a)), &mut defines);
            sleep_ms(separate);
            count(separate_define(Path::new(b)), &mut defines);
        }
        Kind::UndefineSeparate => {
            count(separate_define(Path::new(a)), &mut defines);
            sleep_ms(separate);
            count(virsh(&["undefine", &name]).status.success(), &mut undefines);
        }
    }
    Round {
        name,
        kind,
        defines,
        undefines,
    }
}

/// A storm of `guests` non-compliant guests from `STORM_PROCESSES` threads at once: each a
/// `virsh "define F1; define F2; ..."` (a burst: as fast as libvirtd defines), or, `paced`,
/// each define a `virsh` process of its own (as scripts and people define). Every guest's name
/// and how many of its defines libvirt accepted.
fn storm(work: &Path, prefix: &str, guests: usize, paced: bool) -> HashMap<String, usize> {
    let names: Vec<String> = (0..guests).map(|i| format!("{PREFIX}{prefix}-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        // Two hostdevs on the default PHB; every fourth guest with a VNC password to keep.
        let devices = format!(
            "{}{}",
            hostdev("0002:01:00.0", 0, 5),
            hostdev("0002:02:00.0", 0, 6)
        );
        let xml = if i % 4 == 0 {
            with_vnc(&guest(name, &devices), VNC)
        } else {
            guest(name, &devices)
        };
        std::fs::write(work.join(format!("{name}.xml")), xml).unwrap();
    }
    let file = |n: &String| work.join(format!("{n}.xml"));
    let mut accepted = HashMap::new();
    std::thread::scope(|s| {
        let runs: Vec<_> = names
            .chunks(guests.div_ceil(STORM_PROCESSES))
            .map(|chunk| {
                s.spawn(move || {
                    if paced {
                        return chunk
                            .iter()
                            .filter(|n| separate_define(&file(n)))
                            .map(|n| format!("Domain '{n}' defined from\n"))
                            .collect();
                    }
                    let commands: Vec<String> = chunk
                        .iter()
                        .map(|n| format!("define {}", file(n).display()))
                        .collect();
                    let out = Command::new("timeout")
                        .args(["300", "virsh", "-c", URI, &commands.join("; ")])
                        .output()
                        .expect("virsh runs");
                    String::from_utf8_lossy(&out.stdout).into_owned()
                })
            })
            .collect();
        for run in runs {
            let stdout = run.join().unwrap();
            for name in &names {
                let n = stdout.matches(&format!("Domain '{name}' defined from")).count();
                *accepted.entry(name.clone()).or_insert(0) += n;
            }
        }
    });
    accepted
}

/// Removes every guest of the test when it ends, passed or failed.
struct Cleanup(Arc<Mutex<Vec<String>>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(conn) = Connect::open(Some(URI)) else {
            return;
        };
        for name in self.0.lock().unwrap().iter() {
            if let Ok(dom) = conn.lookup_domain_by_name(name) {
                let _ = dom.destroy();
                let _ = dom.undefine();
            }
        }
    }
}

/// The guest's persistent definition with secrets, None when it is not defined.
fn definition(conn: &Connect, name: &str) -> Option<String> {
    let dom = conn.lookup_domain_by_name(name).ok()?;
    dom.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_SECURE)
        .ok()
}

/// The watcher's `VmRSS` and `VmHWM` (peak), in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The CPU time the process used so far (user + system), in ms.
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's ")": state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    ticks * 10
}

/// Milliseconds of the day of a `virsh event --timestamp` line (`2026-12-02 11:36:52.246+0000:`).
fn millis(line: &str) -> Option<u64> {
    let time = line.get(11..23)?;
    let (h, rest) = time.split_once(':')?;
    let (m, s) = rest.split_once(':')?;
    let (s, ms) = s.split_once('.')?;
    let day: u64 = line.get(8..10)?.parse().ok()?;
    Some(
        (((day * 24 + h.parse::<u64>().ok()?) * 60 + m.parse::<u64>().ok()?) * 60 + s.parse::<u64>().ok()?)
            * 1000
            + ms.parse::<u64>().ok()?,
    )
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// The lifecycle events `virsh event` printed for `name`: ("Defined Added", ms), ...
fn lifecycle(events: &[String], name: &str) -> Vec<(String, u64)> {
    let marker = format!("for domain '{name}': ");
    events
        .iter()
        .filter_map(|l| {
            let (_, what) = l.split_once(&marker)?;
            Some((what.to_owned(), millis(l).unwrap_or(0)))
        })
        .collect()
}

/// Lines that start with `: VERB ` and name `name`.
fn named<'l>(lines: &'l [String], verb: &str, name: &str) -> Vec<&'l String> {
    let verb = format!(": {verb} ");
    let domain = format!("domain={name} ");
    lines
        .iter()
        .filter(|l| l.contains(&verb) && l.contains(&domain))
        .collect()
}

/// Stops the watcher running now (SIGTERM, exit 0, `stopped`), starts the next, and waits for
/// its audit of every defined guest.
fn next_watcher(w: &mut World) {
    let stopped = w.log.matching(&[": stopped "]).len();
    let status = w.stop_watcher();
    assert_eq!(status.code(), Some(0), "{}", w.stderr());
    eventually("the stopped line", || {
        (w.log.matching(&[": stopped "]).len() > stopped).then_some(())
    });
    let audited = w.log.matching(&[": audited "]).len();
    w.start_watcher();
    eventually("the next watcher's audit", || {
        (w.log.matching(&[": audited "]).len() > audited).then_some(())
    });
}

/// Once this returns, `virsh event` has printed every event of what happened before: a
/// guest defined and undefined, and its Undefined seen (one connection's events come in order).
fn barrier(w: &World, events: &LifecycleEvents, n: usize) {
    let name = format!("{PREFIX}barrier-{n}");
    let file = w.work.path().join(format!("barrier-{n}.xml"));
    std::fs::write(&file, guest(&name, "")).unwrap();
    virsh_ok(&["define", file.to_str().unwrap()]);
    virsh_ok(&["undefine", &name]);
    eventually("virsh event to see the barrier", || {
        lifecycle(&events.all(), &name)
            .iter()
            .any(|(what, _)| what.starts_with("Undefined"))
            .then_some(())
    });
}

/// When the watcher acts, measured on this machine and this daemon: races aimed at it.
#[derive(Clone, Copy, Debug)]
struct Aim {
    /// From a user's define returning to the watcher's define of the guest (the DEFINED
    /// events' timestamps), ms.
    react: u64,
    /// What a `virsh define` in a process of its own takes, start to end, ms.
    virsh: u64,
}

/// Defines a few non-compliant guests one at a time, each in a `virsh` of its own, and waits
/// for the watcher to fix each: the median of each delay.
fn calibrate(w: &World, events: &LifecycleEvents, created: &Mutex<Vec<String>>) -> Aim {
    let (mut react, mut virsh_ms) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let name = format!("{PREFIX}aim-{i}");
        created.lock().unwrap().push(name.clone());
        let file = w.work.path().join(format!("{name}.xml"));
        std::fs::write(&file, guest(&name, &hostdev("0002:01:00.0", 0, 5))).unwrap();
        let t = Instant::now();
        assert!(separate_define(&file), "{name}");
        virsh_ms.push(t.elapsed().as_millis() as u64);
        let life = eventually("the watcher's fix of a calibration guest", || {
            let life = lifecycle(&events.all(), &name);
            (life.len() >= 2).then_some(life)
        });
        react.push(life[1].1.saturating_sub(life[0].1));
    }
    react.sort_unstable();
    virsh_ms.sort_unstable();
    let aim = Aim {
        react: percentile(&react, 50).max(20),
        virsh: percentile(&virsh_ms, 50),
    };
    eprintln!("watch races: aimed at {aim:?} (measured {react:?}, virsh {virsh_ms:?})");
    aim
}

#[test]
#[ignore = "needs libvirtd"]
fn under_storms_races_sigterm_and_a_restart_nothing_is_lost_silently() {
    let _one = serial();
    // "Domain not found" and the like are answers here, not something for stderr.
    virt::error::clear_error_callback();
    let rounds = scale("PHBGUARD_RACE_ROUNDS", 108);
    let storm_size = scale("PHBGUARD_RACE_STORM", 100);
    let mut w = World::new("fix");
    let created = Arc::new(Mutex::new(Vec::new()));
    let (mut first_rss, mut first_cpu) = ((0, 0), 0);
    let _cleanup = Cleanup(Arc::clone(&created));
    let conn = Connect::open(Some(URI)).unwrap();
    let events = LifecycleEvents::listen(w.work.path());
    w.start_watcher();

    // Phase 1: a burst of defines, with SIGTERM to the watcher once it has fixed half of
    // them (the next watcher takes over); a paced storm; then the race rounds, aimed at the
    // moment the watcher acts.
    let work = w.work.path().to_path_buf();
    for prefix in ["burst", "storm"] {
        created
            .lock()
            .unwrap()
            .extend((0..storm_size).map(|i| format!("{PREFIX}{prefix}-{i}")));
    }
    let fixed_of = |prefix: &str| {
        events
            .all()
            .iter()
            .filter(|l| l.contains(&format!("{PREFIX}{prefix}-")) && l.ends_with("Defined Updated"))
            .count()
    };
    let burst_started = Instant::now();
    let burst = std::thread::scope(|s| {
        let stormer = s.spawn(|| storm(&work, "burst", storm_size, false));
        eventually("the watcher to fix half the burst", || {
            (fixed_of("burst") >= storm_size / 2).then_some(())
        });
        first_rss = rss(w.watcher_pid());
        first_cpu = cpu_ms(w.watcher_pid());
        next_watcher(&mut w);
        stormer.join().unwrap()
    });
    eventually("the burst fixed", || {
        (fixed_of("burst") == storm_size).then_some(())
    });
    let burst_took = burst_started.elapsed();
    let cpu_before = cpu_ms(w.watcher_pid());
    let stormed = storm(&work, "storm", storm_size, true);
    eventually("the storm fixed", || {
        (fixed_of("storm") == storm_size).then_some(())
    });
    let storm_cpu = cpu_ms(w.watcher_pid()) - cpu_before;
    let aim = calibrate(&w, &events, &created);
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    created
        .lock()
        .unwrap()
        .extend((0..rounds).map(|n| format!("{PREFIX}race-{n}")));
    let raced: Vec<Round> = std::thread::scope(|s| {
        let actors: Vec<_> = (0..ACTORS)
            .map(|actor| {
                let (work, next) = (&work, &next);
                s.spawn(move || {
                    let mut dice = Dice(0x5eed + actor as u64);
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= rounds {
                            return mine;
                        }
                        mine.push(race(work, n, Kind::of(n), aim, &mut dice));
                    }
                })
            })
            .collect();
        actors.into_iter().flat_map(|a| a.join().unwrap()).collect()
    });
    let second_rss = rss(w.watcher_pid());
    let phase1 = started.elapsed();
    // What a stop drops (guests still settling) the next watcher's audit judges: after it,
    // no watcher runs, and virsh event has seen everything.
    next_watcher(&mut w);
    let status = w.stop_watcher();
    assert_eq!(status.code(), Some(0), "{}", w.stderr());
    barrier(&w, &events, 1);
    let lines = w.log.all();
    let seen = events.all();

    // Routine races are no internal errors, and every guest here can be fixed: an unfixable
    // line would blame libvirt for a user's define.
    let wrong: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(": internal-error ") || l.contains(": unfixable "))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Every define libvirt accepted from a watcher is logged, and every undefine of a guest it
    // had re-created: what virsh event saw, less what the test's own virsh did.
    let count = |name: &str, what: &str| {
        lifecycle(&seen, name)
            .iter()
            .filter(|(w, _)| w.starts_with(what))
            .count()
    };
    let mut watcher_defines = 0;
    let mut undone = 0;
    let aims: Vec<String> = (0..5).map(|i| format!("{PREFIX}aim-{i}")).collect();
    let users: Vec<(&String, usize, usize)> = burst
        .iter()
        .chain(&stormed)
        .map(|(name, n)| (name, *n, 0))
        .chain(aims.iter().map(|name| (name, 1, 0)))
        .chain(raced.iter().map(|r| (&r.name, r.defines, r.undefines)))
        .collect();
    for (name, defines, undefines) in &users {
        let by_watcher = count(name, "Defined ") - defines;
        let redefined = named(&lines, "redefined", name).len();
        assert_eq!(
            by_watcher,
            redefined,
            "{name}: {by_watcher} defines by a watcher, {redefined} redefined lines: {:#?} {:#?}",
            lifecycle(&seen, name),
            named(&lines, "", name)
        );
        let removed = named(&lines, "recreated", name)
            .iter()
            .filter(|l| l.ends_with("phbguard has undefined it again"))
            .count();
        assert_eq!(
            count(name, "Undefined ") - undefines,
            removed,
            "{name}: undefines by a watcher against recreated lines: {:#?}",
            named(&lines, "", name)
        );
        watcher_defines += redefined;
        undone += removed;
    }

    // Every burst and storm guest compliant, its VNC password kept, fixed once: Added, then
    // Updated. The latency of the paced storm's fixes.
    let mut latencies = Vec::new();
    let mut burst_latencies = Vec::new();
    for prefix in ["burst", "storm"] {
        for i in 0..storm_size {
            let name = format!("{PREFIX}{prefix}-{i}");
            let xml = definition(&conn, &name).unwrap_or_else(|| panic!("{name} is not defined"));
            assert_eq!(w.errors(&xml), Vec::<String>::new(), "{name}: {xml}");
            if i % 4 == 0 {
                assert!(xml.contains("passwd='s3cr3t-8'"), "{name} lost its VNC password");
            }
            let life = lifecycle(&seen, &name);
            let kinds: Vec<&str> = life.iter().map(|(w, _)| w.as_str()).collect();
            assert_eq!(kinds, ["Defined Added", "Defined Updated"], "{name}");
            let latency = life[1].1.saturating_sub(life[0].1);
            // Not those the next watcher's audit fixed after the SIGTERM.
            let on_define = named(&lines, "redefined", &name)
                .iter()
                .all(|l| l.contains(" op=define "));
            match prefix {
                "burst" if on_define => burst_latencies.push(latency),
                "storm" => latencies.push(latency),
                _ => {}
            }
        }
    }
    latencies.sort_unstable();
    burst_latencies.sort_unstable();

    // The rounds: a guest undefined last is gone; a guest defined last is compliant with the
    // user's last definition, or an err line names it.
    let mut reported: HashMap<&str, usize> = HashMap::new();
    // Rounds whose user's last definition was replaced (each with its err line), and rounds
    // with an err line although nothing was lost (the watcher could not rule it out).
    let (mut lost, mut cautious) = (0, 0);
    for r in &raced {
        let errs: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("<27>") && l.contains(&format!("domain={} ", r.name)))
            .collect();
        for e in &errs {
            let verb = e
                .split_once("]: ")
                .and_then(|(_, v)| v.split(' ').next())
                .unwrap_or("");
            *reported.entry(verb).or_default() += 1;
        }
        let now = definition(&conn, &r.name);
        if r.kind.ends_undefined() && r.undefines > 0 {
            assert_eq!(
                now,
                None,
                "{} ({:?}) was undefined and is defined: {:#?}",
                r.name,
                r.kind,
                named(&lines, "", &r.name)
            );
            continue;
        }
        let xml = now.unwrap_or_else(|| panic!("{} ({:?}) is not defined", r.name, r.kind));
        assert_eq!(w.errors(&xml), Vec::<String>::new(), "{}: {xml}", r.name);
        let users_last = if r.defines == 2 { 768 } else { 512 };
        let kept = xml.contains(&format!("<memory unit='KiB'>{}</memory>", users_last * 1024));
        lost += usize::from(!kept);
        if kept && !errs.is_empty() {
            cautious += 1;
            eprintln!(
                "watch races: {} ({:?}) kept the user's last define, and an err line said it \
                 might not have: {:#?}\n{:#?}",
                r.name,
                r.kind,
                named(&lines, "", &r.name),
                lifecycle(&seen, &r.name)
            );
        }
        assert!(
            kept || !errs.is_empty(),
            "{} ({:?}): the user's last definition ({users_last} MiB) was lost and no err line says so: {xml}\n{:#?}",
            r.name,
            r.kind,
            named(&lines, "", &r.name)
        );
    }

    // Phase 2: a storm with a libvirtd restart in the middle (each define retried while the
    // daemon is away).
    w.start_watcher();
    let connected = w.log.matching(&[": connected "]).len();
    let guests2 = storm_size / 2;
    let names2: Vec<String> = (0..guests2).map(|i| format!("{PREFIX}restart-{i}")).collect();
    created.lock().unwrap().extend(names2.iter().cloned());
    for (i, name) in names2.iter().enumerate() {
        // A UUID of its own: a define retried after its reply was lost with the daemon is an
        // update, not a second guest of that name.
        let xml = guest(
            name,
            &format!(
                "{}{}",
                hostdev("0002:01:00.0", 0, 5),
                hostdev("0002:02:00.0", 0, 6)
            ),
        )
        .replacen(
            "<memory",
            &format!("<uuid>6e3a7c1d-0b5e-4f60-8a2d-1{i:011x}</uuid>\n  <memory"),
            1,
        );
        std::fs::write(w.work.path().join(format!("{name}.xml")), xml).unwrap();
    }
    let defined2 = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for chunk in names2.chunks(guests2.div_ceil(STORM_PROCESSES)) {
            let (work, defined2) = (&work, &defined2);
            s.spawn(move || {
                for name in chunk {
                    let file = work.join(format!("{name}.xml"));
                    eventually("a define to be accepted", || {
                        separate_define(&file).then_some(()).or_else(|| {
                            sleep_ms(100);
                            None
                        })
                    });
                    defined2.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        eventually("a third of the second storm", || {
            (defined2.load(Ordering::SeqCst) >= guests2 / 3).then_some(())
        });
        let restart = Command::new(repo().join("tests/e2e/libvirtd-sandbox.sh"))
            .arg("restart-daemon")
            .output()
            .unwrap();
        assert!(restart.status.success(), "sandbox restart: {}", text(&restart));
    });
    eventually("the watcher to reconnect", || {
        (w.log.matching(&[": connected "]).len() > connected).then_some(())
    });
    w.assert_watcher_running();
    next_watcher(&mut w);
    assert_eq!(w.stop_watcher().code(), Some(0), "{}", w.stderr());
    let lines = w.log.all();
    // The first connection went with the daemon.
    let conn = Connect::open(Some(URI)).unwrap();
    for name in &names2 {
        let xml = definition(&conn, name).unwrap_or_else(|| panic!("{name} is not defined"));
        assert_eq!(w.errors(&xml), Vec::<String>::new(), "{name}: {xml}");
        assert!(
            !named(&lines, "redefined", name).is_empty(),
            "{name} was fixed and no redefined line says so"
        );
    }
    let internal: Vec<&String> = lines.iter().filter(|l| l.contains(": internal-error ")).collect();
    assert!(internal.is_empty(), "{internal:#?}");

    let mut kinds: HashMap<Kind, usize> = HashMap::new();
    for r in &raced {
        *kinds.entry(r.kind).or_default() += 1;
    }
    eprintln!(
        "watch races: {rounds} rounds in {:.1} s ({kinds:?}); err lines naming a round's guest: \
         {reported:?} ({lost} rounds lost the user's last define, each named in an err line; {cautious} \
         err lines where nothing was lost); {watcher_defines} watcher defines and {undone} undefines of re-created \
         guests, each logged",
        phase1.as_secs_f64()
    );
    eprintln!(
        "watch storm: {storm_size} guests, each define a virsh of its own, {STORM_PROCESSES} at \
         once: Defined Added -> the watcher's Defined Updated p50 {} ms, p99 {} ms, max {} ms; \
         the watcher used {storm_cpu} ms of CPU",
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies.last().unwrap(),
    );
    eprintln!(
        "watch burst: {storm_size} guests by {STORM_PROCESSES} virsh processes at once, all fixed \
         {:.1} s after the first define; the first watcher fixed {} of them (p50 {} ms, max {} ms \
         after their define) using {first_cpu} ms of CPU, then SIGTERM, the next watcher the rest",
        burst_took.as_secs_f64(),
        burst_latencies.len(),
        percentile(&burst_latencies, 50),
        burst_latencies.last().unwrap_or(&0),
    );
    eprintln!(
        "watch RSS (VmRSS/VmHWM KiB): first watcher at the SIGTERM {first_rss:?}, second after the \
         rounds {second_rss:?}; restart phase: {guests2} guests, all fixed"
    );
}
