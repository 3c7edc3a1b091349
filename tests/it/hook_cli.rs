//! `phbguard hook` from the outside: the installed hook file (its `#!` line pointing at the
//! test binary), every op, every policy key, config errors, argument edge cases, oversized
//! stdin, and the syslog lines a real datagram socket receives.

use crate::hook_support;
use crate::support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Output;

use hook_support::{Policy, UUID, install_hook, run_exe};
use phbguard_testkit::xml::{bridge, guest_with, hostdev, phb};
use support::{stderr, stdout};

fn bad_xml(name: &str) -> String {
    hook_support::bad_guest(name)
}

fn good_xml(name: &str) -> String {
    hook_support::good_guest(name)
}

/// The shared test world with the hook installed in a directory of its own.
struct World {
    world: hook_support::World,
    _dir: tempfile::TempDir,
    hook: PathBuf,
}

impl std::ops::Deref for World {
    type Target = hook_support::World;
    fn deref(&self) -> &hook_support::World {
        &self.world
    }
}

impl World {
    fn new(extra_policy: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let hook = install_hook(dir.path(), "phbguard");
        World {
            world: hook_support::World::new(extra_policy),
            _dir: dir,
            hook,
        }
    }

    /// Runs the installed hook as libvirt does: `HOOK DOMAIN OP SUBOP EXTRA`.
    fn call(&self, domain: &str, op: &str, subop: &str, xml: &str) -> Output {
        let env = [("PHBGUARD_CONFIG", self.policy.path_str())];
        run_exe(&self.hook, &[domain, op, subop, "-"], &env, xml.as_bytes())
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

/// [`run_exe`], failing the test as a hang when the hook has not ended after
/// [`BLOCKED`] (it is killed then). No speed limit (speed is measured in benches/): only what
/// tells a hook that waits forever from a slow one on any machine, emulated ones under load
/// included.
fn run_unless_blocked(exe: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    support::Run::new(exe)
        .environment_of_a_hook()
        .envs(env.iter().copied())
        .args(args)
        .stdin(stdin)
        .hang_after(BLOCKED)
        .output()
}

const BLOCKED: std::time::Duration = std::time::Duration::from_secs(300);

#[test]
fn prepare_rejects_with_rule_ids_on_stderr_and_one_syslog_line_per_finding() {
    let w = World::new("");
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 6, "{err}");
    assert!(
        lines[0].starts_with(
            "hostdev-on-default-phb: hostdev 0002:02:00.0 at 0000:00:05.0 is on the default PHB"
        ),
        "{err}"
    );
    assert!(lines[1].starts_with("pci-bridge-on-pseries (warning): "), "{err}");
    assert_eq!(
        lines[2],
        "phbguard: refused to start 'db02': 1 error; 'phbguard explain hostdev-on-default-phb' tells why and how to fix it"
    );
    // The ways out: fix the definition, opt this guest out, or warn for every guest.
    let sysfs = w.host.path_str();
    assert_eq!(
        lines[3],
        format!(
            "phbguard: fix its definition: phbguard fix --domain db02 --sysfs-root {sysfs} \
             (shows the diff, redefines when you confirm)"
        )
    );
    assert_eq!(
        lines[4],
        format!(
            "phbguard: or start it anyway: virsh metadata db02 --uri {} --key phbguard \
             --set \"<policy mode='warn'/>\" --config",
            phbguard_core::parse::METADATA_NS
        )
    );
    assert_eq!(
        lines[5],
        format!(
            "phbguard: or warn for every guest: mode = \"warn\" in {}",
            w.policy.path_str()
        )
    );

    let logged = w.log.take();
    assert_eq!(logged.len(), 2, "{logged:#?}");
    // <daemon.err> = 3*8+3
    assert!(logged[0].starts_with("<27>"), "{}", logged[0]);
    assert!(
        logged[0].contains(&format!(
            "phbguard[{}]: rejected domain=db02 uuid={UUID} op=prepare rule=hostdev-on-default-phb \
             device=\"hostdev 0002:02:00.0 at 0000:00:05.0\" severity=error mode=enforce: hostdev 0002:02:00.0",
            logged[0].split('[').nth(1).unwrap().split(']').next().unwrap()
        )),
        "{}",
        logged[0]
    );
    // <daemon.warning> = 3*8+4
    assert!(logged[1].starts_with("<28>"), "{}", logged[1]);
    assert!(logged[1].contains(": warned domain=db02 "), "{}", logged[1]);
    assert!(logged[1].contains(" rule=pci-bridge-on-pseries device=\"controller pci index 1\""));
}

#[test]
fn compliant_and_warning_only_guests_pass_silently_on_stderr() {
    let w = World::new("");
    let out = w.call("db01", "prepare", "begin", &good_xml("db01"));
    assert_eq!(
        (code(&out), stderr(&out).as_str(), stdout(&out).as_str()),
        (0, "", "")
    );
    assert!(w.log.take().is_empty());

    let warning_only = guest_with("w", UUID, None, &bridge(1, 6));
    let out = w.call("w", "prepare", "begin", &warning_only);
    assert_eq!((code(&out), stderr(&out).as_str()), (0, ""));
    let logged = w.log.take();
    assert_eq!(logged.len(), 1);
    assert!(logged[0].contains("warned domain=w "), "{}", logged[0]);
}

#[test]
fn every_other_op_exits_at_once_without_reading_anything() {
    // A broken policy file and garbage on stdin: neither is looked at.
    let w = World::new("");
    w.policy.write("this is = = not toml");
    for (op, subop, extra) in [
        ("start", "begin", "-"),
        ("started", "begin", "-"),
        ("stopped", "end", "-"),
        ("release", "end", "shutdown"),
        ("reconnect", "begin", "-"),
        ("attach", "begin", "-"),
        ("prepare", "end", "-"),
        ("migrate", "end", "-"),
        ("define", "begin", "-"),
        ("-", "-", "-"),
    ] {
        let out = run_exe(
            &w.hook,
            &["db02", op, subop, extra],
            &[("PHBGUARD_CONFIG", w.policy.path_str())],
            &vec![b'<'; 1 << 20],
        );
        assert_eq!(code(&out), 0, "{op} {subop}: {}", stderr(&out));
        assert_eq!(
            (stdout(&out).as_str(), stderr(&out).as_str()),
            ("", ""),
            "{op} {subop}"
        );
    }
    assert!(w.log.take().is_empty());
}

#[test]
fn domains_named_like_subcommands_or_options_are_domains() {
    let w = World::new("");
    let bin = support::bin();
    for name in [
        "check",
        "fix",
        "hook",
        "rules",
        "explain",
        "help",
        "--help",
        "-h",
        "-",
        "--version",
        "--config",
    ] {
        let out = w.call(name, "prepare", "begin", &bad_xml(name));
        assert_eq!(code(&out), 1, "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("hostdev-on-default-phb: "),
            "{name}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("refused to start '{name}'")),
            "{name}"
        );
        // The same through 'phbguard hook' directly, and with a non-judged op.
        let env = [("PHBGUARD_CONFIG", w.policy.path_str())];
        let out = run_exe(
            &bin,
            &["hook", name, "prepare", "begin", "-"],
            &env,
            bad_xml(name).as_bytes(),
        );
        assert_eq!(code(&out), 1, "{name}: {}", stderr(&out));
        let out = run_exe(&bin, &["hook", name, "stopped", "end", "-"], &env, b"");
        assert_eq!((code(&out), stderr(&out).as_str()), (0, ""), "{name}");
    }
    w.log.take();
}

#[test]
fn usage_errors_and_help() {
    for args in [
        &["hook"][..],
        &["hook", "db", "prepare", "begin"],
        &["hook", "a", "b"],
    ] {
        let out = support::run(args, b"");
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).starts_with("phbguard hook: "), "{}", stderr(&out));
        assert!(stderr(&out).contains("Usage: phbguard hook [--config FILE] [SCRIPT] DOMAIN OP SUBOP EXTRA"));
    }
    let out = support::run(&["hook", "--help"], b"");
    assert_eq!(code(&out), 0);
    assert_eq!(stderr(&out), "");
    assert!(stdout(&out).contains("Usage: phbguard hook [--config FILE] [SCRIPT] DOMAIN OP SUBOP EXTRA"));
    let out = support::run(&["--help"], b"");
    assert!(stdout(&out).contains("hook "), "{}", stdout(&out));
}

#[test]
fn config_flag_wins_over_the_environment() {
    let w = World::new("mode = \"off\"\n");
    let enforce = Policy::new(&w.base_policy());
    let out = run_exe(
        support::bin().as_path(),
        &[
            "hook",
            "--config",
            enforce.path_str(),
            "db02",
            "prepare",
            "begin",
            "-",
        ],
        &[("PHBGUARD_CONFIG", w.policy.path_str())],
        bad_xml("db02").as_bytes(),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    w.log.take();
}

#[test]
fn migrate_and_restore_warn_by_default_refuse_by_policy_and_never_print() {
    let w = World::new("");
    for op in ["migrate", "restore"] {
        let out = w.call("db02", op, "begin", &bad_xml("db02"));
        assert_eq!(
            (code(&out), stdout(&out).as_str(), stderr(&out).as_str()),
            (0, "", ""),
            "{op}"
        );
        let logged = w.log.take();
        assert_eq!(logged.len(), 2, "{logged:#?}");
        assert!(logged[0].contains(&format!(
            "warned domain=db02 uuid={UUID} op={op} rule=hostdev-on-default-phb"
        )));
    }
    w.set_policy("incoming = \"refuse\"\n");
    for op in ["migrate", "restore"] {
        let out = w.call("db02", op, "begin", &bad_xml("db02"));
        assert_eq!(code(&out), 1, "{op}");
        assert_eq!(stdout(&out), "");
        let what = if op == "migrate" {
            "refused the incoming migration of"
        } else {
            "refused to restore"
        };
        assert!(
            stderr(&out).contains(&format!("phbguard: {what} 'db02': 1 error;")),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!(
                "phbguard: let incoming guests in with a warning: incoming = \"warn\" in {} (the default)\n",
                w.policy.path_str()
            )),
            "{}",
            stderr(&out)
        );
        let logged = w.log.take();
        assert!(logged[0].contains(&format!("rejected domain=db02 uuid={UUID} op={op} ")));
        // A compliant guest is let in silently either way.
        let out = w.call("db01", op, "begin", &good_xml("db01"));
        assert_eq!(
            (code(&out), stdout(&out).as_str(), stderr(&out).as_str()),
            (0, "", "")
        );
    }
    assert!(w.log.take().is_empty());
}

#[test]
fn mode_warn_and_off() {
    let w = World::new("mode = \"warn\"\n");
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!((code(&out), stderr(&out).as_str()), (0, ""));
    let logged = w.log.take();
    assert_eq!(logged.len(), 2);
    assert!(
        logged[0].contains("warned domain=db02 ") && logged[0].contains(" mode=warn: "),
        "{}",
        logged[0]
    );

    w.set_policy("mode = \"off\"\n");
    let out = w.call("db02", "prepare", "begin", "not xml at all");
    assert_eq!((code(&out), stderr(&out).as_str()), (0, ""));
    assert!(w.log.take().is_empty());
}

#[test]
fn metadata_opt_out_overrides_the_policy_per_domain() {
    let w = World::new("");
    let devices = hostdev("0002:02:00.0", 0, 5);
    let out = w.call(
        "a",
        "prepare",
        "begin",
        &guest_with("a", UUID, Some("warn"), &devices),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let logged = w.log.take();
    assert_eq!(logged.len(), 1);
    assert!(logged[0].contains("warned domain=a ") && logged[0].contains(" mode=warn: "));

    let out = w.call(
        "a",
        "prepare",
        "begin",
        &guest_with("a", UUID, Some("off"), &devices),
    );
    assert_eq!((code(&out), stderr(&out).as_str()), (0, ""));
    assert!(w.log.take().is_empty());

    w.set_policy("mode = \"warn\"\n");
    let out = w.call(
        "a",
        "prepare",
        "begin",
        &guest_with("a", UUID, Some("enforce"), &devices),
    );
    assert_eq!(code(&out), 1);

    let out = w.call(
        "a",
        "prepare",
        "begin",
        &guest_with("a", UUID, Some("bogus"), &devices),
    );
    assert_eq!(code(&out), 0, "the policy file's warn applies");
    assert!(
        stderr(&out).contains("mode='bogus'> is not enforce, warn or off"),
        "{}",
        stderr(&out)
    );
    let logged = w.log.take();
    assert!(
        logged.iter().any(|l| l.contains("metadata-error domain=a ")),
        "{logged:#?}"
    );
}

#[test]
fn exempt_by_name_or_uuid() {
    for key in ["db02", &UUID.to_uppercase()] {
        let w = World::new(&format!("exempt = [\"other\", \"{key}\"]\n"));
        let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
        assert_eq!((code(&out), stderr(&out).as_str()), (0, ""), "{key}");
        let logged = w.log.take();
        assert_eq!(logged.len(), 2);
        // <daemon.notice> = 3*8+5
        assert!(
            logged[0].starts_with("<29>") && logged[0].contains("exempt domain=db02 "),
            "{}",
            logged[0]
        );
        let out = w.call(
            "db03",
            "prepare",
            "begin",
            &bad_xml("db03").replace(UUID, "00000000-0000-4000-8000-000000000000"),
        );
        assert_eq!(code(&out), 1, "{key}");
        w.log.take();
    }
}

#[test]
fn sysfs_root_decides_the_group_rules() {
    // Two groups on one PHB: only the fake host knows they differ.
    let devices = format!(
        "{}{}{}",
        phb(1, 1),
        hostdev("0002:01:00.0", 1, 1),
        hostdev("0002:02:00.0", 1, 2)
    );
    let xml = guest_with("g", UUID, None, &devices);
    let w = World::new("");
    let out = w.call("g", "prepare", "begin", &xml);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).starts_with("phb-mixes-iommu-groups: "),
        "{}",
        stderr(&out)
    );
    w.log.take();

    // An empty sysfs: the groups are unknown, which is a warning unless the policy says.
    let empty = tempfile::tempdir().unwrap();
    w.policy.write(&format!(
        "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\n",
        empty.path().display(),
        w.log.path_str()
    ));
    let out = w.call("g", "prepare", "begin", &xml);
    assert_eq!((code(&out), stderr(&out).as_str()), (0, ""));
    let logged = w.log.take();
    assert_eq!(logged.len(), 2);
    assert!(logged.iter().all(|l| l.contains("rule=iommu-group-unknown")));

    w.policy.write(&format!(
        "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\nreject_iommu_group_unknown = true\n",
        empty.path().display(),
        w.log.path_str()
    ));
    let out = w.call("g", "prepare", "begin", &xml);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).starts_with("iommu-group-unknown: hostdev 0002:01:00.0"),
        "{}",
        stderr(&out)
    );
    assert!(w.log.take().iter().all(|l| l.contains("rejected ")));
}

#[test]
fn every_rule_scenario_is_refused_with_its_errors_first() {
    let w = World::new("");
    for (rule, devices, errors) in hook_support::rule_scenarios() {
        let out = w.call("g", "prepare", "begin", &guest_with("g", UUID, None, &devices));
        assert_eq!(code(&out), 1, "{rule}: {}", stderr(&out));
        let err = stderr(&out);
        let shown: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("phbguard: ") && !l.contains(" (warning): "))
            .map(|l| l.split(": ").next().unwrap())
            .collect();
        assert_eq!(shown, errors, "{rule}: {err}");
        assert!(
            err.contains(&format!(
                "phbguard: refused to start 'g': {} error{}; 'phbguard explain {rule}'",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            )),
            "{rule}: {err}"
        );
        // One syslog line per finding, each error 'rejected'.
        let logged = w.log.take();
        let finding_lines = err.lines().filter(|l| !l.starts_with("phbguard: ")).count();
        assert_eq!(logged.len(), finding_lines, "{rule}: {logged:#?}");
        assert_eq!(
            logged.iter().filter(|l| l.contains(": rejected ")).count(),
            errors.len(),
            "{rule}: {logged:#?}"
        );
    }
}

#[test]
fn internal_errors_allow_by_default_loudly_and_deny_by_policy() {
    let w = World::new("");
    for xml in [
        "",
        "<domain><devices>",
        "<network/>",
        "<domain><name>x</name><devices><hostdev mode='subsystem' type='pci'><source><address domain='../../etc' bus='0' slot='0' function='0'/></source></hostdev></devices></domain>",
    ] {
        let out = w.call("db02", "prepare", "begin", xml);
        assert_eq!(code(&out), 0, "{xml}");
        assert!(
            stderr(&out).starts_with(
                "phbguard: internal error: cannot judge domain 'db02' at prepare begin: the domain XML: "
            ),
            "{}",
            stderr(&out)
        );
        let logged = w.log.take();
        assert_eq!(logged.len(), 1);
        assert!(logged[0].starts_with("<27>"), "{}", logged[0]);
        assert!(
            logged[0]
                .contains("internal-error domain=db02 op=prepare outcome=allowed on_internal_error=allow")
        );
    }
    w.set_policy("on_internal_error = \"deny\"\n");
    let out = w.call("db02", "prepare", "begin", "<domain>");
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("refusing it (on_internal_error = \"deny\")"));
    assert!(w.log.take()[0].contains("outcome=refused"));
}

/// Nothing but the policy file steers the hook: the binary has no switch for tests (its panic
/// path is proven by its own unit tests, src/hook/panic.rs) and reads no environment variable its
/// manual does not name. Every `PHBGUARD_` name compiled into it is one of those.
#[test]
fn the_binary_names_only_the_documented_environment_variables() {
    const DOCUMENTED: [&[u8]; 3] = [
        b"PHBGUARD_CONFIG",
        b"PHBGUARD_LIBVIRT",
        b"PHBGUARD_HOOK_STDIN_DEADLINE_MS",
    ];
    let binary = std::fs::read(support::bin()).unwrap();
    let at = |name: &[u8]| -> Vec<usize> {
        binary
            .windows(name.len())
            .enumerate()
            .filter(|(_, w)| *w == name)
            .map(|(i, _)| i)
            .collect()
    };
    let undocumented: Vec<String> = at(b"PHBGUARD_")
        .into_iter()
        .filter(|&i| !DOCUMENTED.iter().any(|d| binary[i..].starts_with(d)))
        .map(|i| {
            let name = binary[i..]
                .iter()
                .take_while(|b| b.is_ascii_uppercase() || **b == b'_');
            String::from_utf8_lossy(&name.copied().collect::<Vec<u8>>()).into_owned()
        })
        .collect();
    assert!(undocumented.is_empty(), "{undocumented:?}");
    assert!(!at(b"PHBGUARD_CONFIG").is_empty(), "the policy file's variable");
}

/// Runs the installed hook as libvirt does, its stdin a file holding `xml`: all of it there at
/// once, so that how much the hook reads is tested apart from how fast a writer writes.
fn call_with_file(w: &World, domain: &str, xml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stdin.xml");
    std::fs::write(&path, xml).unwrap();
    std::process::Command::new(&w.hook)
        .args([domain, "prepare", "begin", "-"])
        .env_clear()
        .env("LC_ALL", "C")
        .env("PHBGUARD_CONFIG", w.policy.path_str())
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap()
}

#[test]
fn stdin_over_16_mib_is_refused_with_a_clear_error() {
    let w = World::new("");
    let xml = bad_xml("db02");
    let padded = xml.replacen(
        "<devices>",
        &format!("<!--{}--><devices>", " ".repeat(16 << 20)),
        1,
    );
    let out = call_with_file(&w, "db02", &padded);
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).contains("cannot judge domain 'db02' at prepare begin: standard input: larger than 16 MiB, refusing to read it"),
        "{}",
        stderr(&out)
    );
    assert!(w.log.take()[0].contains("internal-error domain=db02"));
    w.set_policy("on_internal_error = \"deny\"\n");
    assert_eq!(code(&call_with_file(&w, "db02", &padded)), 1);
    w.log.take();
    // Just under the bound is judged.
    let fits = xml.replacen(
        "<devices>",
        &format!("<!--{}--><devices>", " ".repeat((16 << 20) - xml.len() - 8)),
        1,
    );
    assert!(fits.len() <= 16 << 20);
    let out = call_with_file(&w, "db02", &fits);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("hostdev-on-default-phb: "));
    w.log.take();
}

#[test]
fn a_writer_that_never_closes_stdin_does_not_hold_the_start() {
    let w = World::new("");
    // The deadline shortened (it can only be shortened: src/hook/deadline.rs), so that the test need not
    // wait for the real one; the behaviour when it passes is what is tested.
    let hold = |policy: &str| {
        w.set_policy(policy);
        let mut child = support::Run::new(&w.hook)
            .args(["db02", "prepare", "begin", "-"])
            .environment_of_a_hook()
            .env("PHBGUARD_CONFIG", w.policy.path_str())
            .env("PHBGUARD_HOOK_STDIN_DEADLINE_MS", "300")
            .spawn();
        // Held open and never written: the hook must give up on it by itself.
        let held = child.stdin.take();
        let out = child.wait_with_output().unwrap();
        drop(held);
        out
    };
    let out = hold("");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "cannot judge domain 'db02' at prepare begin: standard input: not closed by its writer within 300 ms; letting it through"
        ),
        "{}",
        stderr(&out)
    );
    assert!(w.log.take()[0].contains("internal-error domain=db02"));
    // An internal error like any other: "deny" refuses the guest.
    let out = hold("on_internal_error = \"deny\"\n");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not closed by its writer within 300 ms; refusing it"),
        "{}",
        stderr(&out)
    );
    assert!(w.log.take()[0].contains("outcome=refused"));
}

/// The one error line a setup mistake gives: on stderr (where nothing else is, the guest
/// being let through) and in syslog.
fn assert_one_setup_error(out: &Output, logged: Option<&[String]>, place: &str, detail: &str) {
    let err = stderr(out);
    assert_eq!(code(out), 0, "{err}");
    assert_eq!(stdout(out), "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("phbguard: error: {place}: {detail}")),
        "{err}"
    );
    assert!(
        err.trim_end()
            .ends_with("; judging in warn mode until it is fixed"),
        "{err}"
    );
    if let Some(logged) = logged {
        let errors: Vec<_> = logged.iter().filter(|l| l.contains(" setup-error ")).collect();
        assert_eq!(errors.len(), 1, "{logged:#?}");
        assert!(errors[0].starts_with("<27>"), "{}", errors[0]);
        assert!(
            errors[0].contains(&format!("op=prepare: {place}: {detail}")),
            "{}",
            errors[0]
        );
        // And the guest was judged, in warn mode.
        assert!(
            logged
                .iter()
                .any(|l| l.contains(": warned ") && l.contains(" mode=warn: ")),
            "{logged:#?}"
        );
    }
}

#[test]
fn policy_mistakes_never_refuse_a_guest_one_error_line_names_file_and_line() {
    let w = World::new("");
    let policy = w.policy.path_str().to_owned();
    for (extra, line, detail) in [
        (
            "mode = \"warning\"\n",
            4,
            "mode = \"warning\": expected \"enforce\", \"warn\" or \"off\"",
        ),
        (
            "incoming = 3\n",
            4,
            "incoming = 3: expected \"refuse\" or \"warn\"",
        ),
        ("exmept = [\"db02\"]\n", 4, "unknown key 'exmept'"),
        (
            "reject_iommu_group_unknown = \"yes\"\n",
            4,
            "reject_iommu_group_unknown = \"yes\": expected true or false",
        ),
        // The first of several, and where to see them all.
        (
            "\nmodee = 1\nmode = \"x\"\n",
            5,
            "unknown key 'modee' (did you mean 'mode'?) (and 1 more: phbguard check-config ",
        ),
        // An internal error in doubt lets the guest through even under 'deny'.
        (
            "on_internal_error = \"deny\"\nbogus = 1\n",
            5,
            "unknown key 'bogus'",
        ),
    ] {
        w.set_policy(extra);
        let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
        let logged = w.log.take();
        assert_one_setup_error(&out, Some(&logged), &format!("{policy}:{line}"), detail);
    }
    w.set_policy("on_internal_error = \"deny\"\nbogus = 1\n");
    let out = w.call("db02", "prepare", "begin", "<domain>");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "letting it through (on_internal_error = \"deny\" is not honoured while the hook's setup is in doubt)"
        ),
        "{}",
        stderr(&out)
    );
    w.log.take();

    // A sysfs root that does not exist: not "every group unknown", a mistake.
    w.policy.write(&format!(
        "sysfs_root = \"/nonexistent/sys\"\nsyslog_socket = \"{}\"\n",
        w.log.path_str()
    ));
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    let logged = w.log.take();
    assert_one_setup_error(
        &out,
        Some(&logged),
        &format!("{policy}:1"),
        "sysfs_root = \"/nonexistent/sys\": No such file or directory",
    );

    // Files the hook cannot use as a policy: the whole file is ignored, so syslog is the
    // default one; stderr says it. A FIFO nobody writes must not hang the hook.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "\nmode = enforce\n").unwrap();
    for (file, place, detail) in [
        (
            bad_toml.to_str().unwrap(),
            format!("{}:2", bad_toml.display()),
            "not valid TOML (",
        ),
        (
            fifo.to_str().unwrap(),
            fifo.display().to_string(),
            "cannot read it: is a FIFO, not a regular file",
        ),
        (
            "/dev/zero",
            "/dev/zero".into(),
            "cannot read it: is a character device, not a regular file",
        ),
        (
            dir.path().to_str().unwrap(),
            dir.path().display().to_string(),
            "cannot read it: is a directory",
        ),
        (
            "/nonexistent/phbguard.toml",
            "/nonexistent/phbguard.toml".into(),
            "cannot read it: No such file",
        ),
    ] {
        let out = run_unless_blocked(
            &w.hook,
            &["db02", "prepare", "begin", "-"],
            &[("PHBGUARD_CONFIG", file)],
            bad_xml("db02").as_bytes(),
        );
        assert_one_setup_error(&out, None, &place, detail);
    }
}

/// The '#!' lines an admin may get wrong.
const BROKEN_SHEBANGS: &[&str] = &[
    " hook --confg=/etc/phbguard/x.toml",
    " hook -c /etc/phbguard/x.toml",
    " hook --bogus",
    " hook --config",
    " hook --config=",
    " hook --help",
    " hook --config=/etc/my dir/x.toml",
    " hooks",
    " check",
    "",
];

#[test]
fn a_broken_shebang_line_never_fails_a_call() {
    let w = World::new("");
    let dir = tempfile::tempdir().unwrap();
    // Where libvirt keeps hooks: how a mistyped subcommand ('hooks') is still known for a hook.
    let hooks = dir.path().join("hooks/qemu.d");
    std::fs::create_dir_all(&hooks).unwrap();
    let env = [("PHBGUARD_CONFIG", w.policy.path_str())];
    for rest in BROKEN_SHEBANGS {
        let hook = hook_support::install_hook_line(&hooks, "phbguard", rest);
        // Not judged: exit 0, nothing printed, nothing logged, whatever the options say.
        for (op, subop) in [
            ("reconnect", "begin"),
            ("start", "begin"),
            ("stopped", "end"),
            ("release", "end"),
        ] {
            let out = run_exe(&hook, &["db02", op, subop, "-"], &env, b"");
            assert_eq!(
                (code(&out), stdout(&out).as_str(), stderr(&out).as_str()),
                (0, "", ""),
                "#!BIN{rest}: {op} {subop}"
            );
        }
        assert!(w.log.take().is_empty(), "{rest}");
        // Judged: in warn mode, with one error line naming the hook file's line 1.
        for op in ["prepare", "migrate", "restore"] {
            let out = run_exe(
                &hook,
                &["db02", op, "begin", "-"],
                &env,
                bad_xml("db02").as_bytes(),
            );
            let err = stderr(&out);
            assert_eq!(
                (code(&out), stdout(&out).as_str()),
                (0, ""),
                "#!BIN{rest} {op}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{rest}: {err}");
            assert!(
                err.starts_with(&format!("phbguard: error: {}:1: ", hook.display())),
                "{rest}: {err}"
            );
            let logged = w.log.take();
            assert!(
                logged.iter().any(|l| l.contains(" setup-error ")),
                "{rest}: {logged:#?}"
            );
            assert!(
                logged.iter().any(|l| l.contains(": warned domain=db02 ")),
                "{rest}: {logged:#?}"
            );
        }
    }
    // '--config' with no value does not read the hook file itself as the policy.
    let hook = hook_support::install_hook_line(&hooks, "phbguard", " hook --config");
    let out = run_exe(
        &hook,
        &["db02", "prepare", "begin", "-"],
        &env,
        bad_xml("db02").as_bytes(),
    );
    assert!(stderr(&out).contains("--config needs a FILE"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not valid TOML"), "{}", stderr(&out));
    w.log.take();
}

#[test]
fn check_config_validates_a_policy_file() {
    let w = World::new("mode = \"warn\"\nexempt = [\"db01\"]\n");
    let out = support::run(&["check-config", w.policy.path_str()], b"");
    assert_eq!((code(&out), stderr(&out).as_str()), (0, ""));
    assert_eq!(
        stdout(&out),
        format!(
            "{}: valid; the hook applies mode = \"warn\" (findings are logged, no guest is refused)\n",
            w.policy.path_str()
        )
    );
    // The packaged file as shipped (all comments) is valid.
    let packaged = support::repo().join("packaging/phbguard.toml");
    let out = support::run(&["check-config", packaged.to_str().unwrap()], b"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let policy = w.policy.path_str().to_owned();
    for (extra, expected) in [
        (
            "mode = \"warning\"\nexmept = []\n",
            vec![
                format!(
                    "phbguard: {policy}:4: mode = \"warning\": expected \"enforce\", \"warn\" or \"off\""
                ),
                format!("phbguard: {policy}:5: unknown key 'exmept' (did you mean 'exempt'?)"),
            ],
        ),
        // Every problem, a sysfs_root that is not a directory too, each on its line.
        (
            "[watch]\naction = \"fix\"\nmode = \"enforce\"\nexempt = []\n",
            vec![
                format!(
                    "phbguard: {policy}:6: 'mode' is inside [watch] (line 4); top-level keys go \
                     before the first [table]"
                ),
                format!(
                    "phbguard: {policy}:7: 'exempt' is inside [watch] (line 4); top-level keys \
                     go before the first [table]"
                ),
            ],
        ),
        (
            "mode = enforce\n",
            vec![format!("phbguard: {policy}:4: not valid TOML (")],
        ),
    ] {
        w.set_policy(extra);
        let out = support::run(&["check-config", &policy], b"");
        assert_eq!((code(&out), stdout(&out).as_str()), (2, ""), "{extra}");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), expected.len() + 1, "{err}");
        for (line, want) in lines.iter().zip(&expected) {
            assert!(line.starts_with(want.as_str()), "{line} / {want}");
        }
        assert!(
            lines
                .last()
                .unwrap()
                .contains("until it is fixed the hook judges every guest in warn mode")
        );
    }
    // Every problem, a sysfs_root that is not a directory too, each on its line.
    w.policy
        .write("sysfs_root = \"/nonexistent/sys\"\nmdoe = \"warn\"\n");
    let out = support::run(&["check-config", &policy], b"");
    let lines: Vec<String> = stderr(&out).lines().map(String::from).collect();
    assert_eq!(
        lines[..2],
        [
            format!(
                "phbguard: {policy}:1: sysfs_root = \"/nonexistent/sys\": No such file or directory (os error 2)"
            ),
            format!("phbguard: {policy}:2: unknown key 'mdoe' (did you mean 'mode'?)"),
        ]
    );
    w.policy.write("sysfs_root = \"/nonexistent/sys\"\n");
    let out = support::run(&["check-config", &policy], b"");
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with(&format!(
            "phbguard: {policy}:1: sysfs_root = \"/nonexistent/sys\": No such file or directory"
        )),
        "{}",
        stderr(&out)
    );
    // The summary calls it what it is.
    assert!(
        stderr(&out).contains(&format!("phbguard: policy file {policy}: 1 problem; ")),
        "{}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = support::run(&["check-config", dir.path().to_str().unwrap()], b"");
    assert!(
        stderr(&out).contains(": cannot read it: is a directory, not a policy file\n"),
        "{}",
        stderr(&out)
    );
    for file in ["/nonexistent/phbguard.toml", "/dev/zero"] {
        let out = support::run(&["check-config", file], b"");
        assert_eq!(code(&out), 2, "{file}");
        assert!(
            stderr(&out).starts_with(&format!("phbguard: {file}: cannot read it: ")),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn the_prepare_after_restore_or_migrate_follows_incoming_then_mode_again() {
    let w = World::new("");
    for op in ["restore", "migrate"] {
        let out = w.call("db02", op, "begin", &bad_xml("db02"));
        assert_eq!((code(&out), stderr(&out).as_str()), (0, ""), "{op}");
        let logged = w.log.take();
        assert!(
            logged.iter().all(|l| l.contains(&format!(" op={op} "))),
            "{logged:#?}"
        );
        // libvirt's next call for the same guest: judged by incoming = "warn".
        let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
        assert_eq!((code(&out), stderr(&out).as_str()), (0, ""), "{op}");
        let logged = w.log.take();
        assert!(
            logged[0].starts_with("<30>")
                && logged[0].contains(&format!(
                    "incoming domain=db02 uuid={UUID} op=prepare after={op}: the start that follows '{op} begin' is judged by incoming = \"warn\""
                )),
            "{logged:#?}"
        );
        assert!(
            logged[1].contains(&format!(
                "warned domain=db02 uuid={UUID} op=prepare incoming={op} rule=hostdev-on-default-phb "
            )),
            "{logged:#?}"
        );
        assert_eq!(logged.len(), 3, "{logged:#?}");
        // The mark is spent: a later start is judged by mode again.
        let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
        assert_eq!(code(&out), 1, "{op}");
        w.log.take();
    }
    // The mark is for this name and UUID only.
    let out = w.call("db02", "restore", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 0);
    let other = bad_xml("db03").replace(UUID, "00000000-0000-4000-8000-000000000003");
    assert_eq!(code(&w.call("db03", "prepare", "begin", &other)), 1);
    assert_eq!(
        code(&w.call("db09", "prepare", "begin", &bad_xml("db09"))),
        1,
        "same UUID, other name"
    );
    assert_eq!(
        code(&w.call("db02", "prepare", "begin", &bad_xml("db02"))),
        1,
        "consumed by the mismatch"
    );
    w.log.take();
    // The directory is the hook's alone.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(w.state_dir()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    // incoming = "refuse": the restore itself is refused, and no mark is left.
    w.set_policy("incoming = \"refuse\"\n");
    assert_eq!(code(&w.call("db02", "restore", "begin", &bad_xml("db02"))), 1);
    assert_eq!(std::fs::read_dir(w.state_dir()).unwrap().count(), 0);
    w.log.take();
}

#[test]
fn when_the_incoming_mark_cannot_be_written_mode_decides_and_the_log_says_why() {
    let w = World::new("");
    // state_dir below a regular file: it cannot be created.
    let file = w.state.path().join("file");
    std::fs::write(&file, "").unwrap();
    w.policy.write(&format!(
        "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\nstate_dir = \"{}/incoming\"\n",
        w.host.path_str(),
        w.log.path_str(),
        file.display()
    ));
    let out = w.call("db02", "migrate", "begin", &bad_xml("db02"));
    assert_eq!((code(&out), stderr(&out).as_str()), (0, ""));
    let logged = w.log.take();
    let errors: Vec<_> = logged
        .iter()
        .filter(|l| l.contains("incoming-mark-error"))
        .collect();
    assert_eq!(errors.len(), 1, "{logged:#?}");
    assert!(
        errors[0].starts_with("<27>")
            && errors[0].contains("domain=db02 op=migrate: cannot keep the incoming mark: cannot create ")
            && errors[0].contains("its 'prepare begin' will be judged by mode = \"enforce\""),
        "{}",
        errors[0]
    );
    assert_eq!(code(&w.call("db02", "prepare", "begin", &bad_xml("db02"))), 1);
    w.log.take();
}

#[test]
fn a_refusal_shows_at_most_20_findings_then_how_to_list_them_all() {
    let w = World::new("");
    // 30 hostdevs on the default PHB (the fake host knows one; the rest are unknown too).
    let devices: String = (0..30).map(|i| hostdev("0002:02:00.0", 0, 1 + i)).collect();
    let xml = guest_with("big", UUID, None, &devices);
    let out = w.call("big", "prepare", "begin", &xml);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let findings = lines.iter().take_while(|l| !l.starts_with("… and ")).count();
    assert_eq!(findings, 20, "{err}");
    w.log.take();
    // As many as 'phbguard check' lists, the command the refusal names.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.xml");
    std::fs::write(&file, &xml).unwrap();
    let (_, json) = support::check_json(w.host.path_str(), file.to_str().unwrap());
    let total = support::finding_lines(&json).len();
    assert_eq!(total, 30, "one per hostdev on the default PHB");
    assert_eq!(
        lines[20],
        format!(
            "… and {} more: virsh dumpxml --inactive big | phbguard check --sysfs-root {} -",
            total - 20,
            w.host.path_str()
        )
    );
    assert!(
        lines[21].starts_with("phbguard: refused to start 'big': "),
        "{err}"
    );
    assert_eq!(lines.len(), 25, "{err}");
    assert!(err.len() < 8 * 1024, "{}", err.len());
}

#[test]
fn control_characters_from_the_document_never_reach_the_terminal_or_the_log_raw() {
    let w = World::new("");
    let name = "db\u{1b}[31m\nfake";
    let xml = guest_with(
        "x",
        UUID,
        None,
        &format!(
            "{}{}",
            phbguard_testkit::xml::pci_root(1, "evil&#x1b;]0;title&#x7;", 1),
            hostdev("0002:02:00.0", 0, 5)
        ),
    );
    let out = w.call(name, "prepare", "begin", &xml);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("refused to start 'db\\x1b[31m\\nfake'"), "{err}");
    assert!(err.contains("evil\\x1b]0;title\\x07"), "{err}");
    let logged = w.log.take();
    assert!(!logged.is_empty());
    for l in &logged {
        assert!(!l.chars().any(|c| c.is_control()), "{l:?}");
    }
    // check and fix print the same escapes.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("evil.xml");
    std::fs::write(&file, &xml).unwrap();
    let out = support::run(
        &["check", "--sysfs-root", w.host.path_str(), file.to_str().unwrap()],
        b"",
    );
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("evil\\x1b]0;title\\x07"),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).chars().any(|c| c.is_control() && c != '\n'),
        "{:?}",
        stdout(&out)
    );
    let out = support::run(
        &["fix", "--sysfs-root", w.host.path_str(), file.to_str().unwrap()],
        b"",
    );
    assert!(
        !stderr(&out).chars().any(|c| c.is_control() && c != '\n'),
        "{:?}",
        stderr(&out)
    );
}

#[test]
fn syslog_missing_or_full_never_blocks_or_fails_the_hook() {
    let w = World::new("");
    w.policy.write(&format!(
        "sysfs_root = \"{}\"\nsyslog_socket = \"/nonexistent/dev/log\"\n",
        w.host.path_str()
    ));
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).starts_with("hostdev-on-default-phb: "));

    // A socket nobody reads, its queue filled to the brim first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full");
    let _rx = UnixDatagram::bind(&path).unwrap();
    let tx = UnixDatagram::unbound().unwrap();
    tx.set_nonblocking(true).unwrap();
    tx.connect(&path).unwrap();
    let mut queued = 0;
    while tx.send(&[b'x'; 4096]).is_ok() {
        queued += 1;
        assert!(queued < 1_000_000);
    }
    w.policy.write(&format!(
        "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\n",
        w.host.path_str(),
        path.display()
    ));
    let out = run_unless_blocked(
        &w.hook,
        &["db02", "prepare", "begin", "-"],
        &[("PHBGUARD_CONFIG", w.policy.path_str())],
        bad_xml("db02").as_bytes(),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("hostdev-on-default-phb: "));
    // A path that is not a socket at all.
    w.policy.write(&format!(
        "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\n",
        w.host.path_str(),
        w.hook.display()
    ));
    assert_eq!(code(&w.call("db02", "prepare", "begin", &bad_xml("db02"))), 1);
}

#[test]
fn hooks_for_many_guests_at_once() {
    let w = World::new("");
    // Started one after the other from this thread, each one's stdin written and closed
    // before the next starts, then all waited for: the hooks run at once, and no hook holds
    // another's stdin open. A child between fork and exec holds a copy of every descriptor
    // the test process has open; under qemu-user (the ppc64le run) such a child was seen to
    // hang there for good, and a hook whose stdin it held open never saw the end of its XML:
    // its deadline passed and it let the guest through, as it must for a writer that never
    // finishes (an internal error under on_internal_error = "allow"). libvirtd closes every
    // descriptor a hook does not need in the child (virCommandMassClose), and runs natively.
    let hooks: Vec<_> = (0..16)
        .map(|i| {
            let name = format!("g{i}");
            let xml = if i % 2 == 0 {
                bad_xml(&name)
            } else {
                good_xml(&name)
            };
            let mut child = support::Run::new(&w.hook)
                .args([name.as_str(), "prepare", "begin", "-"])
                .environment_of_a_hook()
                .env("PHBGUARD_CONFIG", w.policy.path_str())
                .spawn();
            // A few KiB: the pipe takes it all at once.
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), xml.as_bytes()).unwrap();
            (i, child)
        })
        .collect();
    for (i, child) in hooks {
        let out = child.wait_with_output().unwrap();
        let (c, err) = (code(&out), stderr(&out));
        if i % 2 == 0 {
            assert_eq!(c, 1, "guest {i}: {err}");
            assert!(err.contains(&format!("refused to start 'g{i}'")), "{err}");
        } else {
            assert_eq!((c, err.as_str()), (0, ""), "guest {i}");
        }
    }
    // 8 rejected guests, two lines each, each line naming its own guest. Under this burst a
    // small socket queue (net.unix.max_dgram_qlen, 10 here) may drop lines rather than block;
    // but a line is dropped only while the queue is full, and a full queue is read whole, so
    // at least min(16, qlen) lines arrive.
    let qlen: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .expect("/proc/sys/net/unix/max_dgram_qlen: the queue length decides how many lines must arrive")
        .trim()
        .parse()
        .unwrap();
    let logged = w.log.take();
    assert!(
        (qlen.min(16)..=16).contains(&logged.len()),
        "{} lines, queue {qlen}",
        logged.len()
    );
    for l in &logged {
        let g: String = l
            .split("domain=g")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(g.parse::<u32>().unwrap() % 2, 0, "{l}");
    }
}

#[test]
fn the_shipped_hook_file_is_a_direct_interpreter_line() {
    let text = std::fs::read_to_string(support::repo().join("hooks/qemu.d/phbguard")).unwrap();
    assert!(text.starts_with("#!/usr/bin/phbguard hook\n"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(support::repo().join("hooks/qemu.d/phbguard"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable");
    assert!(Path::new(&support::bin()).is_file());
}

#[test]
fn the_packaged_policy_file_documents_every_key_with_its_default() {
    use phbguard_core::config::{Config, FIX_KEYS, Mode, TOP_LEVEL_KEYS, WATCH_KEYS};
    let text = std::fs::read_to_string(support::repo().join("packaging/phbguard.toml")).unwrap();
    // As shipped: warn mode (the package must not refuse a guest that started before), every
    // other key commented out at its default.
    let (config, problems) = phbguard_core::config::parse(&text);
    assert!(problems.is_empty(), "{problems:?}");
    let warn = Config {
        mode: Mode::Warn,
        ..Config::default()
    };
    assert_eq!(config, warn);
    // No [table] line: nothing an admin adds or uncomments can land inside a table.
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start_matches('#').trim_start().starts_with('[')),
        "{text}"
    );
    // Every commented key uncommented: known, valid, the default; each key once.
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| {
            l.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (config, problems) = phbguard_core::config::parse(&format!("mode = \"warn\"\n{uncommented}"));
    assert!(problems.is_empty(), "{problems:?}");
    let keys: Vec<String> = TOP_LEVEL_KEYS
        .iter()
        .map(|k| k.to_string())
        .chain(WATCH_KEYS.iter().map(|k| format!("watch.{k}")))
        .chain(FIX_KEYS.iter().map(|k| format!("fix.{k}")))
        .collect();
    let documented: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_once(" = "))
        .map(|(k, _)| k)
        .filter(|k| keys.iter().any(|key| key == k))
        .collect();
    let mut sorted = documented.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), keys.len(), "each key once: {documented:?}");
    assert_eq!(uncommented.lines().count() + 1, keys.len(), "{uncommented}");
    let defaults = Config {
        exempt: config.exempt.clone(),
        ..warn
    };
    assert_eq!(config, defaults);
}

#[test]
fn a_policy_file_named_on_the_interpreter_line() {
    let w = World::new("");
    let dir = tempfile::tempdir().unwrap();
    let hook = hook_support::install_hook_with(dir.path(), "phbguard", Some(&w.policy.path));
    // No PHBGUARD_CONFIG: the policy (fake sysfs, test socket) comes from the '#!' line.
    let out = run_exe(
        &hook,
        &["db02", "prepare", "begin", "-"],
        &[],
        bad_xml("db02").as_bytes(),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(w.log.take().len(), 2);
    // The '#!' line's policy wins over the environment, as --config does.
    let out = run_exe(
        &hook,
        &["db02", "prepare", "begin", "-"],
        &[("PHBGUARD_CONFIG", "/nonexistent")],
        bad_xml("db02").as_bytes(),
    );
    assert_eq!((code(&out), w.log.take().len()), (1, 2), "{}", stderr(&out));
}

/// The packaged policy edited as its own comments and docs/admin.md say: `mode` switched to
/// enforce where it is, the watch service's action and an exempt list uncommented and set, the
/// host-specific keys uncommented, and a line added at the end the way admins do (`echo >>`).
/// Every edit keeps the file valid and the hook refusing: no edit can move a key into a table.
#[test]
fn the_packaged_policy_edited_as_its_comments_say_still_enforces() {
    let w = World::new("");
    let shipped = std::fs::read_to_string(support::repo().join("packaging/phbguard.toml")).unwrap();
    let mut edited = String::new();
    for line in shipped.lines() {
        let line = match line {
            "mode = \"warn\"" => "mode = \"enforce\"".to_string(),
            "#watch.action = \"warn\"" => "watch.action = \"fix\"".to_string(),
            "#fix.spare_phbs = 0" => "fix.spare_phbs = 2".to_string(),
            l if l.starts_with("#exempt = [") => "exempt = [\"legacy-db01\"]".to_string(),
            l if l.starts_with("#sysfs_root = ") => format!("sysfs_root = \"{}\"", w.host.path_str()),
            l if l.starts_with("#syslog_socket = ") => format!("syslog_socket = \"{}\"", w.log.path_str()),
            l if l.starts_with("#state_dir = ") => format!("state_dir = \"{}\"", w.state_dir().display()),
            l => l.to_string(),
        };
        edited.push_str(&line);
        edited.push('\n');
    }
    for key in [
        "mode = \"enforce\"",
        "watch.action = \"fix\"",
        "fix.spare_phbs = 2",
        "exempt = [",
        "sysfs_root = ",
    ] {
        assert!(
            edited.lines().any(|l| l.starts_with(key)),
            "{key} not edited in:\n{edited}"
        );
    }
    edited.push_str("reject_iommu_group_unknown = true\n");
    w.policy.write(&edited);

    let out = support::run(&["check-config", w.policy.path_str()], b"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with(
            ": valid; the hook applies mode = \"enforce\" (guests with error findings are refused)\n"
        ),
        "{}",
        stdout(&out)
    );
    let (config, _) = phbguard_core::config::parse(&edited);
    assert_eq!(config.watch_action, phbguard_core::config::WatchAction::Fix);
    assert_eq!(config.fix_spare_phbs, 2);
    assert!(config.reject_iommu_group_unknown);

    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused to start 'db02'"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("phbguard: error:"), "{}", stderr(&out));
    w.log.take();
}

/// The table form docs used to show, with a top-level key added below it: the hook does not
/// refuse (a mistake never does), and every place says why, with the file, line and table.
#[test]
fn a_key_added_below_a_table_is_named_where_the_hook_and_check_config_report() {
    let w = World::new("");
    let text = format!(
        "{}[watch]\naction = \"fix\"\nmode = \"enforce\"\n",
        w.base_policy()
    );
    w.policy.write(&text);
    let policy = w.policy.path_str();
    let detail = "'mode' is inside [watch] (line 4); top-level keys go before the first [table]";
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    let logged = w.log.take();
    assert_one_setup_error(&out, Some(&logged), &format!("{policy}:6"), detail);
    let out = support::run(&["check-config", policy], b"");
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with(&format!("phbguard: {policy}:6: {detail}\n")),
        "{}",
        stderr(&out)
    );
}
