//! What the watcher does with a guest: judge its definition with the verdict the hook and
//! audit use ([`phbguard_core::verdict`]), log, and with `[watch] action = "fix"` redefine it,
//! then follow what happened around that define ([`super::aftermath`]) and undo a re-creation.
//!
//! libvirt has no conditional define, so a fix is made in three steps that narrow the window
//! in which someone else's change can be lost, and a fourth that finds what still slipped
//! through:
//! 1. a guest is judged only once its definition has been left alone for
//!    [`super::tracker::SETTLE`] (an undefine meanwhile cancels it);
//! 2. the definition is read (with secrets), judged and fixed;
//! 3. the events that arrived meanwhile are drained: any about the guest means it changed, and
//!    it settles again; then it is read again and compared with what was judged, the events
//!    drained once more, and only then is it defined;
//! 4. every event about the guest after that last drain is collected until they go quiet,
//!    and what is defined then is read: the two say whether the define replaced someone's
//!    change or re-created a guest undefined meanwhile (then it is undefined again, and that
//!    undefine followed the same way). Every define libvirt accepted is logged as `redefined`
//!    the moment it returns, whatever is found after.

use std::time::Instant;

use phbguard_core::config::{Config, Mode, WatchAction};
use phbguard_core::host::Facts;
use phbguard_core::log_line::{Level, Line};
use phbguard_core::parse_domain;
use phbguard_core::rules::{Severity, judge, judge_with};
use phbguard_core::spare::{self, Landing};
use phbguard_core::verdict::{
    Action, Disposition, Judged, Verdict, Watched, decide, decide_on, rewrite_options,
};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::sys;

use super::aftermath::{self, AfterDefine, Now, Seen};
use super::journal::{Journal, Op, about};
use super::tracker::{Due, Follow, Meanwhile, Own, Tracker};
use crate::events::DomainId;
use crate::host::{Host, connection_is_remote, host_source};
use crate::redefine::{self, Proposal};

/// Where the handler gets the events that arrived while it works. It drains them, without
/// blocking, right before each step that must not race with someone else's change.
pub trait Inbox {
    /// Routes every message already waiting into `tracker`.
    fn pump(&mut self, tracker: &mut Tracker);

    /// Whether something waits for the service loop (a signal, the connection's end): then
    /// the work due waits instead.
    fn interrupted(&self) -> bool;
}

pub struct Handler {
    config: Config,
    pub journal: Journal,
    tracker: Tracker,
}

/// How a judgement ended.
enum Judgement {
    /// Nothing more to do, or the tracker settles it again if it changed meanwhile.
    Done,
    /// It changed although no event said so: judge it again once it has settled.
    Again,
    /// The watcher defined it (or may have): follow what happens.
    Defined(Follow),
}

impl Handler {
    pub fn new(config: Config, journal: Journal) -> Handler {
        Handler {
            config,
            journal,
            tracker: Tracker::default(),
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
    /// watcher follows of its own defines goes on as it was.
    pub fn reconfigure(&mut self, config: Config) {
        if config.syslog_socket != self.config.syslog_socket {
            self.journal = Journal::open(&config.syslog_socket);
        }
        self.config = config;
    }

    /// Where the events go as they are taken from the channel.
    pub fn tracker(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    /// When something is due next (while `stopping`, only what follows the watcher's own
    /// calls).
    pub fn next_due(&self, stopping: bool) -> Option<Instant> {
        self.tracker.next_due(stopping)
    }

    /// Whether a define or undefine of the watcher's is still followed.
    pub fn in_flight(&self) -> bool {
        self.tracker.in_flight()
    }

    /// The connection is gone: what waited to be judged is forgotten (the audit after the
    /// next connect judges every guest), what follows the watcher's own calls is kept.
    pub fn connection_lost(&mut self) {
        self.tracker.connection_lost();
    }

    /// The watcher stops with its own calls still followed: says so for each.
    pub fn abandon(&mut self, why: &str) {
        for f in self.tracker.take_followed() {
            let line = about("unverified", &f.id, f.op).says(format_args!(
                "{why} before phbguard could tell what happened to the guest around \
                 its own {}; check it ('virsh dumpxml {}')",
                own_call(&f.own),
                f.id.name
            ));
            self.journal.log(Level::Err, &line);
        }
    }

    /// Judges every persistent definition once: what was defined while nobody watched.
    pub fn audit(&mut self, conn: &Connect, inbox: &mut dyn Inbox) {
        let domains = match conn.list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_PERSISTENT) {
            Ok(domains) => domains,
            Err(e) => {
                let line = Line::new("internal-error")
                    .field("op", "audit")
                    .says(format_args!("cannot list domains: {}", e.message()));
                self.journal.log(Level::Err, &line);
                return;
            }
        };
        let count = domains.len();
        for dom in domains {
            let (Ok(name), Ok(uuid)) = (dom.name(), dom.uuid_string()) else {
                continue;
            };
            // Its own define is being followed: that ends in a judgement if one is needed.
            if self.tracker.following(&uuid) {
                continue;
            }
            self.judge(conn, inbox, &DomainId { name, uuid }, Op::Audit);
        }
        let line = Line::new("audited")
            .field("op", "audit")
            .says(format_args!("{count} defined domain{}", plural(count)));
        self.journal.log(Level::Info, &line);
    }

    /// Does everything due now: hot-plugs, guests that have settled, follows that went quiet.
    /// While `stopping`, nothing new is judged. Returns early when the inbox has a signal or
    /// the connection's end for the service loop.
    pub fn run_due(&mut self, conn: &Connect, inbox: &mut dyn Inbox, stopping: bool) {
        loop {
            inbox.pump(&mut self.tracker);
            if inbox.interrupted() {
                return;
            }
            while let Some((id, alias)) = self.tracker.take_hotplug() {
                self.hotplug(conn, &id, &alias);
            }
            match self.tracker.take_due(Instant::now(), stopping) {
                None => return,
                Some(Due::Judge { id, op }) => self.judge(conn, inbox, &id, op),
                Some(Due::Follow(uuid)) => self.finish(conn, inbox, &uuid),
            }
        }
    }

    /// Judges the guest's persistent definition and warns about or fixes it.
    fn judge(&mut self, conn: &Connect, inbox: &mut dyn Inbox, id: &DomainId, op: Op) {
        self.tracker.judging(&id.uuid);
        match self.judge_once(conn, inbox, id, op) {
            Judgement::Done => self.tracker.judged(id, op),
            Judgement::Again => {
                self.tracker.judged(id, op);
                self.tracker.settle(id.clone(), op, Instant::now());
            }
            Judgement::Defined(follow) => self.tracker.follow(follow),
        }
    }

    fn judge_once(&mut self, conn: &Connect, inbox: &mut dyn Inbox, id: &DomainId, op: Op) -> Judgement {
        let dom = match conn.lookup_domain_by_uuid_string(&id.uuid) {
            Ok(dom) => dom,
            Err(e) if e.code().is(ErrorNumber::NoDomain) => return self.vanished(id, op),
            Err(e) => return self.failed(conn, id, op, &format!("cannot look it up: {}", e.message())),
        };
        let xml = match redefine::read_definition(&dom) {
            Ok(xml) => xml,
            // A transient guest has no definition to judge here; the hook judges it at start.
            Err(redefine::Error::Transient(_)) => return Judgement::Done,
            Err(redefine::Error::Gone(_)) => return self.vanished(id, op),
            Err(e) => return self.failed(conn, id, op, &e.to_string()),
        };
        let definition = match parse_domain(xml.as_bytes()) {
            Ok(d) => d,
            Err(e) => return self.failed(conn, id, op, &format!("cannot judge libvirt's XML: {e}")),
        };
        if !definition.is_pseries() {
            return Judgement::Done;
        }
        let Some(host) = self.host(conn, id, op) else {
            return Judgement::Done;
        };
        let verdict = decide(&definition, &host, &self.config, Watched::Definition);
        self.bad_metadata(id, op, &verdict);
        match verdict.action {
            Action::Leave => return Judgement::Done,
            Action::Warn | Action::Exempt | Action::Refuse => {
                let action = self.action_word(&verdict);
                self.log_findings(id, op, &verdict.findings, Some(action), None);
                return Judgement::Done;
            }
            Action::Fix => {}
        }
        let options = rewrite_options(&self.config);
        let proposal = match redefine::propose_from(id.name.clone(), xml, &host, options) {
            Ok(p) => p,
            Err(e) => return self.failed(conn, id, op, &e.to_string()),
        };
        if !proposal.is_clean() {
            let action = self.action_word(&verdict);
            let warned: Vec<Judged> = verdict.findings.into_iter().map(warned).collect();
            self.log_findings(id, op, &warned, Some(action), None);
            for problem in proposal.fixed.problems() {
                let line = about("unfixable", id, op).says(problem);
                self.journal.log(Level::Err, &line);
            }
            return Judgement::Done;
        }
        if !proposal.changes_definition() {
            return Judgement::Done;
        }
        // The last look: nothing happened to it while it was judged, it is still what was
        // judged, and nothing happened while that was read.
        inbox.pump(&mut self.tracker);
        if let Some(done) = self.changed_meanwhile(id, op) {
            return done;
        }
        match redefine::read_again(&dom) {
            Ok(now) if now == proposal.before => {}
            Ok(_) => {
                let line = about("changed", id, op).says(
                    "the definition changed while phbguard judged it; not overwritten, \
                     judging it again once it has settled",
                );
                self.journal.log(Level::Info, &line);
                return Judgement::Again;
            }
            Err(redefine::Error::Gone(_)) => return self.vanished(id, op),
            Err(e) => return self.failed(conn, id, op, &e.to_string()),
        }
        inbox.pump(&mut self.tracker);
        if let Some(done) = self.changed_meanwhile(id, op) {
            return done;
        }
        self.define(conn, id, op, &verdict, &proposal)
    }

    /// After a drain: whether something happened to the guest while it was judged (then it
    /// is not defined; the tracker judges it again once it has settled, or forgets it).
    fn changed_meanwhile(&mut self, id: &DomainId, op: Op) -> Option<Judgement> {
        let what = match self.tracker.meanwhile(&id.uuid) {
            Meanwhile::Nothing => return None,
            Meanwhile::Changed => {
                "it was defined or changed while phbguard judged it; not overwritten, judging it \
                 again once it has settled"
            }
            Meanwhile::Undefined => "it was undefined while phbguard judged it; nothing to fix",
        };
        let line = about("changed", id, op).says(what);
        self.journal.log(Level::Info, &line);
        Some(Judgement::Done)
    }

    /// Defines the fix and logs it; from here on the guest is followed.
    fn define(
        &mut self,
        conn: &Connect,
        id: &DomainId,
        op: Op,
        verdict: &Verdict,
        proposal: &Proposal,
    ) -> Judgement {
        let changes = proposal.changes();
        let wrote = proposal.fixed.output.clone();
        match conn.define_domain_xml(&wrote) {
            Ok(defined) => {
                let now = Instant::now();
                let action = self.action_word(verdict);
                self.log_findings(id, op, &verdict.findings, Some(action), None);
                self.redefined(id, op, &changes, defined.is_active().unwrap_or(false), "");
                // What libvirt made of it (unless someone defined it right after: the events
                // will tell).
                let read_back = redefine::read_again(&defined).ok();
                let own = Own::Defined {
                    wrote,
                    read_back,
                    logged: true,
                    changes,
                };
                Judgement::Defined(Follow::new(id.clone(), op, own, now))
            }
            // The reply is lost with the connection: libvirt may have applied it. Followed, and
            // worked out once connected again.
            Err(_) if !conn.is_alive().unwrap_or(false) => {
                let own = Own::Defined {
                    wrote,
                    read_back: None,
                    logged: false,
                    changes,
                };
                Judgement::Defined(Follow::new(id.clone(), op, own, Instant::now()))
            }
            Err(e) => match conn.lookup_domain_by_uuid_string(&id.uuid) {
                Err(gone) if gone.code().is(ErrorNumber::NoDomain) => self.vanished(id, op),
                _ => self.internal(
                    id,
                    op,
                    &format!("libvirt refused the fixed definition: {}", e.message()),
                ),
            },
        }
    }

    fn redefined(&mut self, id: &DomainId, op: Op, changes: &[String], running: bool, note: &str) {
        let line = about("redefined", id, op)
            .field("changes", changes.len())
            .says(format_args!(
                "{}{}{note}",
                changes.join("; "),
                if running {
                    "; the guest is running and keeps its current devices: the new definition \
                 applies at its next cold boot (shut it down, then start it)"
                } else {
                    ""
                }
            ));
        self.journal.log(Level::Notice, &line);
    }

    /// A follow is due: its events went quiet (or the watcher waited as long as it will).
    fn finish(&mut self, conn: &Connect, inbox: &mut dyn Inbox, uuid: &str) {
        let Some(f) = self.tracker.followed(uuid) else {
            return;
        };
        let (id, undefined) = (f.id.clone(), matches!(f.own, Own::Undefined { .. }));
        // The common case: the watcher's own define, replacing a definition, and nothing else;
        // what it read back right after is what libvirt made of it.
        if !f.interrupted
            && f.seen == [Seen::Updated]
            && let Own::Defined {
                wrote,
                read_back: Some(read_back),
                logged: true,
                ..
            } = &f.own
        {
            let changed = (read_back != wrote).then(|| read_back.clone());
            let op = f.op;
            self.tracker.unfollow(uuid);
            if let Some(xml) = changed {
                self.libvirt_changed_it(conn, &id, op, &xml);
            }
            return;
        }
        // What is defined now; then the events that came while that was read.
        let dom = match conn.lookup_domain_by_uuid_string(&id.uuid) {
            Ok(dom) => Some(dom),
            Err(e) if e.code().is(ErrorNumber::NoDomain) => None,
            Err(_) => return self.later(uuid),
        };
        let current = match &dom {
            None => None,
            Some(dom) => match redefine::read_definition(dom) {
                Ok(xml) => Some((xml, dom.is_active().unwrap_or(false))),
                Err(redefine::Error::Gone(_) | redefine::Error::Transient(_)) => None,
                Err(_) => return self.later(uuid),
            },
        };
        let before = self.tracker.followed(uuid).map_or(0, |f| f.seen.len());
        inbox.pump(&mut self.tracker);
        let Some(f) = self.tracker.followed(uuid) else {
            return;
        };
        if f.seen.len() != before && !f.given_up(Instant::now()) {
            return self.later(uuid);
        }
        if undefined {
            self.finish_undefine(uuid, current.is_some());
        } else {
            self.finish_define(conn, uuid, dom, current);
        }
    }

    /// Not yet: wait for the events to go quiet again.
    fn later(&mut self, uuid: &str) {
        if let Some(f) = self.tracker.followed(uuid) {
            f.last = Instant::now();
        }
    }

    fn finish_define(
        &mut self,
        conn: &Connect,
        uuid: &str,
        dom: Option<Domain>,
        current: Option<(String, bool)>,
    ) {
        let Some(f) = self.tracker.followed(uuid) else {
            return;
        };
        let Own::Defined {
            wrote,
            read_back,
            logged,
            changes,
        } = f.own.clone()
        else {
            return;
        };
        // The watcher's own: what it wrote, or what it read back right after its define when
        // that define is the one seen and no metadata change came after it.
        let defines = |s: &&Seen| matches!(s, Seen::Added | Seen::Updated);
        let only_ours = f.seen.iter().filter(defines).count() == 1
            && !f
                .seen
                .iter()
                .rev()
                .take_while(|s| !defines(s))
                .any(|s| *s == Seen::Metadata);
        let now = match &current {
            None => Now::Gone,
            Some((xml, running)) if *xml == wrote || (only_ours && read_back.as_ref() == Some(xml)) => {
                Now::Ours { running: *running }
            }
            Some(_) => Now::Other,
        };
        let given_up = f.given_up(Instant::now());
        let outcome = match aftermath::after_define(&f.seen, now) {
            _ if !f.own_seen() => AfterDefine::Unexplained,
            // With events lost, the one define seen may not be the watcher's (its own may be
            // the one lost): undefining could delete a guest someone created meanwhile.
            AfterDefine::Recreated if f.interrupted => AfterDefine::Unexplained,
            outcome => outcome,
        };
        if outcome == AfterDefine::Unexplained && !given_up {
            return self.later(uuid);
        }
        let Some(f) = self.tracker.unfollow(uuid) else {
            return;
        };
        let (id, op) = (f.id.clone(), f.op);
        // The define's reply was lost with the connection: what is there says whether libvirt
        // applied it.
        if let (false, Now::Ours { running }) = (logged, now) {
            let note = "; libvirt applied it, its reply was lost with the connection";
            self.redefined(&id, op, &changes, running, note);
        }
        let events = describe(&f.seen);
        let (level, line) = match outcome {
            AfterDefine::Clean => {
                if let (Now::Ours { .. }, Some((xml, _))) = (now, current)
                    && xml != wrote
                {
                    self.libvirt_changed_it(conn, &id, op, &xml);
                }
                return;
            }
            AfterDefine::Superseded => {
                self.tracker.settle(id, op, Instant::now());
                return;
            }
            AfterDefine::MayHaveReplaced { superseded } => {
                let line = about("conflict", &id, op).says(format_args!(
                    "a change made to it between phbguard's last read and its redefine \
                     may have been replaced by the fix (events since that read: {events}){}; compare \
                     'virsh dumpxml {}' with what was meant and define it again",
                    if superseded {
                        "; it has been changed again since"
                    } else {
                        ""
                    },
                    id.name
                ));
                if superseded {
                    self.tracker.settle(id.clone(), op, Instant::now());
                }
                (Level::Err, line)
            }
            AfterDefine::Recreated => {
                let (Some(dom), Some((xml, _))) = (dom, current) else {
                    return;
                };
                return self.undo(conn, f, &dom, xml, &events);
            }
            AfterDefine::RecreatedRunning => (
                Level::Err,
                about("recreated", &id, op).says(format_args!(
                    "phbguard's redefine re-created it after it was undefined \
                     (events: {events}), and it has been started since: left as it is; if it \
                     should be gone, shut it down and 'virsh undefine {}'",
                    id.name
                )),
            ),
            AfterDefine::RecreatedThenChanged => {
                self.tracker.settle(id.clone(), op, Instant::now());
                (
                    Level::Err,
                    about("recreated", &id, op).says(format_args!(
                        "phbguard's redefine may have re-created it after it was \
                         undefined (events: {events}), and someone has defined or changed it \
                         since: left as it is; if it should be gone, 'virsh undefine {}'",
                        id.name
                    )),
                )
            }
            AfterDefine::Gone { recreated: true } => (
                Level::Notice,
                about("vanished", &id, op).says(format_args!(
                    "phbguard's redefine may have re-created it after an undefine \
                     (events: {events}), and it has been undefined again since: nothing of it is \
                     left"
                )),
            ),
            AfterDefine::Gone { recreated: false } => (
                Level::Info,
                about("vanished", &id, op).says("undefined after phbguard's redefine"),
            ),
            AfterDefine::Unexplained => {
                if now != Now::Gone {
                    self.tracker.settle(id.clone(), op, Instant::now());
                }
                (
                    Level::Err,
                    about("unverified", &id, op).says(format_args!(
                        "phbguard cannot tell what happened to it around its redefine \
                         (events since its last read: {events}; what is defined now: {}): it may \
                         have replaced someone's change or re-created it after an undefine; check \
                         it ('virsh dumpxml {}')",
                        match now {
                            Now::Gone => "nothing",
                            Now::Ours { .. } => "phbguard's",
                            Now::Other => "someone else's",
                        },
                        id.name
                    )),
                )
            }
        };
        self.journal.log(level, &line);
    }

    /// The watcher's define re-created a guest undefined meanwhile, and what is defined is
    /// still exactly the watcher's (read, then the events drained: nothing since): undefine it.
    fn undo(&mut self, conn: &Connect, f: Follow, dom: &Domain, removed: String, events: &str) {
        let (id, op) = (f.id.clone(), f.op);
        // Between the read in `finish` and this call only the drain ran: the window left is
        // the undefine's own round trip, and the undefine is followed as the define was.
        match dom.undefine() {
            Ok(()) => {
                let line = about("recreated", &id, op).says(format_args!(
                    "phbguard's redefine re-created it after it was undefined \
                     (events: {events}); phbguard has undefined it again"
                ));
                self.journal.log(Level::Err, &line);
                let own = Own::Undefined { removed };
                self.tracker.follow(Follow::new(id, op, own, Instant::now()));
            }
            Err(e) if e.code().is(ErrorNumber::NoDomain) => {
                let line = about("vanished", &id, op).says(format_args!(
                    "phbguard's redefine re-created it after it was undefined \
                     (events: {events}), and it has been undefined again since: nothing of it is \
                     left"
                ));
                self.journal.log(Level::Notice, &line);
            }
            // The connection went: worked out again (and undone) once connected.
            Err(_) if !conn.is_alive().unwrap_or(false) => {
                let mut f = f;
                f.last = Instant::now();
                self.tracker.follow(f);
            }
            Err(e) => {
                let line = about("recreated", &id, op).says(format_args!(
                    "phbguard's redefine re-created it after it was undefined \
                     (events: {events}), and phbguard cannot undefine it again: {}; if it should \
                     be gone, 'virsh undefine {}'",
                    e.message(),
                    id.name
                ));
                self.journal.log(Level::Err, &line);
            }
        }
    }

    fn finish_undefine(&mut self, uuid: &str, exists_now: bool) {
        let Some(f) = self.tracker.followed(uuid) else {
            return;
        };
        if !f.own_seen() && !f.given_up(Instant::now()) {
            return self.later(uuid);
        }
        let Some(f) = self.tracker.unfollow(uuid) else {
            return;
        };
        let after = aftermath::after_undefine(&f.seen, exists_now);
        let (id, op) = (f.id, f.op);
        if after.removed_a_change {
            let line = about("removed", &id, op).says(format_args!(
                "a definition made just before phbguard undefined the guest it had \
                 re-created may have been removed with it (events: {}); if it should exist, \
                 define it again",
                describe(&f.seen)
            ));
            self.journal.log(Level::Err, &line);
        } else {
            let line = about("removed", &id, op).says("the guest phbguard had re-created is undefined again");
            self.journal.log(Level::Notice, &line);
        }
        if after.defined_again {
            self.tracker.settle(id, op, Instant::now());
        }
    }

    /// What libvirt made of the watcher's own definition breaks a rule again: said once, and
    /// not redefined again (that could loop).
    fn libvirt_changed_it(&mut self, conn: &Connect, id: &DomainId, op: Op, xml: &str) {
        let Ok(definition) = parse_domain(xml.as_bytes()) else {
            return;
        };
        let Some(host) = self.host(conn, id, op) else {
            return;
        };
        let errors = judge(&definition, &host)
            .into_iter()
            .filter(|f| f.severity() == Severity::Error)
            .count();
        if errors > 0 {
            let line = about("unfixable", id, op).says(format_args!(
                "libvirt changed the definition phbguard wrote and it still breaks \
                 {errors} rule{}; not redefined again",
                plural(errors)
            ));
            self.journal.log(Level::Err, &line);
        }
    }

    /// A DEVICE_ADDED event: judge the running guest's live definition. libvirt offers no way
    /// to stop a hot-plug, so this only warns.
    fn hotplug(&mut self, conn: &Connect, id: &DomainId, alias: &str) {
        let op = Op::Hotplug;
        let dom = match conn.lookup_domain_by_uuid_string(&id.uuid) {
            Ok(dom) => dom,
            Err(e) if e.code().is(ErrorNumber::NoDomain) => return,
            Err(e) => {
                self.failed(conn, id, op, &format!("cannot look it up: {}", e.message()));
                return;
            }
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
                let what = format!("cannot read the live definition: {}", e.message());
                self.failed(conn, id, op, &what);
                return;
            }
        };
        let definition = match parse_domain(xml.as_bytes()) {
            Ok(d) => d,
            Err(e) => {
                self.failed(conn, id, op, &format!("cannot judge libvirt's XML: {e}"));
                return;
            }
        };
        if !definition.is_pseries() {
            return;
        }
        let Some(host) = self.host(conn, id, op) else {
            return;
        };
        let facts = Facts::gather(&definition, &host);
        let verdict = decide_on(&definition, &self.config, Watched::Hotplug, || {
            judge_with(&definition, &facts)
        });
        self.bad_metadata(id, op, &verdict);
        if verdict.mode != Mode::Off {
            self.landed(id, op, alias, spare::landing(&definition, &facts, alias));
        }
        self.log_findings(id, op, &verdict.findings, None, Some(alias));
    }

    /// One line per hot-plug: where the device landed, whether it took a spare PHB, and how
    /// many the running guest has left for the next hostdev of a new IOMMU group.
    fn landed(&mut self, id: &DomainId, op: Op, alias: &str, landing: Option<Landing>) {
        let head = about("hotplugged", id, op).field("added", alias);
        let line = match landing {
            Some(l) => head
                .field_if("address", l.address)
                .field_if("phb", l.phb.map(|(phb, _)| phb))
                .field("spares_before", l.spares_before())
                .field("spares_left", l.spares_left)
                .says(l.describe()),
            None => head.says("it is not in the live definition any more"),
        };
        self.journal.log(Level::Notice, &line);
    }

    /// The `action=` of a definition's finding lines: what the policy does with this guest.
    fn action_word(&self, verdict: &Verdict) -> &'static str {
        if verdict.action == Action::Exempt {
            "exempt"
        } else if verdict.mode == Mode::Warn {
            "warn"
        } else {
            self.config.watch_action.as_str()
        }
    }

    /// One line per finding, as the hook writes them (`action=` where the hook has `mode=`;
    /// none for a hot-plug, where `added` names the alias of the device plugged).
    fn log_findings(
        &mut self,
        id: &DomainId,
        op: Op,
        findings: &[Judged],
        action: Option<&str>,
        added: Option<&str>,
    ) {
        for j in findings {
            let f = &j.finding;
            let level = match (j.disposition, f.severity()) {
                (Disposition::Fix | Disposition::Exempt, _) => Level::Notice,
                (_, Severity::Error) => Level::Warning,
                (_, Severity::Warning) => Level::Notice,
            };
            let hotplug = if added.is_some() {
                "; libvirt cannot refuse a hot-plug: detach what breaks the rule ('virsh \
                 detach-device --live') or fix the definition for the next boot"
            } else {
                ""
            };
            let line = about(j.disposition.as_str(), id, op)
                .field_if("added", added)
                .field("rule", f.rule.id.as_str())
                .field("device", &f.device)
                .field("severity", f.severity().as_str())
                .field_if("action", action)
                .says(format_args!("{}{hotplug}", f.message));
            self.journal.log(level, &line);
        }
    }

    /// The domain's `<phbguard:policy mode>` names no mode: it is not redefined.
    fn bad_metadata(&mut self, id: &DomainId, op: Op, verdict: &Verdict) {
        if let Some(m) = &verdict.bad_metadata_mode {
            let line = about("metadata-error", id, op).says(format_args!(
                "<metadata><phbguard:policy mode='{m}'> is not enforce, warn or \
                 off; not redefining it"
            ));
            self.journal.log(Level::Warning, &line);
        }
    }

    /// Host facts, fresh for every judgement (host devices come and go), from where every
    /// command reads them ([`host_source`]). A policy whose sysfs_root is not a directory never
    /// gets here: the watcher neither starts nor reloads with one.
    fn host<'c>(&mut self, conn: &'c Connect, id: &DomainId, op: Op) -> Option<Host<'c>> {
        let source = host_source(None, &self.config, false, connection_is_remote(conn));
        match Host::new(conn, source.sysfs_root()) {
            Ok(host) => Some(host),
            Err(e) => {
                self.failed(conn, id, op, &format!("cannot learn the host's devices: {e}"));
                None
            }
        }
    }

    /// A guest undefined before (or while) the watcher got to it: routine.
    fn vanished(&mut self, id: &DomainId, op: Op) -> Judgement {
        let line = about("vanished", id, op).says("undefined before phbguard could judge it; nothing to do");
        self.journal.log(Level::Info, &line);
        Judgement::Done
    }

    /// A libvirt call failed. While the connection is gone that says nothing about the guest
    /// (the `disconnected` line says what happened, and every guest is judged again once
    /// connected); otherwise it is an internal error.
    fn failed(&mut self, conn: &Connect, id: &DomainId, op: Op, what: &str) -> Judgement {
        if conn.is_alive().unwrap_or(false) {
            self.internal(id, op, what);
        }
        Judgement::Done
    }

    fn internal(&mut self, id: &DomainId, op: Op, what: &str) -> Judgement {
        let line = about("internal-error", id, op).says(what);
        self.journal.log(Level::Err, &line);
        Judgement::Done
    }
}

/// A finding the watcher could not fix: warned about.
fn warned(j: Judged) -> Judged {
    Judged {
        disposition: Disposition::Warned,
        ..j
    }
}

/// How the events since the watcher's last look read in a log line.
fn describe(seen: &[Seen]) -> String {
    if seen.is_empty() {
        return "none".to_owned();
    }
    seen.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn own_call(own: &Own) -> &'static str {
    match own {
        Own::Defined { .. } => "redefine",
        Own::Undefined { .. } => "undefine",
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    //! The handler on libvirt's test driver (in-process, no daemon), fed by a real event
    //! subscription: what it defines, undefines and logs, and what a define or undefine of
    //! someone else's right after the watcher's last look does.

    use std::os::unix::net::UnixDatagram;
    use std::sync::mpsc::{self, Receiver};
    use std::time::Duration;

    use super::*;
    use crate::events::{Event, Subscription, start_event_loop};

    /// A pSeries guest with host device 0002:01:00.0 on the default PHB (hostdev-on-default-phb),
    /// `mib` MiB of memory.
    fn bad(name: &str, uuid: &str, mib: u32) -> String {
        format!(
            "<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>{mib}</memory>\
             <os><type arch='ppc64le' machine='pseries'>hvm</type></os><devices>\
             <controller type='pci' index='0' model='pci-root'><model name='spapr-pci-host-bridge'/>\
             <target index='0'/></controller>\
             <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0002' \
             bus='0x01' slot='0x00' function='0x0'/></source><address type='pci' domain='0x0000' \
             bus='0x00' slot='0x05' function='0x0'/></hostdev></devices></domain>"
        )
    }

    /// Something someone else does to the guest, and when: at the first drain for which the
    /// first says yes, right after the events were taken (so its event comes after the
    /// watcher's look, as a real race's does).
    type Race = (Box<dyn FnMut(&Tracker) -> bool>, Box<dyn FnMut()>);

    /// The test's guest's events from a subscription of its own.
    struct TestInbox {
        rx: Receiver<Event>,
        race: Option<Race>,
    }

    impl Inbox for TestInbox {
        fn interrupted(&self) -> bool {
            false
        }

        fn pump(&mut self, tracker: &mut Tracker) {
            while let Ok(event) = self.rx.try_recv() {
                tracker.route(event, Instant::now());
            }
            if let Some((when, _)) = &mut self.race
                && when(tracker)
            {
                let (_, mut act) = self.race.take().unwrap();
                act();
            }
        }
    }

    struct World {
        dir: tempfile::TempDir,
        log: UnixDatagram,
        conn: Connect,
        handler: Handler,
        inbox: TestInbox,
        id: DomainId,
        _subscription: Subscription,
    }

    impl World {
        /// test:///default is shared by the whole process: each test names its own guest, and
        /// hears only its events.
        fn new(action: WatchAction, name: &str, uuid: &str) -> World {
            start_event_loop().unwrap();
            // "Domain not found" is an answer here, not something for stderr.
            virt::error::clear_error_callback();
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
            let (tx, rx) = mpsc::channel();
            let tx = std::sync::Mutex::new(tx);
            let ours = uuid.to_owned();
            let subscription = Subscription::new(&conn, move |event| {
                let mine = match &event {
                    Event::Defined { domain, .. }
                    | Event::Undefined { domain }
                    | Event::MetadataChanged { domain, .. }
                    | Event::DeviceAdded { domain, .. } => domain.uuid == ours,
                    Event::Closed { .. } => false,
                };
                if mine {
                    let _ = tx.lock().unwrap().send(event);
                }
            })
            .unwrap();
            World {
                dir,
                log,
                conn,
                handler,
                inbox: TestInbox { rx, race: None },
                id: DomainId {
                    name: name.to_owned(),
                    uuid: uuid.to_owned(),
                },
                _subscription: subscription,
            }
        }

        /// [`bad`] for the test's guest.
        fn bad(&self, mib: u32) -> String {
            bad(&self.id.name, &self.id.uuid, mib)
        }

        fn define(&self, xml: &str) {
            self.conn.define_domain_xml(xml).unwrap();
        }

        /// The guest's persistent definition, None once it is gone.
        fn definition(&self) -> Option<String> {
            let dom = self.conn.lookup_domain_by_uuid_string(&self.id.uuid).ok()?;
            redefine::read_definition(&dom).ok()
        }

        /// Removes the test's guest from the shared test:///default, if it is there.
        fn undefine(&self) {
            if let Ok(dom) = self.conn.lookup_domain_by_uuid_string(&self.id.uuid) {
                let _ = dom.undefine();
            }
        }

        /// Has `act` run on the test's connection when the watcher's last look before its
        /// define drains the events: the second drain while the guest is being judged.
        fn at_last_look(&mut self, act: impl FnOnce(&Connect, &str) + 'static) {
            self.when(
                |uuid| {
                    let (uuid, mut looks) = (uuid.to_owned(), 0);
                    Box::new(move |t: &Tracker| {
                        looks += usize::from(t.judging_now(&uuid));
                        looks == 2
                    })
                },
                act,
            );
        }

        /// Has `act` run on the test's connection right after the watcher's define.
        fn after_its_define(&mut self, act: impl FnOnce(&Connect, &str) + 'static) {
            self.when(
                |uuid| {
                    let uuid = uuid.to_owned();
                    Box::new(move |t: &Tracker| t.following(&uuid))
                },
                act,
            );
        }

        fn when(
            &mut self,
            at: impl FnOnce(&str) -> Box<dyn FnMut(&Tracker) -> bool>,
            act: impl FnOnce(&Connect, &str) + 'static,
        ) {
            let (conn, uuid) = (self.conn.clone(), self.id.uuid.clone());
            let mut act = Some(act);
            self.inbox.race = Some((
                at(&uuid),
                Box::new(move || {
                    if let Some(act) = act.take() {
                        act(&conn, &uuid);
                    }
                }),
            ));
        }

        /// Runs the handler as the service loop does until nothing is left to do and no event
        /// came for a while.
        fn run(&mut self) {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut idle_since = Instant::now();
            loop {
                assert!(Instant::now() < deadline, "the handler never went idle");
                let before = self.handler.next_due(false);
                self.handler.run_due(&self.conn, &mut self.inbox, false);
                let pending = self.handler.next_due(false);
                if pending.is_some() || before.is_some() {
                    idle_since = Instant::now();
                } else if idle_since.elapsed() > tracker::QUIET * 2 {
                    return;
                }
                let wait = pending.map_or(Duration::from_millis(20), |due| {
                    due.saturating_duration_since(Instant::now())
                });
                std::thread::sleep(wait.min(Duration::from_millis(20)));
            }
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
    }

    impl Drop for World {
        fn drop(&mut self) {
            self.undefine();
        }
    }

    fn verbs(lines: &[String]) -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.split_once("]: ").and_then(|(_, rest)| rest.split(' ').next()))
            .collect()
    }

    use crate::watch::tracker;

    #[test]
    fn fix_redefines_once_and_leaves_its_own_definition_alone() {
        let mut w = World::new(
            WatchAction::Fix,
            "phbguard-unit-fix",
            "7e57f1ee-1200-4000-8000-000000000001",
        );
        w.define(&w.bad(1024));
        w.run();
        let fixed = w.definition().unwrap();
        assert!(fixed.contains("bus='0x01' slot='0x01'"), "{fixed}");
        let lines = w.lines();
        assert_eq!(verbs(&lines), ["fixed", "redefined"], "{lines:#?}");
        assert!(lines[1].starts_with("<29>"), "daemon.notice: {}", lines[1]);
    }

    #[test]
    fn a_define_while_settling_is_judged_once_on_the_last_definition() {
        let mut w = World::new(
            WatchAction::Fix,
            "phbguard-unit-settle",
            "7e57f1ee-1200-4000-8000-000000000005",
        );
        w.define(&w.bad(1024));
        w.define(&w.bad(2048));
        w.run();
        let fixed = w.definition().unwrap();
        assert!(fixed.contains("<memory unit='KiB'>2097152</memory>"), "{fixed}");
        assert_eq!(verbs(&w.lines()), ["fixed", "redefined"]);
    }

    #[test]
    fn an_undefine_while_settling_cancels_the_judgement() {
        let mut w = World::new(
            WatchAction::Fix,
            "phbguard-unit-cancel",
            "7e57f1ee-1200-4000-8000-000000000006",
        );
        w.define(&w.bad(1024));
        w.undefine();
        w.run();
        assert_eq!(w.definition(), None);
        assert_eq!(w.lines(), Vec::<String>::new());
    }

    /// The race of a user's `virsh "define a.xml; define b.xml"` with the watcher: b lands
    /// after the watcher's last look at a and before its define, which replaces b.
    #[test]
    fn a_define_landing_between_the_last_look_and_the_redefine_is_reported() {
        let mut w = World::new(
            WatchAction::Fix,
            "phbguard-unit-conflict",
            "7e57f1ee-1200-4000-8000-000000000007",
        );
        w.define(&w.bad(1024));
        let b = w.bad(2048);
        w.at_last_look(move |conn, _| {
            conn.define_domain_xml(&b).unwrap();
        });
        w.run();
        let lines = w.lines();
        let conflict: Vec<&String> = lines.iter().filter(|l| l.contains("]: conflict ")).collect();
        assert_eq!(conflict.len(), 1, "{lines:#?}");
        assert!(
            conflict[0].starts_with("<27>")
                && conflict[0].contains("domain=phbguard-unit-conflict ")
                && conflict[0].contains("events since that read: Defined Updated, Defined Updated"),
            "daemon.err, naming the guest and what was seen: {lines:#?}"
        );
        // b was replaced: the fix of a is what is defined, and the line said so.
        assert!(
            w.definition()
                .unwrap()
                .contains("<memory unit='KiB'>1048576</memory>")
        );
        assert_eq!(verbs(&lines), ["fixed", "redefined", "conflict"], "{lines:#?}");
    }

    /// `virsh define a.xml` then `virsh undefine`: the undefine lands after the watcher's last
    /// look and before its define, which creates the guest again; the watcher undefines it.
    #[test]
    fn a_guest_re_created_by_the_redefine_is_undefined_again() {
        let mut w = World::new(
            WatchAction::Fix,
            "phbguard-unit-recreated",
            "7e57f1ee-1200-4000-8000-000000000008",
        );
        w.define(&w.bad(1024));
        w.at_last_look(|conn, uuid| {
            let dom = conn.lookup_domain_by_uuid_string(uuid).unwrap();
            dom.undefine().unwrap();
        });
        w.run();
        assert_eq!(w.definition(), None, "the re-created guest is still defined");
        let lines = w.lines();
        assert_eq!(
            verbs(&lines),
            ["fixed", "redefined", "recreated", "removed"],
            "{lines:#?}"
        );
        assert!(lines[2].starts_with("<27>") && lines[2].contains("events: Undefined, Defined Added"));
        assert!(
            lines[2].ends_with("phbguard has undefined it again"),
            "{}",
            lines[2]
        );
        assert!(lines[3].ends_with("the guest phbguard had re-created is undefined again"));
    }

    /// Someone defines the guest right after the watcher's define: theirs stands, and is
    /// judged (and fixed) in its turn.
    #[test]
    fn a_define_right_after_the_redefine_is_judged_in_its_turn() {
        let mut w = World::new(
            WatchAction::Fix,
            "phbguard-unit-after",
            "7e57f1ee-1200-4000-8000-000000000009",
        );
        w.define(&w.bad(1024));
        let b = w.bad(2048);
        w.after_its_define(move |conn, _| {
            conn.define_domain_xml(&b).unwrap();
        });
        w.run();
        let lines = w.lines();
        assert_eq!(
            verbs(&lines),
            ["fixed", "redefined", "fixed", "redefined"],
            "{lines:#?}"
        );
        let now = w.definition().unwrap();
        assert!(
            now.contains("<memory unit='KiB'>2097152</memory>") && now.contains("bus='0x01' slot='0x01'")
        );
    }

    /// What libvirt made of the watcher's definition (its read-back) breaks a rule again, and
    /// nobody else defined the guest: said once, and not redefined again.
    #[test]
    fn its_own_definition_changed_by_libvirt_is_not_redefined_again() {
        let name = "phbguard-unit-own";
        let uuid = "7e57f1ee-1200-4000-8000-000000000002";
        let mut w = World::new(WatchAction::Fix, name, uuid);
        w.define(&bad(name, uuid, 1024));
        let current = w.definition().unwrap();
        let now = Instant::now();
        let own = Own::Defined {
            wrote: current.replace("bus='0x00' slot='0x05'", "bus='0x01' slot='0x01'"),
            read_back: Some(current.clone()),
            logged: true,
            changes: Vec::new(),
        };
        let mut follow = Follow::new(w.id.clone(), Op::Define, own, now);
        follow.seen.push(Seen::Updated);
        w.handler.tracker.follow(follow);
        // The test's own define: its event is the one the follow already counted.
        let _ = w.inbox.rx.recv_timeout(Duration::from_secs(10));
        w.run();
        let lines = w.lines();
        assert_eq!(verbs(&lines), ["unfixable"], "{lines:#?}");
        assert!(
            lines[0].starts_with("<27>") && lines[0].ends_with("breaks 1 rule; not redefined again"),
            "{lines:#?}"
        );
        assert_eq!(w.definition().unwrap(), current);
    }

    #[test]
    fn warn_exempt_and_opted_out_guests_are_never_redefined() {
        let name = "phbguard-unit-warn";
        let uuid = "7e57f1ee-1200-4000-8000-000000000003";
        let mut w = World::new(WatchAction::Warn, name, uuid);
        w.define(&bad(name, uuid, 1024));
        let before = w.definition().unwrap();
        w.run();
        let lines = w.lines();
        assert_eq!(verbs(&lines), ["warned"]);
        assert!(lines[0].contains("rule=hostdev-on-default-phb") && lines[0].contains("action=warn:"));
        assert_eq!(w.definition().unwrap(), before);

        w.handler.config.watch_action = WatchAction::Fix;
        w.handler.config.exempt = vec![name.into()];
        w.define(&before);
        w.run();
        assert_eq!(verbs(&w.lines()), ["exempt"]);
        assert_eq!(w.definition().unwrap(), before);

        w.handler.config.exempt.clear();
        let opted_out = before.replacen(
            "<memory",
            "<metadata><phbguard:policy xmlns:phbguard='urn:phbguard:policy:1' mode='warn'/></metadata><memory",
            1,
        );
        w.define(&opted_out);
        let before = w.definition().unwrap();
        w.run();
        let lines = w.lines();
        assert_eq!(verbs(&lines), ["warned"], "{lines:#?}");
        assert!(lines[0].contains("action=warn:"), "{lines:#?}");
        assert_eq!(w.definition().unwrap(), before);

        // `virsh metadata --config` removing the opt-out: no DEFINED event, a METADATA_CHANGE;
        // the guest is judged again and fixed.
        let dom = w.conn.lookup_domain_by_uuid_string(uuid).unwrap();
        dom.set_metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            None,
            None,
            Some(phbguard_core::parse::METADATA_NS),
            sys::VIR_DOMAIN_AFFECT_CONFIG,
        )
        .unwrap();
        w.run();
        let lines = w.lines();
        assert_eq!(verbs(&lines), ["fixed", "redefined"], "{lines:#?}");
        assert!(lines[1].contains(" op=metadata "), "{lines:#?}");
        assert!(w.definition().unwrap().contains("bus='0x01' slot='0x01'"));
    }

    #[test]
    fn a_reconfigured_handler_judges_with_the_new_policy_and_logs_to_its_socket() {
        let name = "phbguard-unit-reload";
        let uuid = "7e57f1ee-1200-4000-8000-000000000004";
        let mut w = World::new(WatchAction::Warn, name, uuid);
        w.define(&bad(name, uuid, 1024));
        let before = w.definition().unwrap();
        w.run();
        assert_eq!(verbs(&w.lines()), ["warned"]);
        assert_eq!(w.definition().unwrap(), before);

        // What a SIGHUP with a clean file does: action fix, another syslog socket.
        let moved = UnixDatagram::bind(w.dir.path().join("log2")).unwrap();
        moved.set_nonblocking(true).unwrap();
        let config = Config {
            watch_action: WatchAction::Fix,
            syslog_socket: w.dir.path().join("log2"),
            ..w.handler.config().clone()
        };
        w.handler.reconfigure(config);
        w.define(&before);
        w.run();
        assert!(w.definition().unwrap().contains("bus='0x01' slot='0x01'"));
        assert!(w.lines().is_empty(), "the old socket still gets lines");
        let mut buf = [0u8; 8192];
        let mut lines = Vec::new();
        while let Ok(n) = moved.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(verbs(&lines), ["fixed", "redefined"]);
    }
}
