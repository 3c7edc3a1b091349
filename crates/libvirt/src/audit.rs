//! `phbguard audit`: every guest of one connection in one pass (`virConnectListAllDomains`),
//! judged on its persistent definition and, when running, its live one; then what only shows
//! across guests (a host device in two definitions).

use phbguard_core::config::{Config, Mode, Policy};

use phbguard_core::host::{Facts, HostFacts};
use phbguard_core::model::Domain as Definition;
use phbguard_core::parse_domain;
use phbguard_core::rules::{Finding, Severity, judge_with, shared_hostdevs};
use phbguard_core::spare;
use phbguard_core::verdict::{self, HookCall, OptOut, Phase};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::sys;

use crate::host::HostSource;

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
    /// The mode the hook applies to this guest at its start: the policy file's, the
    /// definition's `<phbguard:policy mode>` instead, warn while the file has problems.
    pub mode: Mode,
    /// The hook, under this host's policy file as it is, would refuse to start this definition.
    pub start_refused: bool,
    /// The hook would refuse it under `mode = "enforce"` in a valid policy file: error findings
    /// and no opt-out. What the switch to enforce would refuse; what makes audit exit 1.
    pub refused_under_enforce: bool,
    /// How the guest opted out of refusal, if it did.
    pub opt_out: Option<OptOut>,
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
    /// Opted out of refusal by its metadata (`mode='off'` or `'warn'`) or the `exempt` list.
    pub fn opted_out(&self) -> bool {
        self.opt_out.is_some()
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
                 ignores it and uses the policy file's mode ('{}' here)",
                self.mode.as_str()
            )
        })
    }

    /// Whether this definition makes the audit fail: the hook refuses it, or would once the
    /// policy file says `mode = "enforce"`.
    pub fn fails(&self) -> bool {
        self.refused_under_enforce
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

#[derive(Debug)]
pub struct Audit {
    /// The policy file judged with, as the hook reads it.
    pub policy: Policy,
    /// The connection is to another host: the policy file read is this machine's.
    pub remote: bool,
    pub host_source: HostSource,
    pub guests: Vec<Guest>,
    pub unreadable: Vec<Unreadable>,
}

impl Audit {
    pub fn fails(&self) -> bool {
        self.guests.iter().flat_map(|g| &g.judged).any(Judged::fails)
    }

    /// Why a definition `refused_under_enforce` is not refused now: the policy's mode, or its
    /// problems. `None` when it is refused now.
    pub fn why_not_refused(&self, j: &Judged) -> Option<&'static str> {
        if j.start_refused || !j.refused_under_enforce {
            return None;
        }
        Some(match self.policy.config.mode {
            _ if self.policy.in_doubt() => "policy has problems",
            Mode::Off => "mode off",
            _ => "mode warn",
        })
    }
}

/// Judges every guest of `conn` against `host`, and what the hook would do with each under
/// `policy`.
pub fn audit(
    conn: &Connect,
    host: &dyn HostFacts,
    policy: Policy,
    host_source: HostSource,
    remote: bool,
) -> Result<Audit, String> {
    // Flags 0: every guest, active and inactive, persistent and transient.
    let domains = conn
        .list_all_domains(0)
        .map_err(|e| format!("libvirt cannot list domains: {e}"))?;
    let mut audit = Audit {
        policy,
        remote,
        host_source,
        guests: Vec::new(),
        unreadable: Vec::new(),
    };
    let mut guests = Vec::new();
    for dom in &domains {
        match guest(dom, host) {
            Ok(g) => guests.push(g),
            Err(reason) => audit.unreadable.push(Unreadable {
                name: dom.name().unwrap_or_default(),
                reason,
            }),
        }
    }
    guests.sort_by(|a, b| a.0.name.cmp(&b.0.name));

    // A device is "given" to a guest by the definition its next start uses: the persistent one,
    // or the live one of a transient guest.
    let next_start: Vec<&Definition> = guests
        .iter()
        .filter_map(|(_, defs)| defs.first().map(|r| &r.definition))
        .collect();
    let shared = shared_hostdevs(&next_start);
    for ((_, defs), findings) in guests.iter_mut().filter(|(_, d)| !d.is_empty()).zip(shared) {
        defs[0].findings.extend(findings);
    }
    let verdicts = Verdicts::new(&audit.policy);
    audit.guests = guests
        .into_iter()
        .map(|(mut guest, defs)| {
            guest.judged = defs.into_iter().map(|read| verdicts.judged(read)).collect();
            guest
        })
        .collect();
    Ok(audit)
}

/// What the hook decides at `prepare begin`, from the same pure function it uses: under the
/// policy as it is (warn while it has problems), and under `mode = "enforce"` in a valid file.
struct Verdicts {
    now: Config,
    in_doubt: bool,
    enforced: Config,
}

impl Verdicts {
    fn new(policy: &Policy) -> Self {
        Verdicts {
            now: policy.config.clone(),
            in_doubt: policy.in_doubt(),
            enforced: Config {
                mode: Mode::Enforce,
                ..policy.config.clone()
            },
        }
    }

    fn judged(&self, read: Read) -> Judged {
        let Read {
            which,
            spare_phbs,
            definition,
            facts,
            findings,
        } = read;
        let start = HookCall::new(Phase::Prepare);
        let now = verdict::decide_on(
            &definition,
            &self.now,
            HookCall {
                warn_only: self.in_doubt,
                ..start
            },
            || findings.clone(),
        );
        let enforced = verdict::decide_on(&definition, &self.enforced, start, || findings.clone());
        Judged {
            which,
            definition,
            facts,
            findings,
            mode: now.mode,
            start_refused: now.reject(),
            refused_under_enforce: enforced.reject(),
            opt_out: now.opt_out(),
            bad_metadata_mode: now.bad_metadata_mode,
            spare_phbs,
        }
    }
}

/// One definition of a guest as read and judged, before the verdicts.
struct Read {
    which: Which,
    spare_phbs: Option<usize>,
    definition: Definition,
    facts: Facts,
    findings: Vec<Finding>,
}

fn guest(dom: &Domain, host: &dyn HostFacts) -> Result<(Guest, Vec<Read>), String> {
    let name = dom.name().map_err(|e| e.to_string())?;
    let uuid = dom.uuid_string().map_err(|e| e.to_string())?;
    let (state, _) = dom.state().map_err(|e| format!("cannot read its state: {e}"))?;
    let persistent = dom.is_persistent().map_err(|e| e.to_string())?;
    let running = dom.is_active().map_err(|e| e.to_string())?;
    let mut defs = Vec::with_capacity(2);
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
        let spare_phbs = spare::spare_phbs(&definition, &facts).map(|s| s.len());
        defs.push(Read {
            which,
            spare_phbs,
            definition,
            facts,
            findings,
        });
        Ok(())
    };
    if persistent {
        read(Which::Persistent, sys::VIR_DOMAIN_XML_INACTIVE)?;
    }
    if running {
        read(Which::Live, 0)?;
    }
    let guest = Guest {
        name,
        uuid,
        state: state_name(state.unwrap_or(DomainState::NoState)),
        judged: Vec::new(),
    };
    Ok((guest, defs))
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
