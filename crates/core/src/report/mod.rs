//! Turning findings into what people and scripts read. Reports know nothing of rules beyond
//! what a [`Finding`] carries.

pub mod diff;
pub mod json;
pub mod text;

use crate::host::Facts;
use crate::model::Domain;
use crate::rules::{Finding, judge_with};

/// One judged document.
#[derive(Debug)]
pub struct Judged {
    /// The file as named on the command line (`-` for standard input).
    pub file: String,
    /// `<name>`
    pub domain: Option<String>,
    /// `<uuid>`
    pub uuid: Option<String>,
    /// Whether the rules beyond `multiple-pci-roots` applied.
    pub pseries: bool,
    /// What the rules found, in catalogue order.
    pub findings: Vec<Finding>,
    /// The guest's PCI buses and devices as the rules saw them ([`json::topology`]), for a JSON
    /// report only ([`Judged::with_topology`]): at 2,000 devices it costs more than the judging.
    pub topology: Option<serde_json::Value>,
}

impl Judged {
    /// The report of `file`, parsed into `domain` and judged on `facts`.
    pub fn new(file: &str, domain: &Domain, facts: &Facts) -> Self {
        let findings = judge_with(domain, facts);
        Judged {
            file: file.to_string(),
            domain: domain.name.clone(),
            uuid: domain.uuid.clone(),
            pseries: domain.is_pseries(),
            topology: None,
            findings,
        }
    }

    /// With the topology a JSON report carries, on the same `domain` and `facts`.
    pub fn with_topology(mut self, domain: &Domain, facts: &Facts) -> Self {
        self.topology = Some(json::topology(domain, facts, &self.findings));
        self
    }

    /// Where a finding on `line` is, as compilers write it: `db02.xml:14`, `<stdin>:14`.
    pub fn location(&self, line: Option<usize>) -> String {
        let file = if self.file == "-" { "<stdin>" } else { &self.file };
        match line {
            Some(line) => format!("{file}:{line}"),
            None => file.to_string(),
        }
    }
}
