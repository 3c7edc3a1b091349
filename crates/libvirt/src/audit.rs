//! `phbguard audit`: every guest of one connection in one pass (`virConnectListAllDomains`),
//! judged on its persistent definition and, when running, its live one; then what only shows
//! across guests (a host device in two definitions).

use phbguard_core::config::{Config, Mode};
use phbguard_core::host::{Facts, HostFacts};
use phbguard_core::model::Domain as Definition;
use phbguard_core::parse_domain;
use phbguard_core::rules::{Finding, Severity, judge_with, shared_hostdevs};
use phbguard_core::spare;
use phbguard_core::verdict::{self, HookCall, Phase};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::sys;

/// Which of a guest's definitions was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// What the next start uses (`VIR_DOMAIN_XML_INACTIVE`).
    Persistent,
    /// What runs now.
    Live,
}

impl Which {
    pub fn as_str(self) -> &'static str {
        match self {
            Which::Persistent => "persistent",
            Which::Live => "live",
        }
    }
}

/// One judged definition of a guest.
#[derive(Debug)]
pub struct Judged {
    pub which: Which,
    pub definition: Definition,
    /// The host facts it was judged on (its hostdevs' IOMMU groups), which the JSON report's
    /// `topology` shows.
    pub facts: Facts,
    /// Every finding, also for an opted-out guest (the hook would not look).
    pub findings: Vec<Finding>,
    /// The mode the hook applies to this guest: the policy default (enforce) unless the
    /// definition's `<phbguard:policy mode>` says otherwise.
    pub mode: Mode,
    /// The hook would refuse to start this definition (under the default policy).
    pub start_refused: bool,
    /// `<phbguard:policy mode>` names none of enforce, warn, off: the hook logs a
    /// `metadata-error` and applies the policy file's mode, so the opt-out written is not the
    /// one that applies.
    pub bad_metadata_mode: Option<String>,
    /// Its spare PHBs (empty, other than the default one); `None` for a guest that is not
    /// pSeries. On a live definition these are the PHBs QEMU has: what a hostdev of a new IOMMU
    /// group can be hot-plugged onto without a restart.
    pub spare_phbs: Option<usize>,
}

impl Judged {
    /// `<metadata><phbguard:policy mode='off'/>`: the guest opted out, as the hook honours.
    pub fn opted_out(&self) -> bool {
        self.mode == Mode::Off
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity() == severity).count()
    }

    /// The rule of the first error finding, else of the first warning.
    pub fn worst_rule(&self) -> Option<&'static str> {
        let first = |s: Severity| self.findings.iter().find(|f| f.severity() == s);
        first(Severity::Error)
            .or_else(|| first(Severity::Warning))
            .map(|f| f.rule.id.as_str())
    }

    /// What is wrong with the definition's `<phbguard:policy>` metadata, as the hook says it.
    pub fn metadata_error(&self) -> Option<String> {
        self.bad_metadata_mode.as_ref().map(|m| {
            format!(
                "<metadata><phbguard:policy mode='{m}'> is not enforce, warn or off; the hook \
                 ignores it and uses the policy file's mode ('{}' under the default policy)",
                self.mode.as_str()
            )
        })
    }

    /// Whether this definition makes the audit fail: error findings, not opted out.
    pub fn fails(&self) -> bool {
        !self.opted_out() && self.count(Severity::Error) > 0
    }
}

#[derive(Debug)]
pub struct Guest {
    pub name: String,
    pub uuid: String,
    /// As virsh words it: `running`, `shut off`, `paused`, ...
    pub state: &'static str,
    pub judged: Vec<Judged>,
}

/// A guest whose definition could not be read or parsed.
#[derive(Debug)]
pub struct Unreadable {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Audit {
    pub guests: Vec<Guest>,
    pub unreadable: Vec<Unreadable>,
}

impl Audit {
    pub fn fails(&self) -> bool {
        self.guests.iter().flat_map(|g| &g.judged).any(Judged::fails)
    }
}

/// The hook's policy as audit applies it: what the hook would decide at `prepare begin`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub config: Config,
    /// The policy file has a problem: the hook then judges in warn mode (never refuses).
    pub in_doubt: bool,
}

/// Judges every guest of `conn` against `host`.
pub fn audit(conn: &Connect, host: &dyn HostFacts, policy: &Policy) -> Result<Audit, String> {
    // Flags 0: every guest, active and inactive, persistent and transient.
    let domains = conn
        .list_all_domains(0)
        .map_err(|e| format!("libvirt cannot list domains: {e}"))?;
    let mut audit = Audit::default();
    for dom in &domains {
        match guest(dom, host, policy) {
            Ok(g) => audit.guests.push(g),
            Err(reason) => audit.unreadable.push(Unreadable {
                name: dom.name().unwrap_or_default(),
                reason,
            }),
        }
    }
    audit.guests.sort_by(|a, b| a.name.cmp(&b.name));

    // A device is "given" to a guest by the definition its next start uses: the persistent one,
    // or the live one of a transient guest.
    let next_start: Vec<&Definition> = audit
        .guests
        .iter()
        .filter_map(|g| g.judged.first().map(|j| &j.definition))
        .collect();
    let shared = shared_hostdevs(&next_start);
    for (guest, findings) in audit
        .guests
        .iter_mut()
        .filter(|g| !g.judged.is_empty())
        .zip(shared)
    {
        guest.judged[0].findings.extend(findings);
    }
    Ok(audit)
}

fn guest(dom: &Domain, host: &dyn HostFacts, policy: &Policy) -> Result<Guest, String> {
    let name = dom.name().map_err(|e| e.to_string())?;
    let uuid = dom.uuid_string().map_err(|e| e.to_string())?;
    let (state, _) = dom.state().map_err(|e| format!("cannot read its state: {e}"))?;
    let persistent = dom.is_persistent().map_err(|e| e.to_string())?;
    let running = dom.is_active().map_err(|e| e.to_string())?;
    let mut judged = Vec::with_capacity(2);
    let mut read = |which: Which, flags: sys::virDomainXMLFlags| -> Result<(), String> {
        let xml = dom
            .xml_desc(flags)
            .map_err(|e| format!("cannot read its {} definition: {e}", which.as_str()))?;
        let definition =
            parse_domain(xml.as_bytes()).map_err(|e| format!("its {} definition: {e}", which.as_str()))?;
        let facts = Facts::gather(&definition, host);
        let mut findings = judge_with(&definition, &facts);
        // A running guest's devices are VFIO's already: what held them before its start is
        // past (and each of its definitions is judged again before its next start).
        if running {
            findings.retain(|f| !f.rule.id.judges_host_state());
        }
        // What the hook decides at `prepare begin`, from the same pure function it uses.
        let hook = verdict::decide_on(
            &definition,
            &policy.config,
            HookCall {
                warn_only: policy.in_doubt,
                ..HookCall::new(Phase::Prepare)
            },
            || findings.clone(),
        );
        let spare_phbs = spare::spare_phbs(&definition, &facts).map(|s| s.len());
        judged.push(Judged {
            which,
            spare_phbs,
            definition,
            facts,
            findings,
            mode: hook.mode,
            start_refused: hook.reject(),
            bad_metadata_mode: hook.bad_metadata_mode,
        });
        Ok(())
    };
    if persistent {
        read(Which::Persistent, sys::VIR_DOMAIN_XML_INACTIVE)?;
    }
    if running {
        read(Which::Live, 0)?;
    }
    Ok(Guest {
        name,
        uuid,
        state: state_name(state.unwrap_or(DomainState::NoState)),
        judged,
    })
}

/// virsh's words (tools/virsh-domain-monitor.c, `virshDomainStateToString`).
fn state_name(state: DomainState) -> &'static str {
    match state {
        DomainState::NoState => "no state",
        DomainState::Running => "running",
        DomainState::Blocked => "idle",
        DomainState::Paused => "paused",
        DomainState::Shutdown => "in shutdown",
        DomainState::Shutoff => "shut off",
        DomainState::Crashed => "crashed",
        DomainState::PMSuspended => "pmsuspended",
    }
}
