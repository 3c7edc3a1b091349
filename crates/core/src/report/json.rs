//! The report for scripts, in the shape rules.md fixes: `{"results": [...]}`.

use serde_json::{Value, json};

use super::Judged;

pub fn results(all: &[Judged]) -> Value {
    let results: Vec<Value> = all.iter().map(result).collect();
    json!({ "results": results })
}

fn result(j: &Judged) -> Value {
    let findings: Vec<Value> = j
        .findings
        .iter()
        .map(|f| {
            json!({
                "rule": f.rule.id.as_str(),
                "severity": f.severity().as_str(),
                "device": f.device,
                "message": f.message,
                "line": f.line,
            })
        })
        .collect();
    json!({
        "file": j.file,
        "domain": j.domain,
        "uuid": j.uuid,
        "pseries": j.pseries,
        "findings": findings,
    })
}
