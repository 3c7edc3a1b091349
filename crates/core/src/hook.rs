//! `phbguard hook`: what libvirtd runs from `/etc/libvirt/hooks/qemu.d/phbguard` as
//! `HOOK DOMAIN OP SUBOP EXTRA` with the domain XML on stdin.
//!
//! * `prepare begin`: judge; error findings reject the start (exit 1), one line per finding on
//!   stderr (libvirt puts it in `virsh start`'s error) and one in syslog.
//! * `migrate begin` (incoming) and `restore begin`: judge; refuse or warn as the policy says.
//!   Nothing is ever printed on stdout: empty output tells libvirt to keep the XML as it is,
//!   and any rewrite would have to be ABI-identical anyway.
//! * Every other op: exit 0 at once, without reading stdin, the policy file or the XML.
//!
//! The hook never calls back into libvirt, writes no files and opens nothing but stdin, the
//! policy file, sysfs and the syslog socket: hooks for several guests can run at once.
//!
//! **stdin is not drained** for ops that don't judge, nor after an oversized input. Seen with
//! libvirt 9.0.0 (tests/hook_libvirt.rs, `stdin_not_drained`): with a 300 KiB domain XML
//! (far beyond a 64 KiB pipe buffer) and a hook that exits at once, `virsh start`, `destroy`,
//! `save` and `restore` all succeed; libvirtd's debug log only says
//! `child closed stdin early, ignoring EPIPE` (virCommandProcessIO). Reading it all would cost
//! a copy of the XML per call for nothing.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::config::{self, Config, Incoming, Mode, OnInternalError};
use crate::error::Chain;
use crate::host::{HostFacts, Sysfs};
use crate::input::{InputError, read_bounded};
use crate::parse::parse_domain;
use crate::rules::{Finding, RuleId, Severity, judge};
use crate::syslog::{Level, Syslog, field};

/// One call from libvirt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `--config FILE`, if given.
    pub config: Option<PathBuf>,
    /// The hook file's own path, which the kernel passes when it runs the `#!` line.
    pub script: Option<OsString>,
    /// The domain's name.
    pub domain: String,
    /// libvirt's operation: `prepare`, `start`, `migrate`, ...
    pub op: String,
    /// Its sub-operation: `begin`, `end`, ...
    pub subop: String,
    /// The extra argument (`-` when libvirt has none).
    pub extra: String,
}

/// Why the arguments are not a hook call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// `--help` or `-h` where no hook argument can be.
    Help,
    /// Arguments that are not a hook call; the message says which.
    Usage(String),
}

/// Reads `[--config FILE] [SCRIPT] DOMAIN OP SUBOP EXTRA` (what follows `hook`).
///
/// libvirt always passes exactly four arguments (missing ones are `-`), so the *last four* are
/// taken as they are, whatever they look like: a domain named `check`, `--help` or `-` is a
/// domain. Only what comes before them is read as options.
pub fn parse_args(args: &[OsString]) -> Result<Call, ArgsError> {
    if args.len() < 4 {
        if args.iter().any(|a| a == "--help" || a == "-h") {
            return Err(ArgsError::Help);
        }
        return Err(ArgsError::Usage(format!(
            "expected DOMAIN OP SUBOP EXTRA (libvirt always passes all four), got {} argument{}",
            args.len(),
            if args.len() == 1 { "" } else { "s" }
        )));
    }
    let (options, hook_args) = args.split_at(args.len() - 4);
    let mut config = None;
    let mut script = None;
    let mut rest = options.iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            let value = rest
                .next()
                .ok_or_else(|| ArgsError::Usage("--config needs a FILE".into()))?;
            config = Some(PathBuf::from(value));
        } else if let Some(value) = text.strip_prefix("--config=") {
            config = Some(PathBuf::from(value));
        } else if text == "--help" || text == "-h" {
            return Err(ArgsError::Help);
        } else if text.starts_with('-') && text != "-" {
            return Err(ArgsError::Usage(format!("unknown option '{text}'")));
        } else if script.is_none() {
            script = Some(arg.clone());
        } else {
            return Err(ArgsError::Usage(format!(
                "unexpected argument '{text}' before DOMAIN OP SUBOP EXTRA"
            )));
        }
    }
    let s = |i: usize| hook_args[i].to_string_lossy().into_owned();
    Ok(Call {
        config,
        script,
        domain: s(0),
        op: s(1),
        subop: s(2),
        extra: s(3),
    })
}

/// Which calls phbguard judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `prepare begin`: a guest is about to start.
    Prepare,
    /// `migrate begin`: an incoming migration, on the destination host.
    Migrate,
    /// `restore begin`: a save image (or managed save) is being restored.
    Restore,
}

impl Phase {
    /// The phase of a call, or `None` for the calls phbguard lets through untouched.
    pub fn of(op: &str, subop: &str) -> Option<Phase> {
        match (op, subop) {
            ("prepare", "begin") => Some(Phase::Prepare),
            ("migrate", "begin") => Some(Phase::Migrate),
            ("restore", "begin") => Some(Phase::Restore),
            _ => None,
        }
    }

    /// The op word libvirt passes for this phase.
    pub fn op(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Migrate => "migrate",
            Phase::Restore => "restore",
        }
    }

    fn refused(self) -> &'static str {
        match self {
            Phase::Prepare => "refused to start",
            Phase::Migrate => "refused the incoming migration of",
            Phase::Restore => "refused to restore",
        }
    }
}

/// What `phbguard hook` does with its arguments: exit code, or why they are not a hook call.
/// Reads stdin and the policy file named by `--config`, `PHBGUARD_CONFIG` or the default path.
pub fn main(args: &[OsString]) -> Result<u8, ArgsError> {
    let call = parse_args(args)?;
    let Some(phase) = Phase::of(&call.op, &call.subop) else {
        return Ok(0);
    };
    let (path, explicit) = config::choose_path(call.config.clone(), std::env::var_os(config::ENV_VAR));
    let (config, problems) = config::load(&path, explicit);
    let mut log = Syslog::connect(&config.syslog_socket);
    let mut stderr = io::stderr().lock();
    for p in &problems {
        let _ = writeln!(stderr, "phbguard: {p}");
        log.log(
            Level::Err,
            &format!("config-error {}: {p}", field("op", phase.op())),
        );
    }
    if config.mode == Mode::Off {
        return Ok(0);
    }
    on_panic(&config, &call, phase);
    let input = read_bounded(io::stdin().lock());
    let host = Sysfs::new(&config.sysfs_root);
    Ok(decide(&call, phase, &config, input, &host, &mut log, &mut stderr))
}

/// Judges one call's XML under the policy, reports, and returns the exit code.
pub fn decide(
    call: &Call,
    phase: Phase,
    config: &Config,
    input: Result<Vec<u8>, InputError>,
    host: &dyn HostFacts,
    log: &mut Syslog,
    stderr: &mut dyn Write,
) -> u8 {
    if config.mode == Mode::Off {
        return 0;
    }
    let domain = match input {
        Ok(bytes) => match parse_domain(&bytes) {
            Ok(d) => d,
            Err(e) => {
                return internal_error(call, phase, config, &format!("the domain XML: {e}"), log, stderr);
            }
        },
        Err(InputError::TooLarge) => {
            let what = format!("standard input: {}", InputError::TooLarge);
            return internal_error(call, phase, config, &what, log, stderr);
        }
        Err(e) => {
            let what = format!("standard input: {}", Chain(&e));
            return internal_error(call, phase, config, &what, log, stderr);
        }
    };
    // libvirt names the domain in argv; the XML says the same. argv is what the admin typed.
    let name = call.domain.as_str();
    let uuid = domain.uuid.as_deref().unwrap_or("-");

    let mut mode = config.mode;
    if let Some(m) = domain.policy_mode.as_deref() {
        match Mode::parse(m) {
            Some(m) => mode = m,
            None => {
                let line = format!(
                    "<metadata><phbguard:policy mode='{m}'> is not enforce, warn or off; \
                     using mode '{}' from the policy file",
                    config.mode.as_str()
                );
                let _ = writeln!(stderr, "phbguard: {name}: {line}");
                log.log(
                    Level::Warning,
                    &format!(
                        "metadata-error {} {} {}: {line}",
                        field("domain", name),
                        field("uuid", uuid),
                        field("op", phase.op())
                    ),
                );
            }
        }
    }
    if mode == Mode::Off {
        return 0;
    }

    let findings = judge(&domain, host);
    if findings.is_empty() {
        return 0;
    }
    let exempt = config.is_exempt(name, domain.uuid.as_deref());
    let blocking = |f: &Finding| {
        f.severity() == Severity::Error
            || (config.reject_iommu_group_unknown && f.rule.id == RuleId::IommuGroupUnknown)
    };
    let rejects = match phase {
        Phase::Prepare => true,
        Phase::Migrate | Phase::Restore => config.incoming == Incoming::Refuse,
    };
    let reject = rejects && mode == Mode::Enforce && !exempt && findings.iter().any(blocking);

    for f in &findings {
        let (verdict, level) = if exempt {
            ("exempt", Level::Notice)
        } else if reject && blocking(f) {
            ("rejected", Level::Err)
        } else {
            ("warned", Level::Warning)
        };
        let mut line = String::with_capacity(200);
        let _ = write!(
            line,
            "{verdict} {} {} {} {} {} {} {}: {}",
            field("domain", name),
            field("uuid", uuid),
            field("op", phase.op()),
            field("rule", f.rule.id.as_str()),
            field("device", &f.device),
            field("severity", f.severity().as_str()),
            field("mode", if exempt { "exempt" } else { mode.as_str() }),
            f.message
        );
        log.log(level, &line);
    }
    if !reject {
        return 0;
    }

    // What `virsh start` shows the admin: the findings, the blocking ones first.
    let mut text = String::new();
    let (errors, others): (Vec<&Finding>, Vec<&Finding>) = findings.iter().partition(|f| blocking(f));
    for f in &errors {
        let _ = writeln!(text, "{}: {}", f.rule.id, f.message);
    }
    for f in &others {
        let _ = writeln!(text, "{} ({}): {}", f.rule.id, f.severity(), f.message);
    }
    let _ = writeln!(
        text,
        "phbguard: {} '{name}': {} error{}; 'phbguard explain {}' tells why and how to fix it",
        phase.refused(),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        errors[0].rule.id
    );
    let _ = stderr.write_all(text.as_bytes());
    1
}

/// The hook could not judge: say so loudly, then let the guest through or not, by policy.
fn internal_error(
    call: &Call,
    phase: Phase,
    config: &Config,
    what: &str,
    log: &mut Syslog,
    stderr: &mut dyn Write,
) -> u8 {
    let (code, outcome) = match config.on_internal_error {
        OnInternalError::Allow => (0, "allowed"),
        OnInternalError::Deny => (1, "refused"),
    };
    let _ = writeln!(
        stderr,
        "phbguard: internal error: cannot judge domain '{}' at {} begin: {what}; {} (on_internal_error = \"{}\")",
        call.domain,
        phase.op(),
        if code == 0 {
            "letting it through"
        } else {
            "refusing it"
        },
        if code == 0 { "allow" } else { "deny" },
    );
    log.log(
        Level::Err,
        &format!(
            "internal-error {} {} {} {}: cannot judge: {what}",
            field("domain", &call.domain),
            field("op", phase.op()),
            field("outcome", outcome),
            field("on_internal_error", if code == 0 { "allow" } else { "deny" }),
        ),
    );
    code
}

/// A bug must not block every guest either: a panic is an internal error under the policy. The
/// release build aborts on panic, so the exit happens in the panic hook itself.
fn on_panic(config: &Config, call: &Call, phase: Phase) {
    let config = config.clone();
    let call = call.clone();
    std::panic::set_hook(Box::new(move |info| {
        let mut log = Syslog::connect(&config.syslog_socket);
        let what = format!("phbguard panicked: {info}").replace('\n', " ");
        let code = internal_error(&call, phase, &config, &what, &mut log, &mut io::stderr());
        std::process::exit(code.into());
    }));
    // A way for the tests to see that path; compiled only into debug builds.
    #[cfg(debug_assertions)]
    if std::env::var_os("PHBGUARD_TEST_PANIC").is_some() {
        panic!("PHBGUARD_TEST_PANIC is set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::StaticHost;
    use crate::model::PciAddr;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn call(domain: &str, op: &str, subop: &str) -> Call {
        parse_args(&os(&[domain, op, subop, "-"])).unwrap()
    }

    #[test]
    fn the_last_four_arguments_are_the_call_whatever_they_look_like() {
        for name in [
            "check",
            "fix",
            "hook",
            "--help",
            "-h",
            "-",
            "--config",
            "--version",
            "help",
        ] {
            let c = parse_args(&os(&[name, "prepare", "begin", "-"])).unwrap();
            assert_eq!(c.domain, name);
            assert_eq!(
                (c.op.as_str(), c.subop.as_str(), c.extra.as_str()),
                ("prepare", "begin", "-")
            );
            assert_eq!(c.config, None);
            assert_eq!(c.script, None);
        }
        let c = parse_args(&os(&[
            "/etc/libvirt/hooks/qemu.d/phbguard",
            "--help",
            "release",
            "end",
            "shutdown",
        ]))
        .unwrap();
        assert_eq!(
            c.script.as_deref(),
            Some("/etc/libvirt/hooks/qemu.d/phbguard".as_ref())
        );
        assert_eq!((c.domain.as_str(), c.extra.as_str()), ("--help", "shutdown"));
    }

    #[test]
    fn options_come_before_the_call() {
        let c = parse_args(&os(&["--config", "/x.toml", "db", "prepare", "begin", "-"])).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("/x.toml")));
        let c = parse_args(&os(&["--config=/y.toml", "/hook", "db", "prepare", "begin", "-"])).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("/y.toml")));
        assert_eq!(c.script, Some(OsString::from("/hook")));
        // --config takes the word after it, so this is a missing value, not a domain 'db'.
        assert!(matches!(
            parse_args(&os(&["--config", "db", "prepare", "begin", "-"])),
            Err(ArgsError::Usage(_))
        ));
        assert!(matches!(
            parse_args(&os(&["--bogus", "db", "prepare", "begin", "-"])),
            Err(ArgsError::Usage(_))
        ));
        assert!(matches!(
            parse_args(&os(&["a", "b", "db", "prepare", "begin", "-"])),
            Err(ArgsError::Usage(_))
        ));
        assert_eq!(
            parse_args(&os(&["--help", "/h", "db", "prepare", "begin", "-"])),
            Err(ArgsError::Help)
        );
    }

    #[test]
    fn too_few_arguments() {
        assert_eq!(parse_args(&os(&["--help"])), Err(ArgsError::Help));
        assert_eq!(parse_args(&os(&["-h", "x"])), Err(ArgsError::Help));
        assert!(matches!(parse_args(&os(&[])), Err(ArgsError::Usage(_))));
        assert!(matches!(
            parse_args(&os(&["db", "prepare", "begin"])),
            Err(ArgsError::Usage(_))
        ));
    }

    #[test]
    fn only_three_calls_are_judged() {
        assert_eq!(Phase::of("prepare", "begin"), Some(Phase::Prepare));
        assert_eq!(Phase::of("migrate", "begin"), Some(Phase::Migrate));
        assert_eq!(Phase::of("restore", "begin"), Some(Phase::Restore));
        for (op, sub) in [
            ("start", "begin"),
            ("started", "begin"),
            ("stopped", "end"),
            ("release", "end"),
            ("reconnect", "begin"),
            ("attach", "begin"),
            ("prepare", "end"),
            ("define", "begin"),
            ("-", "-"),
        ] {
            assert_eq!(Phase::of(op, sub), None, "{op} {sub}");
        }
    }

    const BAD: &str = "<domain type='qemu'><name>db</name><uuid>6a1f0c2e-0000-4000-8000-000000000001</uuid>\
        <os><type arch='ppc64' machine='pseries'>hvm</type></os><devices>\
        <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0002' bus='0x02' \
        slot='0x00' function='0x0'/></source><address type='pci' domain='0x0000' bus='0x00' slot='0x05' \
        function='0x0'/></hostdev></devices></domain>";

    fn host() -> StaticHost {
        let a = PciAddr {
            domain: 2,
            bus: 2,
            slot: 0,
            function: 0,
        };
        StaticHost::new().with_device(a, 7, None)
    }

    fn run(c: &Call, config: &Config, xml: &str) -> (u8, String) {
        let phase = Phase::of(&c.op, &c.subop).unwrap();
        let mut err = Vec::new();
        let code = decide(
            c,
            phase,
            config,
            Ok(xml.as_bytes().to_vec()),
            &host(),
            &mut Syslog::none(),
            &mut err,
        );
        (code, String::from_utf8(err).unwrap())
    }

    #[test]
    fn prepare_rejects_errors_with_rule_ids_on_stderr() {
        let (code, err) = run(&call("db", "prepare", "begin"), &Config::default(), BAD);
        assert_eq!(code, 1);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines[0].starts_with("hostdev-on-default-phb: hostdev 0002:02:00.0 at 0000:00:05.0 "),
            "{err}"
        );
        assert!(
            lines[1].contains("'phbguard explain hostdev-on-default-phb'"),
            "{err}"
        );
        assert!(lines[1].contains("refused to start 'db'"), "{err}");
    }

    #[test]
    fn compliant_and_warn_and_off_and_exempt_pass_silently() {
        let ok = BAD
            .replace("bus='0x00' slot='0x05'", "bus='0x01' slot='0x01'")
            .replace(
                "<devices>",
                "<devices><controller type='pci' index='1' model='pci-root'><target index='1'/></controller>",
            );
        let c = call("db", "prepare", "begin");
        assert_eq!(run(&c, &Config::default(), &ok), (0, String::new()));
        let warn = Config {
            mode: Mode::Warn,
            ..Config::default()
        };
        assert_eq!(run(&c, &warn, BAD), (0, String::new()));
        let off = Config {
            mode: Mode::Off,
            ..Config::default()
        };
        assert_eq!(run(&c, &off, "not even xml"), (0, String::new()));
        for e in ["db", "6A1F0C2E-0000-4000-8000-000000000001"] {
            let exempt = Config {
                exempt: vec![e.into()],
                ..Config::default()
            };
            assert_eq!(run(&c, &exempt, BAD), (0, String::new()), "{e}");
        }
    }

    #[test]
    fn metadata_overrides_the_mode() {
        let with = |mode: &str| {
            BAD.replace(
                "<os>",
                &format!(
                    "<metadata><phbguard:policy xmlns:phbguard='{}' mode='{mode}'/></metadata><os>",
                    crate::parse::METADATA_NS
                ),
            )
        };
        let c = call("db", "prepare", "begin");
        assert_eq!(run(&c, &Config::default(), &with("warn")).0, 0);
        assert_eq!(run(&c, &Config::default(), &with("off")).0, 0);
        let warn = Config {
            mode: Mode::Warn,
            ..Config::default()
        };
        assert_eq!(run(&c, &warn, &with("enforce")).0, 1);
        let (code, err) = run(&c, &Config::default(), &with("sometimes"));
        assert_eq!(code, 1);
        assert!(
            err.contains("mode='sometimes'> is not enforce, warn or off"),
            "{err}"
        );
    }

    #[test]
    fn incoming_warns_by_default_and_refuses_by_policy() {
        let refuse = Config {
            incoming: Incoming::Refuse,
            ..Config::default()
        };
        for op in ["migrate", "restore"] {
            let c = call("db", op, "begin");
            assert_eq!(run(&c, &Config::default(), BAD), (0, String::new()), "{op}");
            let (code, err) = run(&c, &refuse, BAD);
            assert_eq!(code, 1, "{op}");
            assert!(err.starts_with("hostdev-on-default-phb: "), "{err}");
        }
    }

    #[test]
    fn iommu_group_unknown_rejects_only_by_policy() {
        let ok_unknown = BAD
            .replace("bus='0x00' slot='0x05'", "bus='0x01' slot='0x01'")
            .replace("bus='0x02'", "bus='0x09'")
            .replace(
                "<devices>",
                "<devices><controller type='pci' index='1' model='pci-root'><target index='1'/></controller>",
            );
        let c = call("db", "prepare", "begin");
        assert_eq!(run(&c, &Config::default(), &ok_unknown), (0, String::new()));
        let strict = Config {
            reject_iommu_group_unknown: true,
            ..Config::default()
        };
        let (code, err) = run(&c, &strict, &ok_unknown);
        assert_eq!(code, 1);
        assert!(err.starts_with("iommu-group-unknown: "), "{err}");
    }

    #[test]
    fn internal_errors_follow_the_policy() {
        let c = call("db", "prepare", "begin");
        let deny = Config {
            on_internal_error: OnInternalError::Deny,
            ..Config::default()
        };
        for xml in [
            "<domain>",
            "<network/>",
            "",
            "<domain><devices><hostdev mode='subsystem' type='pci'><source><address domain='zz'/></source></hostdev></devices></domain>",
        ] {
            let (code, err) = run(&c, &Config::default(), xml);
            assert_eq!(code, 0, "{xml}");
            assert!(
                err.starts_with("phbguard: internal error: cannot judge domain 'db' at prepare begin"),
                "{err}"
            );
            assert!(err.contains("letting it through"), "{err}");
            assert_eq!(run(&c, &deny, xml).0, 1, "{xml}");
        }
        let mut err = Vec::new();
        let code = decide(
            &c,
            Phase::Prepare,
            &Config::default(),
            Err(InputError::TooLarge),
            &host(),
            &mut Syslog::none(),
            &mut err,
        );
        assert_eq!(code, 0);
        assert!(String::from_utf8(err).unwrap().contains("larger than 16 MiB"));
    }
}
