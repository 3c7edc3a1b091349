//! What phbguard decides about one guest at one moment of its life, as a pure function:
//! (domain, host facts, policy, occasion) → [`Verdict`], whose [`Action`] says what happens.
//! No output, no logging, no files: the hook (src/hook/) turns a verdict into an exit code,
//! stderr text and syslog lines; audit (crates/libvirt) asks it what the hook would do; the
//! watcher (crates/libvirt watch) asks it whether to leave, warn about, or fix a definition.

use crate::config::{Config, Incoming, Mode, WatchAction};
use crate::fix;
use crate::host::HostFacts;
use crate::model::Domain;
use crate::rules::{Finding, RuleId, Severity, judge};

/// The libvirt hook calls phbguard judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `prepare begin`: a guest is about to start (also the step of an incoming migration or
    /// restore that follows `migrate begin` / `restore begin`).
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

    /// libvirt's op word.
    pub fn op(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Migrate => "migrate",
            Phase::Restore => "restore",
        }
    }
}

/// Why a guest is coming in rather than starting afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// An ordinary start: `mode` decides.
    Start,
    /// Coming in by `migrate` or `restore` (that call itself, or the `prepare begin` libvirt
    /// runs right after it for the same guest): `incoming` decides.
    Incoming(Phase),
}

/// One libvirt hook call phbguard judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookCall {
    /// The call being judged.
    pub phase: Phase,
    /// Whether the guest starts afresh or comes in.
    pub arrival: Arrival,
    /// The hook's own setup is in doubt (bad options, a policy-file problem, a sysfs root
    /// that is not a directory): judge, but never refuse.
    pub warn_only: bool,
}

impl HookCall {
    /// `phase` as libvirt calls it: `migrate`/`restore` are incoming by themselves.
    pub fn new(phase: Phase) -> HookCall {
        let arrival = match phase {
            Phase::Prepare => Arrival::Start,
            p => Arrival::Incoming(p),
        };
        HookCall {
            phase,
            arrival,
            warn_only: false,
        }
    }
}

/// What `phbguard watch` is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// A persistent definition: just defined or changed, or found when (re)connecting.
    Definition,
    /// The live definition of a running guest, after a device was hot-plugged into it.
    Hotplug,
}

/// The moment a guest is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occasion {
    /// A hook call: the guest is about to run.
    Hook(HookCall),
    /// The watcher sees a definition.
    Watch(Watched),
}

impl From<HookCall> for Occasion {
    fn from(call: HookCall) -> Occasion {
        Occasion::Hook(call)
    }
}

impl From<Watched> for Occasion {
    fn from(watched: Watched) -> Occasion {
        Occasion::Watch(watched)
    }
}

/// Where the mode that applied came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeSource {
    /// The policy file's `mode` (the hook's), or for the watcher, the absence of an opt-out.
    Policy,
    /// The domain's `<metadata><phbguard:policy mode=.../>`.
    Metadata,
}

/// What happens to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to say: no findings, or mode `off`.
    Leave,
    /// The findings are logged; the guest starts, the definition stays as it is.
    Warn,
    /// The guest is in the policy's `exempt` list: its findings are logged as exempt.
    Exempt,
    /// The hook refuses the guest.
    Refuse,
    /// The watcher redefines the guest with `phbguard fix`'s output (when that keeps every
    /// rule; the fixer decides that, not the verdict).
    Fix,
}

/// What happens to one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It refuses the guest.
    Rejected,
    /// Logged; the guest goes on.
    Warned,
    /// The domain is exempt by policy.
    Exempt,
    /// The watcher's redefine removes it.
    Fix,
}

impl Disposition {
    /// The word syslog lines start with (for [`Disposition::Fix`], once the fix is made).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Rejected => "rejected",
            Disposition::Warned => "warned",
            Disposition::Exempt => "exempt",
            Disposition::Fix => "fixed",
        }
    }
}

/// One finding and what it does.
#[derive(Debug)]
pub struct Judged {
    /// What the rules found.
    pub finding: Finding,
    /// What it does to the guest.
    pub disposition: Disposition,
    /// It would refuse the guest under `mode = "enforce"` (an error, or `iommu-group-unknown`
    /// with `reject_iommu_group_unknown`).
    pub blocking: bool,
}

/// How a guest is kept from being refused while the policy file enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOut {
    /// Its metadata says `mode='off'`: it is not judged at all.
    Off,
    /// Its metadata says `mode='warn'`: its findings are logged, it starts.
    Warn,
    /// The policy file's `exempt` lists it: its findings are logged as `exempt`, it starts.
    Exempt,
}

impl OptOut {
    /// How audit and the docs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            OptOut::Off => "off",
            OptOut::Warn => "warn",
            OptOut::Exempt => "exempt",
        }
    }
}

/// The decision about one guest.
#[derive(Debug)]
pub struct Verdict {
    /// The mode that applied (after the domain's metadata and `warn_only`).
    pub mode: Mode,
    /// Where that mode came from.
    pub mode_source: ModeSource,
    /// The mode the domain's metadata names, when it names a valid one.
    pub metadata_mode: Option<Mode>,
    /// The metadata named a mode that is none of enforce, warn, off (then the policy's mode
    /// applied at the hook, and `warn` at the watcher: an opt-out it cannot read is never
    /// overridden by a rewrite).
    pub bad_metadata_mode: Option<String>,
    /// The guest is in the policy's `exempt` list: nothing refuses or rewrites it.
    pub exempt: bool,
    /// What happens to the guest.
    pub action: Action,
    /// Every finding, the blocking ones first, each in the rules' order.
    pub findings: Vec<Judged>,
}

impl Verdict {
    /// How the guest opted out of refusal, if it did: by its own metadata (`off` before `warn`)
    /// or the policy's `exempt` list. A file-wide `mode` is no guest's opt-out.
    pub fn opt_out(&self) -> Option<OptOut> {
        match self.metadata_mode {
            Some(Mode::Off) => Some(OptOut::Off),
            Some(Mode::Warn) => Some(OptOut::Warn),
            _ if self.exempt => Some(OptOut::Exempt),
            _ => None,
        }
    }

    /// Whether the hook refuses the guest.
    pub fn reject(&self) -> bool {
        self.action == Action::Refuse
    }

    /// How many findings would refuse the guest.
    pub fn blocking(&self) -> usize {
        self.findings.iter().filter(|j| j.blocking).count()
    }
}

/// Judges `domain` on `host` under `policy` at `occasion`. With `mode = "off"` (policy or
/// metadata) nothing is judged and the verdict has no findings.
pub fn decide(
    domain: &Domain,
    host: &dyn HostFacts,
    policy: &Config,
    occasion: impl Into<Occasion>,
) -> Verdict {
    decide_on(domain, policy, occasion, || judge(domain, host))
}

/// [`decide`] over the findings `judged` gives, called only when the mode is not off: for a
/// caller that has judged `domain` already (audit reports the findings of every guest, opted out
/// or not), so the rules do not run twice.
pub fn decide_on(
    domain: &Domain,
    policy: &Config,
    occasion: impl Into<Occasion>,
    judged: impl FnOnce() -> Vec<Finding>,
) -> Verdict {
    let occasion = occasion.into();
    // The hook's `mode` is the hook's: the watcher's own setting is `[watch] action`, and a
    // definition without an opt-out is judged as under enforce.
    let mut mode = match occasion {
        Occasion::Hook(_) => policy.mode,
        Occasion::Watch(_) => Mode::Enforce,
    };
    let mut mode_source = ModeSource::Policy;
    let mut bad_metadata_mode = None;
    let mut metadata_mode = None;
    if let Some(m) = domain.policy_mode.as_deref() {
        match Mode::parse(m) {
            Some(m) => {
                mode = m;
                mode_source = ModeSource::Metadata;
                metadata_mode = Some(m);
            }
            None => {
                bad_metadata_mode = Some(m.to_owned());
                if let Occasion::Watch(_) = occasion {
                    mode = Mode::Warn;
                }
            }
        }
    }
    if let Occasion::Hook(call) = occasion
        && call.warn_only
        && mode == Mode::Enforce
    {
        mode = Mode::Warn;
    }
    let name = domain.name.as_deref().unwrap_or("");
    let exempt = policy.is_exempt(name, domain.uuid.as_deref());
    let mut verdict = Verdict {
        mode,
        mode_source,
        metadata_mode,
        bad_metadata_mode,
        exempt,
        action: Action::Leave,
        findings: Vec::new(),
    };
    if mode == Mode::Off {
        return verdict;
    }
    let blocking = |f: &Finding| {
        f.severity() == Severity::Error
            || (policy.reject_iommu_group_unknown && f.rule.id == RuleId::IommuGroupUnknown)
    };
    let mut findings = judged();
    // A hot-plug the watcher sees has happened: the host's state it depended on is past.
    if occasion == Occasion::Watch(Watched::Hotplug) {
        findings.retain(|f| !f.rule.id.judges_host_state());
    }
    let fixable = |f: &Finding| f.severity() == Severity::Error && f.rule.id.fixable();
    let errors = findings.iter().any(fixable);
    verdict.action = if findings.is_empty() {
        Action::Leave
    } else if exempt {
        Action::Exempt
    } else {
        match occasion {
            Occasion::Hook(call) => {
                let refusing = match call.arrival {
                    Arrival::Start => true,
                    Arrival::Incoming(_) => policy.incoming == Incoming::Refuse,
                };
                if refusing && mode == Mode::Enforce && findings.iter().any(blocking) {
                    Action::Refuse
                } else {
                    Action::Warn
                }
            }
            // What the fixer can remove is an error of a rule it fixes: warnings, the host's
            // drivers and an admin's <hard_limit> are never rewritten away.
            Occasion::Watch(Watched::Definition)
                if errors && mode == Mode::Enforce && policy.watch_action == WatchAction::Fix =>
            {
                Action::Fix
            }
            Occasion::Watch(_) => Action::Warn,
        }
    };
    let (first, then): (Vec<Finding>, Vec<Finding>) = findings.into_iter().partition(blocking);
    for (finding, is_blocking) in first
        .into_iter()
        .map(|f| (f, true))
        .chain(then.into_iter().map(|f| (f, false)))
    {
        let disposition = match verdict.action {
            Action::Exempt => Disposition::Exempt,
            Action::Refuse if is_blocking => Disposition::Rejected,
            Action::Fix if fixable(&finding) => Disposition::Fix,
            _ => Disposition::Warned,
        };
        verdict.findings.push(Judged {
            finding,
            disposition,
            blocking: is_blocking,
        });
    }
    verdict
}

/// The options of every rewrite phbguard makes of a definition under `policy` (`fix --domain`,
/// and the watcher when [`decide`] says [`Action::Fix`]): the policy's `[fix]` settings, so a
/// guest fixed for a rule keeps `spare_phbs` empty PHBs for hot-plugs. Fewer spares than that
/// is no finding: a definition that keeps every rule is never rewritten for its spares alone
/// (they apply at the guest's next cold boot and cost locked memory; the admin adds them with
/// `fix --domain`).
pub fn rewrite_options(policy: &Config) -> fix::Options {
    fix::Options {
        spare_phbs: policy.fix_spare_phbs,
        ..fix::Options::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Incoming;
    use crate::host::StaticHost;
    use crate::model::PciAddr;
    use crate::parse::parse_domain;

    const BAD: &str = "<domain type='qemu'><name>db</name><uuid>6a1f0c2e-0000-4000-8000-000000000001</uuid>\
        <os><type arch='ppc64' machine='pseries'>hvm</type></os><devices>\
        <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0002' bus='0x02' \
        slot='0x00' function='0x0'/></source><address type='pci' domain='0x0000' bus='0x00' slot='0x05' \
        function='0x0'/></hostdev><controller type='pci' index='1' model='pci-bridge'/></devices></domain>";

    fn host() -> StaticHost {
        let a = PciAddr {
            domain: 2,
            bus: 2,
            slot: 0,
            function: 0,
        };
        StaticHost::new().with_device(a, 7, None)
    }

    fn verdict(xml: &str, policy: &Config, occasion: impl Into<Occasion>) -> Verdict {
        decide(&parse_domain(xml.as_bytes()).unwrap(), &host(), policy, occasion)
    }

    fn summary(v: &Verdict) -> Vec<(&'static str, &'static str)> {
        v.findings
            .iter()
            .map(|j| (j.finding.rule.id.as_str(), j.disposition.as_str()))
            .collect()
    }

    #[test]
    fn a_start_under_enforce_rejects_on_errors_blocking_first() {
        let v = verdict(BAD, &Config::default(), HookCall::new(Phase::Prepare));
        assert!(v.reject());
        assert_eq!(
            (v.mode, v.mode_source, v.blocking()),
            (Mode::Enforce, ModeSource::Policy, 1)
        );
        assert_eq!(
            summary(&v),
            [
                ("hostdev-on-default-phb", "rejected"),
                ("pci-bridge-on-pseries", "warned")
            ]
        );
    }

    #[test]
    fn incoming_guests_follow_incoming_also_at_the_prepare_after_them() {
        let refuse = Config {
            incoming: Incoming::Refuse,
            ..Config::default()
        };
        for phase in [Phase::Migrate, Phase::Restore] {
            let arrivals = [
                HookCall::new(phase),
                HookCall {
                    phase: Phase::Prepare,
                    arrival: Arrival::Incoming(phase),
                    warn_only: false,
                },
            ];
            for occasion in arrivals {
                let v = verdict(BAD, &Config::default(), occasion);
                assert!(!v.reject(), "{occasion:?}");
                assert_eq!(summary(&v)[0], ("hostdev-on-default-phb", "warned"));
                assert!(verdict(BAD, &refuse, occasion).reject(), "{occasion:?}");
            }
        }
    }

    #[test]
    fn warn_only_never_rejects_not_even_with_metadata_enforce() {
        let enforce = BAD.replace(
            "<os>",
            &format!(
                "<metadata><phbguard:policy xmlns:phbguard='{}' mode='enforce'/></metadata><os>",
                crate::parse::METADATA_NS
            ),
        );
        let occasion = HookCall {
            warn_only: true,
            ..HookCall::new(Phase::Prepare)
        };
        for xml in [BAD, enforce.as_str()] {
            let v = verdict(xml, &Config::default(), occasion);
            assert!(!v.reject());
            assert_eq!(v.mode, Mode::Warn);
            assert_eq!(v.findings.len(), 2);
        }
    }

    #[test]
    fn metadata_exempt_and_off() {
        let with = |mode: &str| {
            BAD.replace(
                "<os>",
                &format!(
                    "<metadata><phbguard:policy xmlns:phbguard='{}' mode='{mode}'/></metadata><os>",
                    crate::parse::METADATA_NS
                ),
            )
        };
        let start = HookCall::new(Phase::Prepare);
        let v = verdict(&with("warn"), &Config::default(), start);
        assert_eq!(
            (v.reject(), v.mode, v.mode_source),
            (false, Mode::Warn, ModeSource::Metadata)
        );
        assert_eq!(v.opt_out(), Some(OptOut::Warn));
        // Lowered to warn because the setup is in doubt: no opt-out of the guest's.
        let doubt = HookCall {
            warn_only: true,
            ..start
        };
        let v = verdict(&with("enforce"), &Config::default(), doubt);
        assert_eq!((v.mode, v.opt_out()), (Mode::Warn, None));
        let v = verdict(&with("off"), &Config::default(), start);
        assert!(!v.reject() && v.findings.is_empty());
        assert_eq!(v.opt_out(), Some(OptOut::Off));
        let v = verdict(&with("sometimes"), &Config::default(), start);
        assert_eq!(v.bad_metadata_mode.as_deref(), Some("sometimes"));
        assert_eq!(v.opt_out(), None);
        assert!(v.reject());
        let warn = Config {
            mode: Mode::Warn,
            ..Config::default()
        };
        assert!(verdict(&with("enforce"), &warn, start).reject());
        let exempt = Config {
            exempt: vec!["6A1F0C2E-0000-4000-8000-000000000001".into()],
            ..Config::default()
        };
        let v = verdict(BAD, &exempt, start);
        assert!(v.exempt && !v.reject());
        assert_eq!(v.opt_out(), Some(OptOut::Exempt));
        assert!(v.findings.iter().all(|j| j.disposition == Disposition::Exempt));
    }

    #[test]
    fn iommu_group_unknown_blocks_only_by_policy() {
        let unknown = BAD.replace("bus='0x02'", "bus='0x09'");
        let start = HookCall::new(Phase::Prepare);
        let v = verdict(&unknown, &Config::default(), start);
        let blocking: Vec<_> = v
            .findings
            .iter()
            .filter(|j| j.blocking)
            .map(|j| j.finding.rule.id.as_str())
            .collect();
        assert_eq!(blocking, ["hostdev-on-default-phb"]);
        let strict = Config {
            reject_iommu_group_unknown: true,
            ..Config::default()
        };
        let v = verdict(&unknown, &strict, start);
        assert_eq!(v.blocking(), 2);
        assert!(v.findings.iter().any(
            |j| j.finding.rule.id == RuleId::IommuGroupUnknown && j.disposition == Disposition::Rejected
        ));
    }

    fn with_metadata(mode: &str) -> String {
        BAD.replace(
            "<os>",
            &format!(
                "<metadata><phbguard:policy xmlns:phbguard='{}' mode='{mode}'/></metadata><os>",
                crate::parse::METADATA_NS
            ),
        )
    }

    const GOOD: &str = "<domain type='qemu'><name>ok</name><os><type arch='ppc64' machine='pseries'>hvm</type>\
        </os><devices></devices></domain>";

    #[test]
    fn the_hook_action_says_refuse_warn_exempt_or_leave() {
        let start = HookCall::new(Phase::Prepare);
        assert_eq!(verdict(BAD, &Config::default(), start).action, Action::Refuse);
        let warn = Config {
            mode: Mode::Warn,
            ..Config::default()
        };
        assert_eq!(verdict(BAD, &warn, start).action, Action::Warn);
        let exempt = Config {
            exempt: vec!["db".into()],
            ..Config::default()
        };
        assert_eq!(verdict(BAD, &exempt, start).action, Action::Exempt);
        assert_eq!(verdict(GOOD, &Config::default(), start).action, Action::Leave);
        // The watcher's setting does not reach the hook.
        let fix = Config {
            watch_action: WatchAction::Fix,
            ..Config::default()
        };
        assert_eq!(verdict(BAD, &fix, start).action, Action::Refuse);
    }

    #[test]
    fn the_watcher_fixes_errors_only_under_action_fix_and_without_opt_out() {
        let definition = Watched::Definition;
        let fix = Config {
            watch_action: WatchAction::Fix,
            ..Config::default()
        };
        let v = verdict(BAD, &fix, definition);
        assert_eq!((v.action, v.mode), (Action::Fix, Mode::Enforce));
        assert_eq!(
            summary(&v),
            [
                ("hostdev-on-default-phb", "fixed"),
                ("pci-bridge-on-pseries", "warned")
            ]
        );
        assert_eq!(verdict(BAD, &Config::default(), definition).action, Action::Warn);
        // The hook's mode is not the watcher's: mode = "warn" or "off" in the policy file
        // changes nothing here.
        for mode in [Mode::Warn, Mode::Off] {
            let hook_mode = Config { mode, ..fix.clone() };
            assert_eq!(verdict(BAD, &hook_mode, definition).action, Action::Fix);
        }
        // Opted out, exempt, or an opt-out that cannot be read: never rewritten.
        assert_eq!(
            verdict(&with_metadata("warn"), &fix, definition).action,
            Action::Warn
        );
        let off = verdict(&with_metadata("off"), &fix, definition);
        assert!(off.action == Action::Leave && off.findings.is_empty());
        let bad = verdict(&with_metadata("sometimes"), &fix, definition);
        assert_eq!((bad.action, bad.mode), (Action::Warn, Mode::Warn));
        assert_eq!(bad.bad_metadata_mode.as_deref(), Some("sometimes"));
        let exempt = Config {
            exempt: vec!["db".into()],
            ..fix.clone()
        };
        let v = verdict(BAD, &exempt, definition);
        assert_eq!(v.action, Action::Exempt);
        assert!(v.findings.iter().all(|j| j.disposition == Disposition::Exempt));
        // Warnings alone are never fixed.
        let bridge_only = GOOD.replace(
            "<devices>",
            "<devices><controller type='pci' index='1' model='pci-bridge'/>",
        );
        let v = verdict(&bridge_only, &fix, definition);
        assert!(
            v.findings
                .iter()
                .all(|j| j.finding.severity() == Severity::Warning)
        );
        assert_eq!(v.action, Action::Warn);
        assert_eq!(verdict(GOOD, &fix, definition).action, Action::Leave);
    }

    #[test]
    fn spares_are_kept_by_every_rewrite_but_never_the_reason_for_one() {
        let fix = Config {
            watch_action: WatchAction::Fix,
            fix_spare_phbs: 2,
            ..Config::default()
        };
        // Compliant, no spare PHB: left alone, under the watcher and the hook.
        assert_eq!(verdict(GOOD, &fix, Watched::Definition).action, Action::Leave);
        assert_eq!(
            verdict(GOOD, &fix, HookCall::new(Phase::Prepare)).action,
            Action::Leave
        );
        // Fixed for a rule: the rewrite keeps the spares.
        assert_eq!(verdict(BAD, &fix, Watched::Definition).action, Action::Fix);
        let options = rewrite_options(&fix);
        assert_eq!((options.spare_phbs, options.assign_unaddressed), (2, false));
        let domain = parse_domain(BAD.as_bytes()).unwrap();
        let fixed = fix::fix(BAD, &domain, &host(), options).unwrap();
        assert!(fixed.is_clean());
        assert_eq!(fixed.plan.spares.kept, 2);
        // Its own rewrite is not fixed again (the bridge without an address is a warning).
        let after = parse_domain(fixed.output.as_bytes()).unwrap();
        assert_eq!(
            decide(&after, &host(), &fix, Watched::Definition).action,
            Action::Warn
        );
        assert_eq!(rewrite_options(&Config::default()), fix::Options::default());
    }

    #[test]
    fn a_hotplug_is_only_ever_warned_about() {
        let fix = Config {
            watch_action: WatchAction::Fix,
            ..Config::default()
        };
        let v = verdict(BAD, &fix, Watched::Hotplug);
        assert_eq!(v.action, Action::Warn);
        assert!(v.findings.iter().all(|j| j.disposition == Disposition::Warned));
        let off = verdict(&with_metadata("off"), &fix, Watched::Hotplug);
        assert_eq!(off.action, Action::Leave);
    }

    #[test]
    fn the_hosts_drivers_and_a_hard_limit_are_warned_about_never_fixed_and_past_at_a_hotplug() {
        let fix = Config {
            watch_action: WatchAction::Fix,
            ..Config::default()
        };
        let a = PciAddr {
            domain: 6,
            bus: 1,
            slot: 0,
            function: 0,
        };
        let b = PciAddr { function: 1, ..a };
        let host = StaticHost::new()
            .with_device(a, 20, None)
            .with_device(b, 20, None)
            .with_driver(b, "mlx5_core");
        let xml = GOOD.replace(
            "<devices>",
            "<devices><controller type='pci' index='1' model='pci-root'><model name='spapr-pci-host-bridge'/>\
             <target index='1'/></controller><hostdev mode='subsystem' type='pci' managed='yes'><source>\
             <address domain='0x0006' bus='0x01' slot='0x00' function='0x0'/></source><address \
             type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/></hostdev>",
        );
        let domain = parse_domain(xml.as_bytes()).unwrap();
        let v = decide(&domain, &host, &fix, Watched::Definition);
        assert_eq!(summary(&v), [("iommu-group-not-viable", "warned")]);
        assert_eq!(v.action, Action::Warn);
        // The hook refuses it: the start would fail.
        assert!(decide(&domain, &host, &Config::default(), HookCall::new(Phase::Prepare)).reject());
        // A hot-plug has happened: what held the group before is past.
        let v = decide(&domain, &host, &fix, Watched::Hotplug);
        assert!(v.findings.is_empty() && v.action == Action::Leave);
        // A hard limit below the memory: an error, refused at start, never rewritten.
        let limited = xml
            .replace(
                "<name>ok</name>",
                "<name>ok</name><memory unit='GiB'>8</memory><memtune>\
                      <hard_limit unit='GiB'>4</hard_limit></memtune>",
            )
            .replace("0x0006", "0x0007");
        let domain = parse_domain(limited.as_bytes()).unwrap();
        let host = StaticHost::new().with_device(PciAddr { domain: 7, ..a }, 21, None);
        let v = decide(&domain, &host, &fix, Watched::Definition);
        assert_eq!(summary(&v), [("memlock-limit-too-low", "warned")]);
        assert_eq!(v.action, Action::Warn);
        assert!(decide(&domain, &host, &Config::default(), HookCall::new(Phase::Prepare)).reject());
    }
}
