//! What the watcher does with one event: judge the definition it is about, log, and (with
//! `[watch] action = "fix"`) redefine it through [`crate::redefine`].
//!
//! Its own redefine must not loop. A compliant definition is never redefined, and the DEFINED
//! event a redefine causes is recognised: the definition read back right after defining is
//! remembered per UUID, and if the next one read is that same text and still breaks a rule
//! (libvirt changed what phbguard wrote), it is logged and left alone.

use std::collections::HashMap;

use phbguard_core::config::{Config, Mode, WatchAction};
use phbguard_core::fix::Options;
use phbguard_core::parse_domain;
use phbguard_core::rules::{Finding, Severity, judge};
use phbguard_core::syslog::{Level, field};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::sys;

use super::journal::{Journal, Op, about};
use crate::events::{DomainId, Event};
use crate::host::Host;
use crate::redefine::{self, Outcome};

/// How often a definition that changes under the watcher is judged again before it gives up
/// until the next event.
const ATTEMPTS: usize = 3;

pub struct Handler {
    config: Config,
    pub journal: Journal,
    /// Per UUID, the definition phbguard's last redefine left (read back with SECURE).
    redefined: HashMap<String, String>,
}

/// Whether a definition must be judged again (it changed while it was being judged).
enum Next {
    Done,
    Again,
}

impl Handler {
    pub fn new(config: Config, journal: Journal) -> Handler {
        Handler {
            config,
            journal,
            redefined: HashMap::new(),
        }
    }

    pub fn action(&self) -> WatchAction {
        self.config.watch_action
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A reloaded policy: from the next judgement on, its action, exemptions and host facts
    /// (`sysfs_root` is read for every judgement); lines go to its syslog socket. What the
    /// watcher remembers of its own redefines stays: they were made whatever the policy.
    pub fn reconfigure(&mut self, config: Config) {
        if config.syslog_socket != self.config.syslog_socket {
            self.journal = Journal::open(&config.syslog_socket);
        }
        self.config = config;
    }

    /// Handles one event from the connection `conn` (not `Closed`: the service loop does).
    pub fn event(&mut self, conn: &Connect, event: Event) {
        match event {
            Event::Defined { domain, .. } => self.definition(conn, &domain, Op::Define),
            Event::Undefined { domain } => {
                self.redefined.remove(&domain.uuid);
            }
            Event::DeviceAdded { domain, alias } => self.hotplug(conn, &domain, &alias),
            Event::Closed { .. } => {}
        }
    }

    /// Judges every persistent definition once: what was defined while nobody watched.
    pub fn audit(&mut self, conn: &Connect) {
        let domains = match conn.list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_PERSISTENT) {
            Ok(domains) => domains,
            Err(e) => {
                let line = format!(
                    "internal-error {}: cannot list domains: {}",
                    field("op", "audit"),
                    e.message()
                );
                self.journal.log(Level::Err, &line);
                return;
            }
        };
        let count = domains.len();
        for dom in domains {
            if let (Ok(name), Ok(uuid)) = (dom.name(), dom.uuid_string()) {
                self.judge_definition(conn, &dom, &DomainId { name, uuid }, Op::Audit);
            }
        }
        let line = format!(
            "audited {}: {count} defined domain{}",
            field("op", "audit"),
            plural(count)
        );
        self.journal.log(Level::Info, &line);
    }

    /// A DEFINED event (or the audit): judge the persistent definition, warn or fix.
    pub fn definition(&mut self, conn: &Connect, id: &DomainId, op: Op) {
        match conn.lookup_domain_by_uuid_string(&id.uuid) {
            Ok(dom) => self.judge_definition(conn, &dom, id, op),
            // Undefined again before its event was handled: nothing left to judge.
            Err(e) if e.code().is(ErrorNumber::NoDomain) => {}
            Err(e) => self.internal(id, op, &format!("cannot look it up: {}", e.message())),
        }
    }

    fn judge_definition(&mut self, conn: &Connect, dom: &Domain, id: &DomainId, op: Op) {
        for _ in 0..ATTEMPTS {
            if let Next::Done = self.judge_once(conn, dom, id, op) {
                return;
            }
        }
        let line = format!(
            "changed {}: the definition kept changing while phbguard judged it; left as it is \
             until it is defined again",
            about(id, op)
        );
        self.journal.log(Level::Warning, &line);
    }

    fn judge_once(&mut self, conn: &Connect, dom: &Domain, id: &DomainId, op: Op) -> Next {
        let xml = match redefine::read_definition(dom) {
            Ok(xml) => xml,
            // A transient guest has no definition to judge here; the hook judges it at start.
            Err(redefine::Error::Transient(_)) => return Next::Done,
            Err(e) => {
                self.internal(id, op, &e.to_string());
                return Next::Done;
            }
        };
        // Is this the DEFINED event of phbguard's own redefine?
        let own = self.redefined.remove(&id.uuid).is_some_and(|after| after == xml);
        let definition = match parse_domain(xml.as_bytes()) {
            Ok(d) => d,
            Err(e) => {
                self.internal(id, op, &format!("cannot judge libvirt's XML: {e}"));
                return Next::Done;
            }
        };
        if !definition.is_pseries() {
            return Next::Done;
        }
        let mode = self.domain_mode(id, op, definition.policy_mode.as_deref());
        if mode == Mode::Off {
            return Next::Done;
        }
        let exempt = self.config.is_exempt(&id.name, Some(&id.uuid));
        let Some(host) = self.host(conn, id, op) else {
            return Next::Done;
        };
        let findings = judge(&definition, &host);
        let errors = findings.iter().any(|f| f.severity() == Severity::Error);
        if own {
            if errors {
                let line = format!(
                    "unfixable {}: libvirt changed the definition phbguard wrote and it still \
                     breaks the rules; not redefined again",
                    about(id, op)
                );
                self.journal.log(Level::Err, &line);
                self.log_findings(id, op, "warned", "fix", &findings);
            }
            return Next::Done;
        }
        // What this guest gets: the policy's action, unless it is exempt or opted out.
        let action = if exempt {
            "exempt"
        } else if mode == Mode::Warn {
            "warn"
        } else {
            self.config.watch_action.as_str()
        };
        if !errors || action != WatchAction::Fix.as_str() {
            let verdict = if exempt { "exempt" } else { "warned" };
            self.log_findings(id, op, verdict, action, &findings);
            return Next::Done;
        }

        let proposal = match redefine::propose_from(id.name.clone(), xml, &host, Options::default()) {
            Ok(p) => p,
            Err(e) => {
                self.internal(id, op, &e.to_string());
                return Next::Done;
            }
        };
        if !proposal.is_clean() {
            self.log_findings(id, op, "warned", action, &findings);
            for problem in proposal.fixed.problems() {
                let line = format!("unfixable {}: {problem}", about(id, op));
                self.journal.log(Level::Err, &line);
            }
            return Next::Done;
        }
        match redefine::redefine(conn, dom, &proposal) {
            Ok(Outcome::Redefined { after }) => {
                self.redefined.insert(id.uuid.clone(), after);
                self.log_findings(id, op, "fixed", action, &findings);
                let changes = proposal.changes();
                let running = dom.is_active().unwrap_or(false);
                let line = format!(
                    "redefined {} {}: {}{}",
                    about(id, op),
                    field("changes", &changes.len().to_string()),
                    changes.join("; "),
                    if running {
                        "; the guest is running and keeps its current devices: the new definition \
                         applies at its next cold boot (shut it down, then start it)"
                    } else {
                        ""
                    }
                );
                self.journal.log(Level::Notice, &line);
                Next::Done
            }
            Ok(Outcome::Unchanged) => Next::Done,
            Err(redefine::Error::ChangedMeanwhile(_)) => {
                let line = format!(
                    "changed {}: the definition changed while phbguard judged it; not overwritten, \
                     judging the new one",
                    about(id, op)
                );
                self.journal.log(Level::Notice, &line);
                Next::Again
            }
            Err(e) => {
                self.internal(id, op, &e.to_string());
                Next::Done
            }
        }
    }

    /// A DEVICE_ADDED event: judge the running guest's live definition. libvirt offers no way
    /// to stop a hot-plug, so this only warns.
    fn hotplug(&mut self, conn: &Connect, id: &DomainId, alias: &str) {
        let op = Op::Hotplug;
        let dom = match conn.lookup_domain_by_uuid_string(&id.uuid) {
            Ok(dom) => dom,
            Err(e) if e.code().is(ErrorNumber::NoDomain) => return,
            Err(e) => return self.internal(id, op, &format!("cannot look it up: {}", e.message())),
        };
        // Stopped again already: its live definition is gone (and flags 0 would read the
        // persistent one instead).
        if !dom.is_active().unwrap_or(false) {
            return;
        }
        // The live definition (flags 0); nothing is redefined, so no secrets are needed.
        let xml = match dom.xml_desc(0) {
            Ok(xml) => xml,
            Err(e) => {
                return self.internal(
                    id,
                    op,
                    &format!("cannot read the live definition: {}", e.message()),
                );
            }
        };
        let definition = match parse_domain(xml.as_bytes()) {
            Ok(d) => d,
            Err(e) => return self.internal(id, op, &format!("cannot judge libvirt's XML: {e}")),
        };
        if !definition.is_pseries()
            || self.domain_mode(id, op, definition.policy_mode.as_deref()) == Mode::Off
        {
            return;
        }
        let Some(host) = self.host(conn, id, op) else {
            return;
        };
        // Warnings too: a bridge, say, is only a warning, and a hot-plug is the moment to hear it.
        for f in judge(&definition, &host) {
            let line = format!(
                "warned {} {} {} {} {}: {}; libvirt cannot refuse a hot-plug: detach what breaks \
                 the rule ('virsh detach-device --live') or fix the definition for the next boot",
                about(id, op),
                field("added", alias),
                field("rule", f.rule.id.as_str()),
                field("device", &f.device),
                field("severity", f.severity().as_str()),
                f.message
            );
            let level = match f.severity() {
                Severity::Error => Level::Warning,
                Severity::Warning => Level::Notice,
            };
            self.journal.log(level, &line);
        }
    }

    /// One line per finding, as the hook writes them (`action=` where the hook has `mode=`).
    fn log_findings(&mut self, id: &DomainId, op: Op, verdict: &str, action: &str, findings: &[Finding]) {
        for f in findings {
            let level = match (verdict, f.severity()) {
                ("fixed" | "exempt", _) => Level::Notice,
                (_, Severity::Error) => Level::Warning,
                (_, Severity::Warning) => Level::Notice,
            };
            let line = format!(
                "{verdict} {} {} {} {} {}: {}",
                about(id, op),
                field("rule", f.rule.id.as_str()),
                field("device", &f.device),
                field("severity", f.severity().as_str()),
                field("action", action),
                f.message
            );
            self.journal.log(level, &line);
        }
    }

    /// The domain's `<phbguard:policy mode>` opt-out: `off` skips it, `warn` never redefines.
    fn domain_mode(&mut self, id: &DomainId, op: Op, metadata: Option<&str>) -> Mode {
        match metadata {
            None => Mode::Enforce,
            Some(m) => Mode::parse(m).unwrap_or_else(|| {
                let line = format!(
                    "metadata-error {}: <metadata><phbguard:policy mode='{m}'> is not enforce, warn \
                     or off; not redefining it",
                    about(id, op)
                );
                self.journal.log(Level::Warning, &line);
                Mode::Warn
            }),
        }
    }

    /// Host facts, fresh for every judgement (host devices come and go): the connection's
    /// node devices (right for a remote URI too), unless the policy file names a sysfs tree
    /// of its own (tests, offline hosts).
    fn host<'c>(&mut self, conn: &'c Connect, id: &DomainId, op: Op) -> Option<Host<'c>> {
        match Host::new(conn, self.config.sysfs_override()) {
            Ok(host) => Some(host),
            Err(e) => {
                self.internal(id, op, &format!("cannot learn the host's devices: {e}"));
                None
            }
        }
    }

    fn internal(&mut self, id: &DomainId, op: Op, what: &str) {
        let line = format!("internal-error {}: {what}", about(id, op));
        self.journal.log(Level::Err, &line);
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    //! The handler on libvirt's test driver (in-process, no daemon): what it defines and what
    //! it logs, one event at a time.

    use std::os::unix::net::UnixDatagram;

    use super::*;

    /// A pSeries guest with host device 0002:01:00.0 on the default PHB (hostdev-on-default-phb).
    fn bad(name: &str, uuid: &str) -> String {
        format!(
            "<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid><memory unit='GiB'>1</memory>\
             <os><type arch='ppc64le' machine='pseries'>hvm</type></os><devices>\
             <controller type='pci' index='0' model='pci-root'><model name='spapr-pci-host-bridge'/>\
             <target index='0'/></controller>\
             <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0002' \
             bus='0x01' slot='0x00' function='0x0'/></source><address type='pci' domain='0x0000' \
             bus='0x00' slot='0x05' function='0x0'/></hostdev></devices></domain>"
        )
    }

    struct World {
        dir: tempfile::TempDir,
        log: UnixDatagram,
        conn: Connect,
        handler: Handler,
    }

    impl World {
        /// test:///default is shared by the whole process: each test names its own guest.
        fn new(action: WatchAction) -> World {
            let dir = tempfile::tempdir().unwrap();
            let dev = dir.path().join("sys/bus/pci/devices/0002:01:00.0");
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::create_dir_all(dir.path().join("sys/kernel/iommu_groups/1")).unwrap();
            std::os::unix::fs::symlink("../../../../kernel/iommu_groups/1", dev.join("iommu_group")).unwrap();
            let log = UnixDatagram::bind(dir.path().join("log")).unwrap();
            log.set_nonblocking(true).unwrap();
            let config = Config {
                sysfs_root: dir.path().join("sys"),
                syslog_socket: dir.path().join("log"),
                watch_action: action,
                ..Config::default()
            };
            let handler = Handler::new(config.clone(), Journal::open(&config.syslog_socket));
            let conn = Connect::open(Some("test:///default")).unwrap();
            World {
                dir,
                log,
                conn,
                handler,
            }
        }

        fn define(&self, xml: &str) -> DomainId {
            let dom = self.conn.define_domain_xml(xml).unwrap();
            DomainId {
                name: dom.name().unwrap(),
                uuid: dom.uuid_string().unwrap(),
            }
        }

        fn definition(&self, id: &DomainId) -> String {
            let dom = self.conn.lookup_domain_by_uuid_string(&id.uuid).unwrap();
            redefine::read_definition(&dom).unwrap()
        }

        /// Removes the test's guest from the shared test:///default.
        fn undefine(&self, id: &DomainId) {
            let dom = self.conn.lookup_domain_by_uuid_string(&id.uuid).unwrap();
            dom.undefine().unwrap();
        }

        /// The lines logged since the last call (syslog sends before `log` returns).
        fn lines(&self) -> Vec<String> {
            let mut buf = [0u8; 8192];
            let mut lines = Vec::new();
            while let Ok(n) = self.log.recv(&mut buf) {
                lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            lines
        }

        fn event(&mut self, id: &DomainId) {
            let event = Event::Defined {
                domain: id.clone(),
                detail: crate::events::Defined::Added,
            };
            self.handler.event(&self.conn, event);
        }
    }

    fn verbs(lines: &[String]) -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.split_once("]: ").and_then(|(_, rest)| rest.split(' ').next()))
            .collect()
    }

    #[test]
    fn fix_redefines_once_and_leaves_its_own_definition_alone() {
        let mut w = World::new(WatchAction::Fix);
        let id = w.define(&bad("phbguard-unit-fix", "7e57f1ee-1200-4000-8000-000000000001"));
        w.event(&id);
        let fixed = w.definition(&id);
        assert!(fixed.contains("bus='0x01' slot='0x01'"), "{fixed}");
        assert_eq!(verbs(&w.lines()), ["fixed", "redefined"]);
        // The DEFINED event of that redefine: judged, compliant, nothing more.
        w.event(&id);
        assert!(w.lines().is_empty());
        assert_eq!(w.definition(&id), fixed);
        w.undefine(&id);
    }

    #[test]
    fn its_own_definition_still_broken_is_not_redefined_again() {
        let mut w = World::new(WatchAction::Fix);
        let id = w.define(&bad("phbguard-unit-own", "7e57f1ee-1200-4000-8000-000000000002"));
        // As if libvirt had turned phbguard's last redefine into this non-compliant definition.
        let current = w.definition(&id);
        w.handler.redefined.insert(id.uuid.clone(), current.clone());
        w.event(&id);
        let lines = w.lines();
        assert_eq!(verbs(&lines), ["unfixable", "warned"], "{lines:#?}");
        assert!(lines[0].contains("not redefined again"), "{lines:#?}");
        assert_eq!(w.definition(&id), current);
        // The next definition (someone else's) is fixed as usual.
        w.event(&id);
        assert_eq!(verbs(&w.lines()), ["fixed", "redefined"]);
        w.undefine(&id);
    }

    #[test]
    fn a_reconfigured_handler_judges_with_the_new_policy_and_logs_to_its_socket() {
        let mut w = World::new(WatchAction::Warn);
        let id = w.define(&bad(
            "phbguard-unit-reload",
            "7e57f1ee-1200-4000-8000-000000000004",
        ));
        let before = w.definition(&id);
        w.event(&id);
        assert_eq!(verbs(&w.lines()), ["warned"]);
        assert_eq!(w.definition(&id), before);

        // What a SIGHUP with a clean file does: action fix, another syslog socket.
        let moved = UnixDatagram::bind(w.dir.path().join("log2")).unwrap();
        moved.set_nonblocking(true).unwrap();
        let config = Config {
            watch_action: WatchAction::Fix,
            syslog_socket: w.dir.path().join("log2"),
            ..w.handler.config().clone()
        };
        w.handler.reconfigure(config);
        w.event(&id);
        assert!(w.definition(&id).contains("bus='0x01' slot='0x01'"));
        assert!(w.lines().is_empty(), "the old socket still gets lines");
        let mut buf = [0u8; 8192];
        let mut lines = Vec::new();
        while let Ok(n) = moved.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(verbs(&lines), ["fixed", "redefined"]);
        w.undefine(&id);
    }

    #[test]
    fn warn_exempt_and_opted_out_guests_are_never_redefined() {
        let mut w = World::new(WatchAction::Warn);
        let id = w.define(&bad("phbguard-unit-warn", "7e57f1ee-1200-4000-8000-000000000003"));
        let before = w.definition(&id);
        w.event(&id);
        let lines = w.lines();
        assert_eq!(verbs(&lines), ["warned"]);
        assert!(lines[0].contains("rule=hostdev-on-default-phb") && lines[0].contains("action=warn:"));
        assert_eq!(w.definition(&id), before);

        let mut w = World::new(WatchAction::Fix);
        w.handler.config.exempt = vec![id.name.clone()];
        w.event(&id);
        assert_eq!(verbs(&w.lines()), ["exempt"]);
        assert_eq!(w.definition(&id), before);

        w.handler.config.exempt.clear();
        let opted_out = before.replacen(
            "<memory",
            "<metadata><phbguard:policy xmlns:phbguard='urn:phbguard:policy:1' mode='warn'/></metadata><memory",
            1,
        );
        w.define(&opted_out);
        let before = w.definition(&id);
        w.event(&id);
        let lines = w.lines();
        assert_eq!(verbs(&lines), ["warned"], "{lines:#?}");
        assert!(lines[0].contains("action=warn:"), "{lines:#?}");
        assert_eq!(w.definition(&id), before);
        w.undefine(&id);
    }
}
