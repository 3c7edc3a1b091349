//! The reports for scripts: `check`'s in the shape rules.md fixes (`{"results": [...]}`), and
//! `fix`'s (docs/fix.md).

use serde_json::{Value, json};

use super::Judged;
use crate::fix::{Change, Fixed};
use crate::model::Domain;
use crate::rules::Finding;

/// `check --format json`: every judged document.
pub fn results(all: &[Judged]) -> Value {
    let results: Vec<Value> = all.iter().map(result).collect();
    json!({ "results": results })
}

/// One finding, as every JSON report writes it.
pub fn finding(f: &Finding) -> Value {
    json!({
        "rule": f.rule.id.as_str(),
        "severity": f.severity().as_str(),
        "device": f.device,
        "message": f.message,
        "line": f.line,
    })
}

fn result(j: &Judged) -> Value {
    let findings: Vec<Value> = j.findings.iter().map(finding).collect();
    json!({
        "file": j.file,
        "domain": j.domain,
        "uuid": j.uuid,
        "pseries": j.pseries,
        "findings": findings,
    })
}

/// `fix --format json`: what the rewrite of `file` (parsed into `domain`) changes, and what it
/// leaves broken. `changed` says whether the output differs from the input.
pub fn fixed(file: &str, domain: &Domain, fixed: &Fixed, changed: bool) -> Value {
    let changes: Vec<Value> = fixed
        .plan
        .changes
        .iter()
        .map(|change| {
            let summary = change.describe(domain);
            match *change {
                Change::Move { device, from, to } => json!({
                    "kind": "move",
                    "device": domain.devices[device].name(),
                    "from": from.map(|a| a.to_string()),
                    "to": to.to_string(),
                    "summary": summary,
                }),
                Change::AddPhb { index, target, node } => json!({
                    "kind": "add-phb", "index": index, "target": target, "node": node,
                    "summary": summary,
                }),
                Change::Retarget { index, from, to, .. } => json!({
                    "kind": "retarget", "index": index, "from": from, "to": to,
                    "summary": summary,
                }),
                Change::SetPhbModel { index, ref from, .. } => json!({
                    "kind": "set-phb-model", "index": index, "from": from, "summary": summary,
                }),
                Change::RemoveController { index, .. } => json!({
                    "kind": "remove-controller", "index": index, "summary": summary,
                }),
            }
        })
        .collect();
    json!({
        "file": file,
        "domain": domain.name,
        "uuid": domain.uuid,
        "pseries": domain.is_pseries(),
        "fixed": fixed.is_clean(),
        "changed": changed,
        "changes": changes,
        "problems": fixed.problems(),
    })
}
