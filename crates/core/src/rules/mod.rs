//! The rule catalogue. Every rule has a stable id, a severity, a one-line summary, a longer
//! explanation (`phbguard explain`) and a check; `RULES` lists them in the contract's order.

mod controllers;
mod fleet;
mod hostdevs;
mod numa;
mod pools;
mod topology;

use std::fmt;

use crate::host::HostFacts;
use crate::model::Domain;
pub use fleet::shared_hostdevs;
pub use topology::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    pub explanation: &'static str,
    check: fn(&'static Rule, &Topology<'_>, &mut Vec<Finding>),
}

impl Rule {
    /// Whether only a libvirt connection (`phbguard audit`) can judge this rule: it needs
    /// libvirt's networks or every guest of the host, which a file and sysfs do not show.
    pub fn needs_libvirt(&self) -> bool {
        NEEDS_LIBVIRT.iter().any(|r| r.id == self.id)
    }
}

/// The rules [`Rule::needs_libvirt`] names.
const NEEDS_LIBVIRT: &[Rule] = &[
    pools::HOSTDEV_NETWORK_NOT_ISOLATED,
    fleet::HOSTDEV_SHARED_BETWEEN_GUESTS,
];

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

/// What a finding is about, for tools (the rewriter) that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An element under `<devices>`, by its position in [`Domain::devices`].
    Device(usize),
    /// The PCI controller with this index, whether written or implied.
    Controller(u32),
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: &'static Rule,
    pub subject: Subject,
    /// How the finding names its subject: `hostdev 0002:02:00.0 at 0000:00:05.0`.
    pub device: String,
    /// One sentence: what is wrong and what to do.
    pub message: String,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.rule.severity
    }
}

pub static RULES: &[Rule] = &[
    controllers::MULTIPLE_PCI_ROOTS,
    controllers::PHB_WRONG_MODEL,
    controllers::PHB_TARGET_OUT_OF_RANGE,
    controllers::PHB_DEFAULT_TARGET,
    controllers::PHB_TARGET_DUPLICATE,
    hostdevs::HOSTDEV_BEHIND_BRIDGE,
    hostdevs::HOSTDEV_ON_DEFAULT_PHB,
    hostdevs::PHB_MIXES_IOMMU_GROUPS,
    hostdevs::IOMMU_GROUP_SPLIT,
    hostdevs::EMULATED_ON_HOSTDEV_PHB,
    controllers::PCI_BRIDGE_ON_PSERIES,
    hostdevs::IOMMU_GROUP_UNKNOWN,
    numa::PHB_NUMA_MISMATCH,
    pools::HOSTDEV_NETWORK_NOT_ISOLATED,
    fleet::HOSTDEV_SHARED_BETWEEN_GUESTS,
];

/// The rule with this id.
pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Judges a domain against every rule, in catalogue order.
pub fn judge(domain: &Domain, host: &dyn HostFacts) -> Vec<Finding> {
    let topology = Topology::new(domain, host);
    let mut findings = Vec::new();
    for rule in RULES {
        (rule.check)(rule, &topology, &mut findings);
    }
    findings
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity() == Severity::Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_ids_are_unique_kebab_case_and_documented() {
        for (i, rule) in RULES.iter().enumerate() {
            assert!(
                rule.id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                rule.id
            );
            assert!(
                RULES[..i].iter().all(|r| r.id != rule.id),
                "duplicate {}",
                rule.id
            );
            assert!(
                !rule.summary.is_empty() && !rule.summary.contains('\n'),
                "{}",
                rule.id
            );
            assert!(
                rule.explanation.lines().count() >= 5,
                "{} explanation too thin",
                rule.id
            );
            assert_eq!(find(rule.id).map(|r| r.id), Some(rule.id));
        }
    }
}
