//! `fix`: rewrite a pSeries domain into one that keeps the isolation rule, changing as few
//! bytes as possible, and prove the result by judging it again.
//!
//! `plan` decides what moves, `render` turns that into byte edits, [`crate::edit`]
//! applies them; [`fix`] ties them together and re-checks the output, so a rewrite that would
//! still break a rule is reported, never passed off as a fix.

mod order;
mod plan;
mod render;

use std::fmt;

use crate::edit::Overlap;
use crate::error::ParseError;
use crate::host::{Facts, HostFacts};
use crate::model::{DeviceKind, Domain, Subject};
use crate::parse_domain;
use crate::rules::{Finding, Severity, judge_topology};
use crate::topology::Topology;

pub use plan::{Change, Options, Plan, Spares, Unfixable};
pub use render::RenderError;

/// The outcome of fixing one document.
#[derive(Debug)]
pub struct Fixed {
    /// What the planner decided.
    pub plan: Plan,
    /// The rewritten document; the input itself when the plan is empty.
    pub output: String,
    /// Error findings the output still has that no planner reason covers.
    pub remaining: Vec<Finding>,
    /// Error findings about the host's state the output still has (a group VFIO cannot open
    /// while a host driver holds one of its devices): the host must change, not the
    /// definition, so they do not make the output unclean.
    pub host_state: Vec<Finding>,
}

impl Fixed {
    /// Whether the output keeps every error rule.
    pub fn is_clean(&self) -> bool {
        self.plan.unfixable.is_empty() && self.remaining.is_empty()
    }

    /// One per thing left broken: the planner's reasons, then the findings it did not
    /// foresee.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems: Vec<Problem> = self
            .plan
            .unfixable
            .iter()
            .map(|u| Problem {
                line: u.line,
                text: format!("{}: {}", u.device, u.reason),
            })
            .collect();
        // A finding's message already starts with the device it names. Its line is one of the
        // rewritten document, which is not written: none is given.
        problems.extend(self.remaining.iter().map(|f| Problem {
            line: None,
            text: format!("{} ({}); phbguard fix does not change this", f.message, f.rule.id),
        }));
        problems
    }
}

impl Fixed {
    /// What the host must change for the guest to start, one per finding: the rewrite cannot.
    pub fn host_notes(&self) -> Vec<Problem> {
        let unchanged = self.plan.is_empty();
        self.host_state
            .iter()
            .map(|f| Problem {
                // The finding's line is one of the output, the input's only when nothing moved.
                line: f.line.filter(|_| unchanged),
                text: format!(
                    "{} ({}); the host has to change this, phbguard fix does not",
                    f.message, f.rule.id
                ),
            })
            .collect()
    }
}

/// Something a rewrite has to leave broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line of the input it is on, when it has one.
    pub line: Option<usize>,
    /// What it is and why, starting with the device it names.
    pub text: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The rewrite could not be made at all: a bug, not a property of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalError {
    /// The plan could not be turned into edits.
    Render(RenderError),
    /// The edits overlap.
    Edit(Overlap),
    /// The rewritten document does not parse.
    Reparse(ParseError),
}

impl fmt::Display for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Render(_) => "internal error while rewriting: cannot render the plan",
            Self::Edit(_) => "internal error while rewriting: cannot apply the edits",
            Self::Reparse(_) => "internal error while rewriting: the rewritten XML does not parse",
        })
    }
}

impl std::error::Error for InternalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(match self {
            Self::Render(e) => e,
            Self::Edit(e) => e,
            Self::Reparse(e) => e,
        })
    }
}

/// Fixes `input`, which `domain` was parsed from.
pub fn fix(
    input: &str,
    domain: &Domain,
    host: &dyn HostFacts,
    options: Options,
) -> Result<Fixed, InternalError> {
    // The rewrite moves devices but keeps the same host devices: one read of the host serves
    // the plan and the re-check of its output.
    let facts = Facts::gather(domain, host);
    let topology = Topology::new(domain, &facts);
    let mut plan = plan::plan(&topology, options);
    let (mut output, mut after) = rewrite(input, domain, &plan)?;
    // Spares are room asked for, not a rule: under a <hard_limit> that is not to be raised,
    // only as many as it leaves room for are kept (the last added go first), and why is said.
    if !options.raise_hard_limit
        && let Some(limit) = domain.memory.hard_limit
    {
        let over = |after: &Option<Domain>| {
            memlock_need(&Topology::new(after.as_ref().unwrap_or(domain), &facts))
                .is_some_and(|need| need > limit.kib)
        };
        let mut dropped = 0;
        while over(&after)
            && let Some(last) = plan
                .changes
                .iter()
                .rposition(|c| matches!(c, Change::AddSparePhb { .. }))
        {
            plan.changes.remove(last);
            dropped += 1;
            (output, after) = rewrite(input, domain, &plan)?;
        }
        if dropped > 0 {
            plan.spares.kept = plan.spares.kept.saturating_sub(dropped);
            plan.spares.short = Some(format!(
                "each more would raise what libvirt 9.0 computes QEMU must lock past this \
                 <hard_limit> of {}; 'phbguard fix --raise-hard-limit' raises it with them",
                crate::rules::size_text(limit.kib)
            ));
        }
    }
    // PHBs the plan adds raise the memory libvirt lets QEMU lock; a <hard_limit> below that
    // is raised only when asked, and a rewrite that pushes the need past it is not handed back.
    if let Some(limit) = domain.memory.hard_limit
        && let Some(need) = memlock_need(&Topology::new(after.as_ref().unwrap_or(domain), &facts))
        && need > limit.kib
    {
        if options.raise_hard_limit {
            plan.changes.push(Change::RaiseHardLimit {
                from_kib: limit.kib,
                to_kib: need,
            });
            (output, after) = rewrite(input, domain, &plan)?;
        } else if let Some(was) = memlock_need(&topology)
            && need > was
        {
            let added = plan
                .changes
                .iter()
                .filter(|c| matches!(c, Change::AddPhb { .. }))
                .count();
            plan.unfixable.push(Unfixable {
                subject: Subject::HardLimit,
                device: "memtune hard_limit".into(),
                reason: format!(
                    "{} raise{} what libvirt 9.0 computes QEMU must lock from {} to {}, above \
                     this <hard_limit> of {}: the guest would fail at start; run 'phbguard fix \
                     --raise-hard-limit' to raise it to {need} KiB, or raise or remove it by hand",
                    if added == 1 {
                        "the PHB this fix adds".to_string()
                    } else {
                        format!("the {added} PHBs this fix adds")
                    },
                    if added == 1 { "s" } else { "" },
                    crate::rules::size_text(was),
                    crate::rules::size_text(need),
                    crate::rules::size_text(limit.kib),
                ),
                line: Some(limit.line),
            });
        }
    }
    let judged = after.as_ref().unwrap_or(domain);
    let before = positions_before(judged, &plan);
    // The host's drivers are not the definition's: fix neither can nor claims to change them.
    let (host_state, remaining): (Vec<Finding>, Vec<Finding>) =
        judge_topology(&Topology::new(judged, &facts))
            .into_iter()
            .filter(|f| f.severity() == Severity::Error)
            .partition(|f| f.rule.id.judges_host_state());
    let remaining = remaining
        .into_iter()
        .filter(|f| {
            let subject = match f.subject {
                Subject::Device(i) => before[i].map(Subject::Device),
                controller => Some(controller),
            };
            !plan.unfixable.iter().any(|u| Some(u.subject) == subject)
        })
        .collect();
    Ok(Fixed {
        plan,
        output,
        remaining,
        host_state,
    })
}

/// The document `plan` makes of `input`, and its parse; the input itself (and no parse) for an
/// empty plan.
fn rewrite(input: &str, domain: &Domain, plan: &Plan) -> Result<(String, Option<Domain>), InternalError> {
    if plan.is_empty() {
        return Ok((input.to_string(), None));
    }
    let edits = render::edits(input, domain, plan).map_err(InternalError::Render)?;
    let output = crate::edit::apply(input, edits).map_err(InternalError::Edit)?;
    let after = parse_domain(output.as_bytes()).map_err(InternalError::Reparse)?;
    Ok((output, Some(after)))
}

/// What libvirt computes QEMU must lock for the topology's guest, in KiB, when known.
fn memlock_need(t: &Topology<'_>) -> Option<u64> {
    if !t.pseries {
        return None;
    }
    crate::memlock::Inputs::of(t).map(|i| crate::memlock::needed_kib(&i))
}

/// For each device of the rewritten domain `after`, its position in the domain the plan was made
/// for; `None` for a PHB the plan added. A rewrite only adds PHBs and removes bridges, so the
/// other devices keep their order.
fn positions_before(after: &Domain, plan: &Plan) -> Vec<Option<usize>> {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for change in &plan.changes {
        match *change {
            Change::AddPhb { index, .. } | Change::AddSparePhb { index, .. } => added.push(index),
            Change::RemoveController { device, .. } => removed.push(device),
            Change::Move { .. }
            | Change::Retarget { .. }
            | Change::SetPhbModel { .. }
            | Change::RaiseHardLimit { .. } => {}
        }
    }
    let mut kept = (0..).filter(|i| !removed.contains(i));
    after
        .devices
        .iter()
        .map(|d| match &d.kind {
            DeviceKind::PciController(c) if c.is_phb() && added.contains(&c.index) => None,
            _ => kept.next(),
        })
        .collect()
}

impl Change {
    /// How reports name the change: `hostdev 0002:02:00.0: 0000:00:05.0 -> 0000:02:01.0`,
    /// `added PHB index 2 target 2`.
    pub fn describe(&self, domain: &Domain) -> String {
        match *self {
            Change::Move { device, from, to } => {
                let name = domain.devices[device].name();
                match from {
                    // A new PHB took the index of the bridge the device was behind.
                    Some(from) if from == to => {
                        format!("{name}: {from} -> {to} (bus {} is now a PHB)", to.bus)
                    }
                    Some(from) => format!("{name}: {from} -> {to}"),
                    None => format!("{name}: placed at {to}"),
                }
            }
            Change::AddPhb { index, target, node } => match node {
                Some(node) => format!("added PHB index {index} target {target} node {node}"),
                None => format!("added PHB index {index} target {target}"),
            },
            Change::AddSparePhb { index, target, node } => match node {
                Some(node) => format!("added spare PHB index {index} target {target} node {node}"),
                None => format!("added spare PHB index {index} target {target}"),
            },
            Change::Retarget { index, from, to, .. } => {
                format!("controller pci index {index}: target index {from} -> {to}")
            }
            Change::SetPhbModel { index, ref from, .. } => format!(
                "controller pci index {index}: model name '{from}' -> '{}'",
                crate::topology::PHB_MODEL_NAME
            ),
            Change::RemoveController { device, index } => {
                let model = domain.devices[device].model_attr.as_deref().unwrap_or("bridge");
                format!("removed controller pci index {index} ({model}), nothing is behind it now")
            }
            Change::RaiseHardLimit { from_kib, to_kib } => format!(
                "memtune hard_limit: {from_kib} KiB -> {to_kib} KiB, what libvirt 9.0 computes \
                 QEMU must lock"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
