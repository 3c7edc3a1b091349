//! `phbguard hook` from the outside: the installed hook file (its `#!` line pointing at the
//! test binary), every op, every policy key, config errors, argument edge cases, oversized
//! stdin, and the syslog lines a real datagram socket receives.

mod hook_support;
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use hook_support::{LogSink, Policy, guest_with, hostdev, install_hook, phb, run_exe, scsi};
use support::{stderr, stdout};

const UUID: &str = "6a1f0c2e-5b7d-4c3e-9f10-2b8e4d6a7c01";

/// A hostdev on the default PHB, plus a pci-bridge: one error, one warning.
fn bad_xml(name: &str) -> String {
    guest_with(
        name,
        UUID,
        None,
        &format!("{}{}", hostdev("0002:02:00.0", 0, 5), hook_support::bridge(1, 6)),
    )
}

fn good_xml(name: &str) -> String {
    guest_with(
        name,
        UUID,
        None,
        &format!("{}{}", phb(1, 1), hostdev("0002:02:00.0", 1, 1)),
    )
}

/// One test world: a fake host, a syslog socket, a policy file, the hook installed.
struct World {
    host: support::FakeSysfs,
    log: LogSink,
    policy: Policy,
    _dir: tempfile::TempDir,
    hook: std::path::PathBuf,
}

impl World {
    fn new(extra_policy: &str) -> World {
        let host = hook_support::fake_host();
        let log = LogSink::new();
        let policy = Policy::new("");
        let dir = tempfile::tempdir().unwrap();
        let hook = install_hook(dir.path(), "phbguard");
        let w = World {
            host,
            log,
            policy,
            _dir: dir,
            hook,
        };
        w.set_policy(extra_policy);
        w
    }

    fn base_policy(&self) -> String {
        format!(
            "sysfs_root = \"{}\"\nsyslog_socket = \"{}\"\n",
            self.host.path_str(),
            self.log.path_str()
        )
    }

    fn set_policy(&self, extra: &str) {
        self.policy.write(&format!("{}{extra}", self.base_policy()));
    }

    /// Runs the installed hook as libvirt does: `HOOK DOMAIN OP SUBOP EXTRA`.
    fn call(&self, domain: &str, op: &str, subop: &str, xml: &str) -> Output {
        self.call_env(domain, op, subop, xml, &[])
    }

    fn call_env(&self, domain: &str, op: &str, subop: &str, xml: &str, env: &[(&str, &str)]) -> Output {
        let mut all = vec![("PHBGUARD_CONFIG", self.policy.path_str())];
        all.extend_from_slice(env);
        run_exe(&self.hook, &[domain, op, subop, "-"], &all, xml.as_bytes())
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

#[test]
fn prepare_rejects_with_rule_ids_on_stderr_and_one_syslog_line_per_finding() {
    let w = World::new("");
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
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

    let warning_only = guest_with("w", UUID, None, &hook_support::bridge(1, 6));
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
        &["hook", "--bogus", "db", "prepare", "begin", "-"],
    ] {
        let out = support::run(args, b"");
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).starts_with("phbguard hook: "), "{}", stderr(&out));
        assert!(stderr(&out).contains("Usage: phbguard hook [--config FILE] [SCRIPT] DOMAIN OP SUBOP EXTRA"));
    }
    let out = support::run(&["hook", "--help"], b"");
    assert_eq!(code(&out), 0);
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
fn group_split_and_emulated_and_behind_bridge() {
    let w = World::new("");
    let cases = [
        (
            "iommu-group-split",
            format!(
                "{}{}{}{}",
                phb(1, 1),
                phb(2, 2),
                hostdev("0003:01:00.0", 1, 1),
                hostdev("0003:01:00.1", 2, 1)
            ),
        ),
        (
            "emulated-on-hostdev-phb",
            format!("{}{}{}", phb(1, 1), hostdev("0002:02:00.0", 1, 1), scsi(0, 1, 2)),
        ),
        (
            "hostdev-behind-bridge",
            format!("{}{}", hook_support::bridge(1, 6), hostdev("0002:02:00.0", 1, 1)),
        ),
    ];
    for (rule, devices) in cases {
        let out = w.call("g", "prepare", "begin", &guest_with("g", UUID, None, &devices));
        assert_eq!(code(&out), 1, "{rule}");
        assert!(
            stderr(&out).starts_with(&format!("{rule}: ")),
            "{rule}: {}",
            stderr(&out)
        );
        w.log.take();
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

#[test]
fn a_panic_is_an_internal_error_too() {
    let w = World::new("");
    let out = w.call_env(
        "db02",
        "prepare",
        "begin",
        &bad_xml("db02"),
        &[("PHBGUARD_TEST_PANIC", "1")],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("phbguard panicked"), "{}", stderr(&out));
    assert!(w.log.take()[0].contains("internal-error domain=db02"));
    w.set_policy("on_internal_error = \"deny\"\n");
    let out = w.call_env(
        "db02",
        "prepare",
        "begin",
        &bad_xml("db02"),
        &[("PHBGUARD_TEST_PANIC", "1")],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    w.log.take();
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
    let start = Instant::now();
    let out = w.call("db02", "prepare", "begin", &padded);
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).contains("cannot judge domain 'db02' at prepare begin: standard input: larger than 16 MiB, refusing to read it"),
        "{}",
        stderr(&out)
    );
    assert!(w.log.take()[0].contains("internal-error domain=db02"));
    w.set_policy("on_internal_error = \"deny\"\n");
    assert_eq!(code(&w.call("db02", "prepare", "begin", &padded)), 1);
    w.log.take();
    // Just under the bound is judged.
    let fits = xml.replacen(
        "<devices>",
        &format!("<!--{}--><devices>", " ".repeat((16 << 20) - xml.len() - 8)),
        1,
    );
    assert!(fits.len() <= 16 << 20);
    let out = w.call("db02", "prepare", "begin", &fits);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).starts_with("hostdev-on-default-phb: "));
    assert!(start.elapsed() < Duration::from_secs(30));
    w.log.take();
}

#[test]
fn config_problems_are_reported_and_fall_back_to_defaults() {
    let w = World::new("mode = \"sometimes\"\nmodee = \"warn\"\n");
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 1, "mode falls back to enforce");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "phbguard: policy file {}: mode = \"sometimes\": expected \"enforce\", \"warn\" or \"off\"; using the default (enforce)",
            w.policy.path_str()
        )),
        "{err}"
    );
    assert!(err.contains("unknown key 'modee', ignored"), "{err}");
    let logged = w.log.take();
    assert_eq!(
        logged
            .iter()
            .filter(|l| l.contains("config-error op=prepare"))
            .count(),
        2,
        "{logged:#?}"
    );
    assert_eq!(logged.iter().filter(|l| l.contains("rejected ")).count(), 1);

    // Broken TOML: the whole file is ignored, so the syslog socket is the default one and the
    // sysfs is /sys; the guest is still judged (enforce), and the problem is on stderr.
    w.policy.write("mode = 'warn\n");
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("not valid TOML, ignoring the whole file and using the built-in defaults"));

    // A named file that does not exist.
    let out = run_exe(
        &w.hook,
        &["db01", "prepare", "begin", "-"],
        &[("PHBGUARD_CONFIG", "/nonexistent/phbguard.toml")],
        good_xml("db01").as_bytes(),
    );
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).starts_with("phbguard: policy file /nonexistent/phbguard.toml: cannot read it"));
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
    let start = Instant::now();
    let out = w.call("db02", "prepare", "begin", &bad_xml("db02"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("hostdev-on-default-phb: "));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
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
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let hook = w.hook.clone();
            let policy = w.policy.path_str().to_owned();
            std::thread::spawn(move || {
                let name = format!("g{i}");
                let xml = if i % 2 == 0 {
                    bad_xml(&name)
                } else {
                    good_xml(&name)
                };
                let out = run_exe(
                    &hook,
                    &[&name, "prepare", "begin", "-"],
                    &[("PHBGUARD_CONFIG", &policy)],
                    xml.as_bytes(),
                );
                (i, code(&out), stderr(&out))
            })
        })
        .collect();
    for h in handles {
        let (i, c, err) = h.join().unwrap();
        if i % 2 == 0 {
            assert_eq!(c, 1, "guest {i}");
            assert!(err.contains(&format!("refused to start 'g{i}'")), "{err}");
        } else {
            assert_eq!((c, err.as_str()), (0, ""), "guest {i}");
        }
    }
    // 8 rejected guests, two lines each, each line naming its own guest. Under this burst a
    // small socket queue (net.unix.max_dgram_qlen) may drop lines rather than block.
    let logged = w.log.take();
    assert!(logged.len() <= 16, "{}", logged.len());
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
    let text = std::fs::read_to_string(support::repo().join("packaging/phbguard.toml")).unwrap();
    // As shipped: all comments, the defaults.
    let (config, problems) = phbguard_core::config::parse(&text);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(config, phbguard_core::config::Config::default());
    // Uncommented: every key is known and valid, and each commented value is the default.
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| {
            let is_table = l.starts_with('[') && l.ends_with(']');
            is_table
                || l.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (config, problems) = phbguard_core::config::parse(&uncommented);
    assert!(problems.is_empty(), "{problems:?}");
    let keys = [
        "sysfs_root",
        "mode",
        "incoming",
        "reject_iommu_group_unknown",
        "on_internal_error",
        "exempt",
        "syslog_socket",
        // [watch]
        "action",
    ];
    for k in keys {
        assert!(
            uncommented.lines().any(|l| l.starts_with(&format!("{k} = "))),
            "{k} documented"
        );
    }
    let tables = ["[watch]"];
    assert_eq!(
        uncommented.lines().count(),
        keys.len() + tables.len(),
        "{uncommented}"
    );
    let defaults = phbguard_core::config::Config {
        exempt: config.exempt.clone(),
        ..phbguard_core::config::Config::default()
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
