//! `phbguard hook`: what libvirtd runs from `/etc/libvirt/hooks/qemu.d/phbguard` as
//! `HOOK DOMAIN OP SUBOP EXTRA` with the domain XML on stdin. The thin edge around
//! `phbguard_core::verdict`: arguments, the policy file, stdin, the incoming marks, and what
//! the admin sees (stderr, syslog). It lives in the binary, not in the engine, because it is
//! all process effects (environment, stdin, a panic hook, files under /run); the engine stays
//! free of them so that audit and watch reuse the verdict and the policy as they are.
//!
//! * Every call but `prepare begin`, `migrate begin` and `restore begin` exits 0 at once, before
//!   any option, the policy file, stdin or sysfs is looked at: whatever the `#!` line says, a
//!   `reconnect begin` after a libvirtd restart must never fail (libvirt would stop the guest).
//! * For the three judged calls, a mistake in the hook's setup (options, the policy file, a
//!   sysfs root that is not a directory) never refuses a guest: one error line on stderr and in
//!   syslog names it, and the guest is judged in warn mode.
//! * `migrate begin`/`restore begin` and the `prepare begin` that follows them for the same
//!   guest are judged by `incoming` (crate::incoming); every other `prepare` by `mode`.
//! * Nothing is ever printed on stdout: libvirt reads it as a replacement XML at `migrate` and
//!   `restore`.
//!
//! **stdin is not drained** for ops that don't judge, nor after an oversized input. Seen with
//! libvirt 9.0.0 (tests/it/hook_libvirt.rs): with a 300 KiB domain XML and a hook that exits at
//! once, `virsh start`, `destroy`, `save` and `restore` all succeed; libvirtd's debug log only
//! says `child closed stdin early, ignoring EPIPE` (virCommandProcessIO).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use phbguard_core::config::{Config, Incoming, Mode, OnInternalError, Policy};
use phbguard_core::escape::controls;
use phbguard_core::host::Sysfs;
use phbguard_core::input::{InputError, read_within};
use phbguard_core::parse::{METADATA_NS, parse_domain};
use phbguard_core::syslog::{Level, Syslog, field};
use phbguard_core::verdict::{Arrival, Disposition, Occasion, Phase, Verdict, decide};

use crate::incoming::Marks;

/// The most finding lines a refusal shows; the rest are counted (virsh shows stderr whole).
pub const MAX_REFUSAL_LINES: usize = 20;

/// Why the arguments are not a hook call at all (fewer than libvirt's four): a person typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    Help,
    Usage(String),
}

/// One call from libvirt: the last four arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub domain: String,
    pub op: String,
    pub subop: String,
    pub extra: String,
}

/// What came before the four: options from the `#!` line (or a person's command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub config: Option<PathBuf>,
    /// The hook file's own path, which the kernel passes when it runs the `#!` line.
    pub script: Option<OsString>,
}

/// A mistake in the hook's setup: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    pub place: String,
    pub detail: String,
}

/// Splits `[OPTIONS] [SCRIPT] DOMAIN OP SUBOP EXTRA`. libvirt always passes exactly four
/// arguments (missing ones are `-`), so the *last four* are the call whatever they look like:
/// a domain named `check`, `--help` or `-` is a domain.
pub fn split_call(args: &[OsString]) -> Result<(&[OsString], Call), ArgsError> {
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
    let (options, call) = args.split_at(args.len() - 4);
    let s = |i: usize| call[i].to_string_lossy().into_owned();
    Ok((
        options,
        Call {
            domain: s(0),
            op: s(1),
            subop: s(2),
            extra: s(3),
        },
    ))
}

/// Reads the options. `shebang`: they came from a `#!` line (Linux passed its words as one
/// argument, split by main), so the kernel's script path is the last of them for sure and can
/// never be taken for the value of a `--config` written without one.
pub fn parse_options(words: &[OsString], shebang: bool) -> Result<Options, String> {
    let mut options = Options::default();
    let mut words = words;
    if shebang && let Some((script, rest)) = words.split_last() {
        options.script = Some(script.clone());
        words = rest;
    }
    let mut rest = words.iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            let value = rest.next().ok_or("--config needs a FILE (--config=FILE)")?;
            options.config = Some(PathBuf::from(value));
        } else if let Some(value) = text.strip_prefix("--config=") {
            if value.is_empty() {
                return Err("--config= needs a FILE".into());
            }
            options.config = Some(PathBuf::from(value));
        } else if text.starts_with('-') && text != "-" {
            return Err(format!("unknown option '{}'", controls(&text)));
        } else if options.script.is_none() {
            options.script = Some(arg.clone());
        } else {
            return Err(format!(
                "unexpected argument '{}' before DOMAIN OP SUBOP EXTRA",
                controls(&text)
            ));
        }
    }
    Ok(options)
}

/// `phbguard hook ARGS`: the exit code, or why the arguments are not a hook call.
pub fn main(args: &[OsString], shebang: bool, setup: Option<Mistake>) -> Result<u8, ArgsError> {
    let (words, call) = split_call(args)?;
    let Some(phase) = Phase::of(&call.op, &call.subop) else {
        return Ok(0);
    };
    let mut mistakes: Vec<Mistake> = setup.into_iter().collect();
    let options = parse_options(words, shebang).unwrap_or_else(|detail| {
        let place = match words.last() {
            Some(script) if shebang => format!("{}:1", script.to_string_lossy()),
            _ => "the 'phbguard hook' command line".into(),
        };
        mistakes.push(Mistake {
            place: controls(&place).into_owned(),
            detail,
        });
        Options::default()
    });
    let policy = Policy::read(options.config);
    mistakes.extend(policy.problems.into_iter().map(|p| Mistake {
        place: match p.line {
            Some(line) => format!("{}:{line}", p.path.display()),
            None => p.path.display().to_string(),
        },
        detail: p.detail,
    }));
    let mut edge = Edge {
        call,
        phase,
        log: Syslog::on_first_line(&policy.config.syslog_socket),
        stderr: io::stderr().lock(),
        policy_path: policy.path,
        warn_only: false,
        config: policy.config,
    };
    if edge.config.mode == Mode::Off {
        edge.report_mistakes(&mistakes);
        return Ok(0);
    }
    let host = Sysfs::new(&edge.config.sysfs_root);
    // The policy checked a sysfs_root it names; the kernel's /sys is the host's own.
    if edge.config.sysfs_override().is_none()
        && let Err(e) = host.check_root()
    {
        mistakes.push(Mistake {
            place: format!("{} (sysfs_root)", edge.policy_path.display()),
            detail: e,
        });
    }
    edge.report_mistakes(&mistakes);
    edge.warn_only = !mistakes.is_empty();
    on_panic(&edge);
    let input = read_within(io::stdin().as_fd(), STDIN_DEADLINE);
    Ok(edge.judge(input, &host))
}

/// libvirt writes the XML and closes the pipe at once (virCommandProcessIO); a writer that
/// does neither must not hold a guest's start, or libvirtd, forever.
const STDIN_DEADLINE: Duration = Duration::from_secs(5);

/// One judged call and where its words go.
struct Edge {
    call: Call,
    phase: Phase,
    config: Config,
    policy_path: PathBuf,
    /// The setup is in doubt: judge in warn mode, let the guest through on internal errors.
    warn_only: bool,
    log: Syslog,
    stderr: io::StderrLock<'static>,
}

impl Edge {
    fn name(&self) -> String {
        controls(&self.call.domain).into_owned()
    }

    /// One line, however many mistakes: the first, how many more, and where to see them all.
    fn report_mistakes(&mut self, mistakes: &[Mistake]) {
        let Some(first) = mistakes.first() else {
            return;
        };
        let more = match mistakes.len() - 1 {
            0 => String::new(),
            n => format!(
                " (and {n} more: phbguard check-config {})",
                shell_word(&self.policy_path.to_string_lossy())
            ),
        };
        let outcome = if self.config.mode == Mode::Off {
            "mode = \"off\" applies"
        } else {
            "judging in warn mode until it is fixed"
        };
        // The place may hold a path from the environment: escaped like the rest.
        let line = controls(&format!("{}: {}{more}; {outcome}", first.place, first.detail)).into_owned();
        let _ = writeln!(self.stderr, "phbguard: error: {line}");
        self.log.log(
            Level::Err,
            &format!(
                "setup-error {} {}: {line}",
                field("domain", &self.call.domain),
                field("op", self.phase.op())
            ),
        );
    }

    fn judge(&mut self, input: Result<Vec<u8>, InputError>, host: &Sysfs) -> u8 {
        let domain = match input {
            Ok(bytes) => match parse_domain(&bytes) {
                Ok(d) => d,
                Err(e) => return self.internal_error(&format!("the domain XML: {e}")),
            },
            Err(e) => return self.internal_error(&format!("standard input: {e}")),
        };
        if phbguard_core::seams::panic_requested() {
            panic!("PHBGUARD_TEST_PANIC is set");
        }
        let uuid = domain.uuid.clone().unwrap_or_else(|| "-".into());
        let marks = Marks::new(&self.config.state_dir);
        let mut occasion = Occasion::new(self.phase);
        occasion.warn_only = self.warn_only;
        if self.phase == Phase::Prepare {
            match marks.take(&uuid, &self.call.domain) {
                Ok(Some(via)) => {
                    occasion.arrival = Arrival::Incoming(via);
                    self.log.log(
                        Level::Info,
                        &format!(
                            "incoming {} {} {} {}: the start that follows '{} begin' is judged by incoming = \"{}\"",
                            field("domain", &self.call.domain),
                            field("uuid", &uuid),
                            field("op", "prepare"),
                            field("after", via.op()),
                            via.op(),
                            incoming_str(self.config.incoming),
                        ),
                    );
                }
                Ok(None) => {}
                Err(e) => self.log.log(
                    Level::Err,
                    &format!(
                        "incoming-mark-error {} {}: cannot read the incoming mark: {e}; judged by mode",
                        field("domain", &self.call.domain),
                        field("op", "prepare")
                    ),
                ),
            }
        }
        let verdict = decide(&domain, host, &self.config, occasion);
        if let Some(m) = &verdict.bad_metadata_mode {
            let line = format!(
                "<metadata><phbguard:policy mode='{}'> is not enforce, warn or off; using mode '{}' from the policy file",
                controls(m),
                self.config.mode.as_str()
            );
            let _ = writeln!(self.stderr, "phbguard: {}: {line}", self.name());
            self.log.log(
                Level::Warning,
                &format!(
                    "metadata-error {} {} {}: {line}",
                    field("domain", &self.call.domain),
                    field("uuid", &uuid),
                    field("op", self.phase.op())
                ),
            );
        }
        self.log_findings(&verdict, &uuid, occasion);
        if matches!(self.phase, Phase::Migrate | Phase::Restore)
            && !verdict.reject
            && !verdict.findings.is_empty()
            && let Err(e) = marks.put(&uuid, &self.call.domain, self.phase)
        {
            self.log.log(
                Level::Err,
                &format!(
                    "incoming-mark-error {} {}: cannot keep the incoming mark: {e}; its 'prepare begin' will be judged by mode = \"{}\"",
                    field("domain", &self.call.domain),
                    field("op", self.phase.op()),
                    verdict.mode.as_str()
                ),
            );
        }
        if !verdict.reject {
            return 0;
        }
        let text = refusal_text(
            &self.call.domain,
            occasion,
            &verdict,
            &self.policy_path,
            &self.config,
        );
        let _ = self.stderr.write_all(text.as_bytes());
        1
    }

    fn log_findings(&mut self, verdict: &Verdict, uuid: &str, occasion: Occasion) {
        let incoming = match (self.phase, occasion.arrival) {
            (Phase::Prepare, Arrival::Incoming(via)) => format!(" {}", field("incoming", via.op())),
            _ => String::new(),
        };
        for j in &verdict.findings {
            let level = match j.disposition {
                Disposition::Exempt => Level::Notice,
                Disposition::Rejected => Level::Err,
                Disposition::Warned => Level::Warning,
            };
            let f = &j.finding;
            let line = format!(
                "{} {} {} {}{incoming} {} {} {} {}: {}",
                j.disposition.as_str(),
                field("domain", &self.call.domain),
                field("uuid", uuid),
                field("op", self.phase.op()),
                field("rule", f.rule.id.as_str()),
                field("device", &f.device),
                field("severity", f.severity().as_str()),
                field(
                    "mode",
                    if verdict.exempt {
                        "exempt"
                    } else {
                        verdict.mode.as_str()
                    }
                ),
                f.message
            );
            self.log.log(level, &line);
        }
    }

    /// The hook could not judge: say so loudly, then let the guest through or not, by policy
    /// (always through when the setup itself is in doubt).
    fn internal_error(&mut self, what: &str) -> u8 {
        let deny = self.config.on_internal_error == OnInternalError::Deny && !self.warn_only;
        let (code, outcome) = if deny { (1, "refused") } else { (0, "allowed") };
        let setting = if self.config.on_internal_error == OnInternalError::Deny {
            "deny"
        } else {
            "allow"
        };
        let what = controls(what);
        let why = if setting == "deny" && !deny {
            " is not honoured while the hook's setup is in doubt"
        } else {
            ""
        };
        let _ = writeln!(
            self.stderr,
            "phbguard: internal error: cannot judge domain '{}' at {} begin: {what}; {} (on_internal_error = \"{setting}\"{why})",
            self.name(),
            self.phase.op(),
            if deny { "refusing it" } else { "letting it through" },
        );
        self.log.log(
            Level::Err,
            &format!(
                "internal-error {} {} {} {}: cannot judge: {what}",
                field("domain", &self.call.domain),
                field("op", self.phase.op()),
                field("outcome", outcome),
                field("on_internal_error", setting),
            ),
        );
        code
    }
}

fn incoming_str(i: Incoming) -> &'static str {
    match i {
        Incoming::Refuse => "refuse",
        Incoming::Warn => "warn",
    }
}

/// What `virsh start` (or `restore`, `migrate`) shows the admin when the guest is refused: at
/// most [`MAX_REFUSAL_LINES`] findings, the blocking ones first, then the ways out.
pub fn refusal_text(
    name: &str,
    occasion: Occasion,
    verdict: &Verdict,
    policy: &Path,
    config: &Config,
) -> String {
    let shown = controls(name);
    let quoted = shell_word(name);
    let sysfs = if config.sysfs_root == Path::new("/sys") {
        String::new()
    } else {
        format!(
            " --sysfs-root {}",
            shell_word(&config.sysfs_root.to_string_lossy())
        )
    };
    let mut text = String::new();
    for j in verdict.findings.iter().take(MAX_REFUSAL_LINES) {
        let f = &j.finding;
        if j.blocking {
            let _ = writeln!(text, "{}: {}", f.rule.id, controls(&f.message));
        } else {
            let _ = writeln!(text, "{} ({}): {}", f.rule.id, f.severity(), controls(&f.message));
        }
    }
    let hidden = verdict.findings.len().saturating_sub(MAX_REFUSAL_LINES);
    if hidden > 0 {
        let _ = writeln!(
            text,
            "… and {hidden} more: virsh dumpxml --inactive {quoted} | phbguard check{sysfs} -"
        );
    }
    let errors = verdict.blocking();
    let first = verdict
        .findings
        .iter()
        .find(|j| j.blocking)
        .map_or("", |j| j.finding.rule.id.as_str());
    let refused = match occasion.arrival {
        Arrival::Start => "refused to start",
        Arrival::Incoming(Phase::Migrate) => "refused the incoming migration of",
        Arrival::Incoming(_) => "refused to restore",
    };
    let _ = writeln!(
        text,
        "phbguard: {refused} '{shown}': {errors} error{}; 'phbguard explain {first}' tells why and how to fix it",
        if errors == 1 { "" } else { "s" },
    );
    let policy = shell_word(&policy.to_string_lossy());
    match occasion.arrival {
        Arrival::Start => {
            // Through the API, never dumpxml > file > define: dumpxml without --security-info
            // drops VNC/SPICE passwords and the redefine would erase them.
            let _ = writeln!(
                text,
                "phbguard: fix its definition: phbguard fix --domain {quoted}{sysfs} (shows the diff, redefines when you confirm)"
            );
            let _ = writeln!(
                text,
                "phbguard: or start it anyway: virsh metadata {quoted} --uri {METADATA_NS} --key phbguard --set \"<policy mode='warn'/>\" --config"
            );
            let _ = writeln!(
                text,
                "phbguard: or warn for every guest: mode = \"warn\" in {policy}"
            );
        }
        Arrival::Incoming(_) => {
            let _ = writeln!(
                text,
                "phbguard: let incoming guests in with a warning: incoming = \"warn\" in {policy} (the default)"
            );
            let _ = writeln!(
                text,
                "phbguard: then fix its definition: phbguard fix --domain {quoted}{sysfs} (shows the diff, redefines when you confirm)"
            );
        }
    }
    text
}

/// `s` as one shell word: bare when it is plain, else single-quoted; control characters are
/// escaped (the line is for reading; such a name must be typed by hand anyway).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", controls(s).replace('\'', "'\\''"))
    }
}

/// A bug must not block every guest either: a panic is an internal error under the policy. The
/// release build aborts on panic, so the exit happens in the panic hook itself.
fn on_panic(edge: &Edge) {
    let config = edge.config.clone();
    let call = edge.call.clone();
    let (phase, policy_path, warn_only) = (edge.phase, edge.policy_path.clone(), edge.warn_only);
    std::panic::set_hook(Box::new(move |info| {
        let mut edge = Edge {
            call: call.clone(),
            phase,
            log: Syslog::on_first_line(&config.syslog_socket),
            stderr: io::stderr().lock(),
            policy_path: policy_path.clone(),
            warn_only,
            config: config.clone(),
        };
        let what = format!("phbguard panicked: {info}");
        let code = edge.internal_error(&what);
        std::process::exit(code.into());
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
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
        ] {
            let args = os(&[name, "prepare", "begin", "-"]);
            let (options, c) = split_call(&args).unwrap();
            assert!(options.is_empty());
            assert_eq!((c.domain.as_str(), c.op.as_str()), (name, "prepare"));
        }
        assert_eq!(split_call(&os(&["--help"])), Err(ArgsError::Help));
        assert!(matches!(
            split_call(&os(&["db", "prepare", "begin"])),
            Err(ArgsError::Usage(_))
        ));
    }

    #[test]
    fn options_before_the_call() {
        let o = parse_options(&os(&["--config", "/x.toml"]), false).unwrap();
        assert_eq!(o.config, Some(PathBuf::from("/x.toml")));
        let o = parse_options(&os(&["--config=/y.toml", "/hook"]), true).unwrap();
        assert_eq!(
            (o.config, o.script),
            (Some(PathBuf::from("/y.toml")), Some("/hook".into()))
        );
        // '#!/usr/bin/phbguard hook --config': the script path is not the policy file.
        assert!(parse_options(&os(&["--config", "/etc/libvirt/hooks/qemu.d/phbguard"]), true).is_err());
        for bad in [
            &["--confg=/x"][..],
            &["-c", "/x"],
            &["--bogus"],
            &["--help"],
            &["--config="],
            &["a", "b"],
        ] {
            assert!(parse_options(&os(bad), false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("db-02.x"), "db-02.x");
        assert_eq!(shell_word("it's me"), "'it'\\''s me'");
        assert_eq!(shell_word("a\u{1b}[31m"), "'a\\x1b[31m'");
        assert_eq!(shell_word(""), "''");
    }
}
