//! The rule catalogue. Every rule has a stable id ([`RuleId`]), a severity, a one-line summary,
//! a longer explanation (`phbguard explain`) and a check; `RULES` lists them in the contract's
//! order, the order [`RuleId`] declares them in.

mod addresses;
mod controllers;
mod fleet;
mod hostdevs;
mod memlock;
mod numa;
mod pools;
mod viability;

use std::fmt;
use std::str::FromStr;

use crate::host::{Facts, HostFacts};
use crate::model::{Domain, Subject};
use crate::topology::Topology;
pub use fleet::shared_hostdevs;
pub(crate) use memlock::size as size_text;
/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Breaks the isolation rule or will not start: rejects.
    Error,
    /// Worth knowing; does not reject.
    Warning,
}

impl Severity {
    /// The severity as reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A rule's stable id, as reports, syslog lines and `phbguard explain` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleId {
    /// `multiple-pci-roots`
    MultiplePciRoots,
    /// `phb-wrong-model`
    PhbWrongModel,
    /// `phb-target-out-of-range`
    PhbTargetOutOfRange,
    /// `phb-default-target`
    PhbDefaultTarget,
    /// `phb-target-duplicate`
    PhbTargetDuplicate,
    /// `hostdev-behind-bridge`
    HostdevBehindBridge,
    /// `hostdev-on-default-phb`
    HostdevOnDefaultPhb,
    /// `phb-mixes-iommu-groups`
    PhbMixesIommuGroups,
    /// `iommu-group-split`
    IommuGroupSplit,
    /// `emulated-on-hostdev-phb`
    EmulatedOnHostdevPhb,
    /// `pci-address-duplicate`
    PciAddressDuplicate,
    /// `iommu-group-not-viable`
    IommuGroupNotViable,
    /// `memlock-limit-too-low`
    MemlockLimitTooLow,
    /// `pci-bridge-on-pseries`
    PciBridgeOnPseries,
    /// `iommu-group-unknown`
    IommuGroupUnknown,
    /// `phb-numa-mismatch`
    PhbNumaMismatch,
    /// `hostdev-network-not-isolated`
    HostdevNetworkNotIsolated,
    /// `hostdev-shared-between-guests`
    HostdevSharedBetweenGuests,
}

impl RuleId {
    /// Every id, in catalogue order.
    pub const ALL: [RuleId; 18] = [
        RuleId::MultiplePciRoots,
        RuleId::PhbWrongModel,
        RuleId::PhbTargetOutOfRange,
        RuleId::PhbDefaultTarget,
        RuleId::PhbTargetDuplicate,
        RuleId::HostdevBehindBridge,
        RuleId::HostdevOnDefaultPhb,
        RuleId::PhbMixesIommuGroups,
        RuleId::IommuGroupSplit,
        RuleId::EmulatedOnHostdevPhb,
        RuleId::PciAddressDuplicate,
        RuleId::IommuGroupNotViable,
        RuleId::MemlockLimitTooLow,
        RuleId::PciBridgeOnPseries,
        RuleId::IommuGroupUnknown,
        RuleId::PhbNumaMismatch,
        RuleId::HostdevNetworkNotIsolated,
        RuleId::HostdevSharedBetweenGuests,
    ];

    /// The id as written: `hostdev-on-default-phb`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::MultiplePciRoots => "multiple-pci-roots",
            RuleId::PhbWrongModel => "phb-wrong-model",
            RuleId::PhbTargetOutOfRange => "phb-target-out-of-range",
            RuleId::PhbDefaultTarget => "phb-default-target",
            RuleId::PhbTargetDuplicate => "phb-target-duplicate",
            RuleId::HostdevBehindBridge => "hostdev-behind-bridge",
            RuleId::HostdevOnDefaultPhb => "hostdev-on-default-phb",
            RuleId::PhbMixesIommuGroups => "phb-mixes-iommu-groups",
            RuleId::IommuGroupSplit => "iommu-group-split",
            RuleId::EmulatedOnHostdevPhb => "emulated-on-hostdev-phb",
            RuleId::PciAddressDuplicate => "pci-address-duplicate",
            RuleId::IommuGroupNotViable => "iommu-group-not-viable",
            RuleId::MemlockLimitTooLow => "memlock-limit-too-low",
            RuleId::PciBridgeOnPseries => "pci-bridge-on-pseries",
            RuleId::IommuGroupUnknown => "iommu-group-unknown",
            RuleId::PhbNumaMismatch => "phb-numa-mismatch",
            RuleId::HostdevNetworkNotIsolated => "hostdev-network-not-isolated",
            RuleId::HostdevSharedBetweenGuests => "hostdev-shared-between-guests",
        }
    }

    /// The catalogue entry of this rule.
    pub fn rule(self) -> &'static Rule {
        &RULES[self as usize]
    }

    /// Whether only a libvirt connection (`phbguard audit`) can judge this rule: it needs
    /// libvirt's networks or every guest of the host, which a file and sysfs do not show.
    pub fn needs_libvirt(self) -> bool {
        matches!(
            self,
            RuleId::HostdevNetworkNotIsolated | RuleId::HostdevSharedBetweenGuests
        )
    }

    /// Whether the rule judges the host as it is now (which drivers hold the devices), not
    /// the definition: `fix` cannot change that, a running guest is past it (its devices are
    /// VFIO's already), and a hot-plug the watcher sees has already happened.
    pub fn judges_host_state(self) -> bool {
        self == RuleId::IommuGroupNotViable
    }

    /// Whether `fix` removes the rule's findings by itself, so that the watcher may rewrite a
    /// definition for them. Not for the host's state, nor for a `<hard_limit>`, which is an
    /// admin's decision that `fix` raises only when asked (`--raise-hard-limit`).
    pub fn fixable(self) -> bool {
        !matches!(self, RuleId::IommuGroupNotViable | RuleId::MemlockLimitTooLow)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A rule id that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRule(pub String);

impl fmt::Display for UnknownRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown rule '{}'", crate::escape::controls(&self.0))?;
        let ids = RuleId::ALL.map(RuleId::as_str);
        match crate::near::near(&self.0, &ids) {
            Some(id) => write!(f, " (did you mean '{id}'?)"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for UnknownRule {}

impl FromStr for RuleId {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleId::ALL
            .into_iter()
            .find(|id| id.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_string()))
    }
}

/// The host the examples ([`Rule::bad`], [`Rule::good`]) are judged on: host PCI device,
/// IOMMU group, NUMA node, the driver bound to it (`None`: no driver). `phbguard explain`
/// prints it with them.
pub const EXAMPLE_HOST: &[(&str, u32, u32, Option<&str>)] = &[
    ("0001:01:00.0", 1, 0, Some("vfio-pci")),
    ("0001:01:00.1", 1, 0, None),
    ("0002:01:00.0", 2, 8, Some("vfio-pci")),
    ("0003:01:00.0", 3, 0, Some("mlx5_core")),
    ("0003:01:00.1", 3, 0, Some("mlx5_core")),
];

/// One rule of the catalogue.
pub struct Rule {
    /// Its stable id.
    pub id: RuleId,
    /// Error or warning.
    pub severity: Severity,
    /// What it catches, in one line (the rules tables are these).
    pub summary: &'static str,
    /// What, why, and how to fix it by hand (`phbguard explain`).
    pub explanation: &'static str,
    /// What the rule flags: the inside of a `<domain>` (on [`EXAMPLE_HOST`]), as clippy's lint
    /// docs show code that fires.
    pub bad: &'static str,
    /// The same guest made compliant: no finding of any error rule.
    pub good: &'static str,
    check: fn(&'static Rule, &Topology<'_>, &mut Vec<Finding>),
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id.as_str())
    }
}

/// One thing a rule found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The rule that found it.
    pub rule: &'static Rule,
    /// How much it matters: the rule's severity, or less where the rule tells certain failure
    /// from possible failure (`memlock-limit-too-low`).
    pub severity: Severity,
    /// What it is about.
    pub subject: Subject,
    /// How the finding names its subject: `hostdev 0002:02:00.0 at 0000:00:05.0`.
    pub device: String,
    /// One sentence: what is wrong and what to do.
    pub message: String,
    /// The line of the input the subject starts on; `None` for a controller libvirt implies
    /// that has nothing on it to point at.
    pub line: Option<usize>,
}

impl Finding {
    /// A finding about the device at position `device` of the domain: the message is the
    /// device's name, then `what`.
    pub(crate) fn about_device(rule: &'static Rule, t: &Topology<'_>, device: usize, what: &str) -> Finding {
        let name = t.device(device).describe();
        Finding::about(rule, t, Subject::Device(device), name, what)
    }

    /// A finding about the PCI controller `index`, written or implied: the message is the
    /// controller's name, then `what`.
    pub(crate) fn about_controller(rule: &'static Rule, t: &Topology<'_>, index: u32, what: &str) -> Finding {
        let name = format!("controller pci index {index}");
        Finding::about(rule, t, Subject::Controller(index), name, what)
    }

    pub(crate) fn about(
        rule: &'static Rule,
        t: &Topology<'_>,
        subject: Subject,
        name: String,
        what: &str,
    ) -> Finding {
        Finding {
            rule,
            severity: rule.severity,
            subject,
            message: format!("{name} {what}"),
            device: name,
            line: t.line_of(subject),
        }
    }

    /// How much it matters.
    pub fn severity(&self) -> Severity {
        self.severity
    }
}

/// The catalogue, in [`RuleId`] order.
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
    addresses::PCI_ADDRESS_DUPLICATE,
    viability::IOMMU_GROUP_NOT_VIABLE,
    memlock::MEMLOCK_LIMIT_TOO_LOW,
    controllers::PCI_BRIDGE_ON_PSERIES,
    hostdevs::IOMMU_GROUP_UNKNOWN,
    numa::PHB_NUMA_MISMATCH,
    pools::HOSTDEV_NETWORK_NOT_ISOLATED,
    fleet::HOSTDEV_SHARED_BETWEEN_GUESTS,
];

/// The rule with this id, as a user wrote it.
pub fn find(id: &str) -> Option<&'static Rule> {
    id.parse::<RuleId>().ok().map(RuleId::rule)
}

/// Judges a domain against every rule, in catalogue order, reading the host facts it needs.
pub fn judge(domain: &Domain, host: &dyn HostFacts) -> Vec<Finding> {
    judge_with(domain, &Facts::gather(domain, host))
}

/// [`judge`] on host facts already gathered for `domain`, for callers that show them too (the
/// `topology` of the JSON reports) and must not read the host twice.
pub fn judge_with(domain: &Domain, facts: &Facts) -> Vec<Finding> {
    judge_topology(&Topology::new(domain, facts))
}

/// Judges a topology already built against every rule, in catalogue order.
pub(crate) fn judge_topology(topology: &Topology<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for rule in RULES {
        (rule.check)(rule, topology, &mut findings);
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
    use crate::host::StaticHost;
    use crate::model::PciAddr;

    fn example_host() -> StaticHost {
        EXAMPLE_HOST
            .iter()
            .fold(StaticHost::new(), |host, &(addr, group, node, driver)| {
                let addr = PciAddr::parse_sysfs(addr).unwrap();
                let host = host.with_device(addr, group, Some(node));
                match driver {
                    Some(driver) => host.with_driver(addr, driver),
                    None => host,
                }
            })
            // hostdev-network-not-isolated's examples name this hostdev-pool network.
            .with_hostdev_network("vfpool")
    }

    fn judge_example(rule: &Rule, example: &str) -> Vec<Finding> {
        let xml = format!("<domain type='kvm'>\n<name>example</name>\n{example}\n</domain>\n");
        let domain = crate::parse_domain(xml.as_bytes())
            .unwrap_or_else(|e| panic!("{}: example does not parse: {e}\n{xml}", rule.id));
        judge(&domain, &example_host())
    }

    #[test]
    fn each_bad_example_fires_its_rule_and_each_good_one_keeps_every_error_rule() {
        for rule in RULES {
            let mut bad = judge_example(rule, rule.bad);
            if rule.id == RuleId::HostdevSharedBetweenGuests {
                // Judged across guests: the example given to two of them.
                let xml = format!(
                    "<domain type='kvm'>\n<name>example</name>\n{}\n</domain>\n",
                    rule.bad
                );
                let guest = crate::parse_domain(xml.as_bytes()).unwrap();
                bad = shared_hostdevs(&[&guest, &guest]).remove(0);
            }
            assert!(
                bad.iter().any(|f| f.rule.id == rule.id),
                "{}: the bad example does not fire it: {bad:?}",
                rule.id
            );
            let good = judge_example(rule, rule.good);
            assert!(
                good.iter()
                    .all(|f| f.rule.id != rule.id && f.severity() != Severity::Error),
                "{}: the good example has findings: {good:?}",
                rule.id
            );
        }
    }

    #[test]
    fn the_catalogue_is_keyed_by_rule_id_in_declaration_order() {
        assert_eq!(RULES.len(), RuleId::ALL.len());
        for (i, id) in RuleId::ALL.into_iter().enumerate() {
            assert_eq!(id as usize, i, "{id}");
            assert_eq!(RULES[i].id, id);
            assert_eq!(id.rule().id, id);
            assert_eq!(id.as_str().parse::<RuleId>(), Ok(id));
            assert_eq!(id.to_string(), id.as_str());
        }
        assert_eq!(
            "no-such-rule".parse::<RuleId>(),
            Err(UnknownRule("no-such-rule".into()))
        );
        assert_eq!(
            UnknownRule("no-such-rule".into()).to_string(),
            "unknown rule 'no-such-rule'"
        );
        assert_eq!(
            UnknownRule("hostdev-on-defualt-phb".into()).to_string(),
            "unknown rule 'hostdev-on-defualt-phb' (did you mean 'hostdev-on-default-phb'?)"
        );
    }

    #[test]
    fn catalogue_ids_are_unique_kebab_case_and_documented() {
        for (i, rule) in RULES.iter().enumerate() {
            let id = rule.id.as_str();
            assert!(id.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{id}");
            assert!(RULES[..i].iter().all(|r| r.id.as_str() != id), "duplicate {id}");
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
            assert_eq!(find(id).map(|r| r.id), Some(rule.id));
        }
    }
}
