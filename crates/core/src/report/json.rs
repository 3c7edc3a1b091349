//! The report for scripts, in the shape rules.md fixes: `{"results": [...]}`.

use serde_json::{Value, json};

use super::Judged;
use crate::rules::Finding;

pub fn results(all: &[Judged]) -> Value {
    let results: Vec<Value> = all.iter().map(result).collect();
    json!({ "results": results })
}

/// One finding, as every JSON report writes it.
pub fn finding(f: &Finding) -> Value {
    json!({
        "rule": f.rule.id,
        "severity": f.severity().as_str(),
        "device": f.device,
        "message": f.message,
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
