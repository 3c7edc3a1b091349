//! One judged call (`prepare begin`, `migrate begin`, `restore begin`): the verdict on the domain
//! XML from stdin under the policy, and what the admin sees of it: syslog lines, and on stderr
//! a refusal, a setup mistake or an internal error. Nothing is ever printed on stdout: libvirt
//! reads it as a replacement XML at `migrate` and `restore`.

use std::io::{self, Write};
use std::path::PathBuf;

use phbguard_core::config::{Config, Mode, OnInternalError};
use phbguard_core::escape::controls;
use phbguard_core::log_line::{Level, Line};
use phbguard_core::model::Domain;
use phbguard_core::parse::parse_domain;
use phbguard_core::verdict::{Arrival, Disposition, HookCall, Phase, Verdict, decide};
use phbguard_io::input::InputError;
use phbguard_io::sysfs::Sysfs;
use phbguard_io::syslog::Syslog;

use super::args::{Call, Mistake};
use super::incoming::Marks;
use super::refusal::{refusal_text, shell_word};

/// One judged call and where its words go.
pub struct JudgedCall {
    pub call: Call,
    pub phase: Phase,
    pub config: Config,
    pub policy_path: PathBuf,
    /// The setup is in doubt: judge in warn mode, let the guest through on internal errors.
    pub warn_only: bool,
    log: Syslog,
    stderr: io::StderrLock<'static>,
}

impl JudgedCall {
    pub fn new(call: Call, phase: Phase, config: Config, policy_path: PathBuf) -> JudgedCall {
        JudgedCall {
            call,
            phase,
            // A guest judged clean logs nothing: no socket until a line is sent.
            log: Syslog::on_first_line(&config.syslog_socket),
            stderr: io::stderr().lock(),
            policy_path,
            warn_only: false,
            config,
        }
    }

    fn name(&self) -> String {
        controls(&self.call.domain).into_owned()
    }

    /// A syslog line about this call: `VERB domain=NAME`, the fields to come.
    fn line(&self, verb: &str) -> Line {
        Line::new(verb).field("domain", &self.call.domain)
    }

    /// One line, however many mistakes: the first, how many more, and where to see them all.
    pub fn report_mistakes(&mut self, mistakes: &[Mistake]) {
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
        let logged = self.line("setup-error").field("op", self.phase.op()).says(&line);
        self.log.log(Level::Err, &logged);
    }

    /// Judges the domain XML read from stdin: exit 0 (let through) or 1 (refused).
    pub fn judge(&mut self, input: Result<Vec<u8>, InputError>, host: &Sysfs) -> u8 {
        let domain = match self.domain(input) {
            Ok(domain) => domain,
            Err(code) => return code,
        };
        let uuid = domain.uuid.clone().unwrap_or_else(|| "-".into());
        let marks = Marks::new(&self.config.state_dir);
        let occasion = self.occasion(&marks, &uuid);
        let verdict = decide(&domain, host, &self.config, occasion);
        if let Some(mode) = &verdict.bad_metadata_mode {
            self.report_bad_metadata(mode, &uuid);
        }
        self.log_findings(&verdict, &uuid, occasion);
        self.mark_incoming(&marks, &verdict, &uuid);
        if !verdict.reject() {
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

    /// The domain, or (when stdin or its XML cannot be read) the internal error's exit code.
    fn domain(&mut self, input: Result<Vec<u8>, InputError>) -> Result<Domain, u8> {
        match input {
            Ok(bytes) => {
                parse_domain(&bytes).map_err(|e| self.internal_error(&format!("the domain XML: {e}")))
            }
            Err(e) => Err(self.internal_error(&format!("standard input: {e}"))),
        }
    }

    /// How the guest arrives: a `prepare` that follows this guest's `migrate begin` or
    /// `restore begin` (its mark, taken here) is incoming; anything else is a start.
    fn occasion(&mut self, marks: &Marks, uuid: &str) -> HookCall {
        let mut occasion = HookCall::new(self.phase);
        occasion.warn_only = self.warn_only;
        if self.phase != Phase::Prepare {
            return occasion;
        }
        match marks.take(uuid, &self.call.domain) {
            Ok(Some(via)) => {
                occasion.arrival = Arrival::Incoming(via);
                let line = self
                    .line("incoming")
                    .field("uuid", uuid)
                    .field("op", "prepare")
                    .field("after", via.op())
                    .says(format!(
                        "the start that follows '{} begin' is judged by incoming = \"{}\"",
                        via.op(),
                        self.config.incoming.as_str(),
                    ));
                self.log.log(Level::Info, &line);
            }
            Ok(None) => {}
            Err(e) => {
                let line = self
                    .line("incoming-mark-error")
                    .field("op", "prepare")
                    .says(format!("cannot read the incoming mark: {e}; judged by mode"));
                self.log.log(Level::Err, &line);
            }
        }
        occasion
    }

    /// A `<phbguard:policy mode>` that names no mode: said, and the policy file's mode used.
    fn report_bad_metadata(&mut self, mode: &str, uuid: &str) {
        let line = format!(
            "<metadata><phbguard:policy mode='{}'> is not enforce, warn or off; using mode '{}' from the policy file",
            controls(mode),
            self.config.mode.as_str()
        );
        let _ = writeln!(self.stderr, "phbguard: {}: {line}", self.name());
        let logged = self
            .line("metadata-error")
            .field("uuid", uuid)
            .field("op", self.phase.op())
            .says(&line);
        self.log.log(Level::Warning, &logged);
    }

    /// A guest let in at `migrate begin`/`restore begin` with findings leaves a mark, so that
    /// the `prepare begin` that follows is judged by `incoming` too.
    fn mark_incoming(&mut self, marks: &Marks, verdict: &Verdict, uuid: &str) {
        if !matches!(self.phase, Phase::Migrate | Phase::Restore)
            || verdict.reject()
            || verdict.findings.is_empty()
        {
            return;
        }
        if let Err(e) = marks.put(uuid, &self.call.domain, self.phase) {
            let line = self
                .line("incoming-mark-error")
                .field("op", self.phase.op())
                .says(format!(
                    "cannot keep the incoming mark: {e}; its 'prepare begin' will be judged by mode = \"{}\"",
                    verdict.mode.as_str()
                ));
            self.log.log(Level::Err, &line);
        }
    }

    fn log_findings(&mut self, verdict: &Verdict, uuid: &str, occasion: HookCall) {
        let incoming = match (self.phase, occasion.arrival) {
            (Phase::Prepare, Arrival::Incoming(via)) => Some(via.op()),
            _ => None,
        };
        let mode = if verdict.exempt {
            "exempt"
        } else {
            verdict.mode.as_str()
        };
        for j in &verdict.findings {
            let level = match j.disposition {
                Disposition::Exempt | Disposition::Fix => Level::Notice,
                Disposition::Rejected => Level::Err,
                Disposition::Warned => Level::Warning,
            };
            let f = &j.finding;
            let line = Line::new(j.disposition.as_str())
                .field("domain", &self.call.domain)
                .field("uuid", uuid)
                .field("op", self.phase.op())
                .field_if("incoming", incoming)
                .field("rule", f.rule.id.as_str())
                .field("device", &f.device)
                .field("severity", f.severity().as_str())
                .field("mode", mode)
                .says(&f.message);
            self.log.log(level, &line);
        }
    }

    /// The hook could not judge: say so loudly, then let the guest through or not, by policy
    /// (always through when the setup itself is in doubt).
    pub fn internal_error(&mut self, what: &str) -> u8 {
        let setting = self.config.on_internal_error;
        let deny = setting == OnInternalError::Deny && !self.warn_only;
        let (code, outcome) = if deny { (1, "refused") } else { (0, "allowed") };
        let what = controls(what);
        let why = if setting == OnInternalError::Deny && !deny {
            " is not honoured while the hook's setup is in doubt"
        } else {
            ""
        };
        let _ = writeln!(
            self.stderr,
            "phbguard: internal error: cannot judge domain '{}' at {} begin: {what}; {} (on_internal_error = \"{}\"{why})",
            self.name(),
            self.phase.op(),
            if deny { "refusing it" } else { "letting it through" },
            setting.as_str(),
        );
        let line = self
            .line("internal-error")
            .field("op", self.phase.op())
            .field("outcome", outcome)
            .field("on_internal_error", setting.as_str())
            .says(format!("cannot judge: {what}"));
        self.log.log(Level::Err, &line);
        code
    }
}
