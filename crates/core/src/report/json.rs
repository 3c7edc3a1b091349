//! The report for scripts, in the shape rules.md fixes: `{"results": [...]}`.

use serde_json::{Value, json};

use super::Judged;

/// One file named on the command line: judged, or the reason it could not be. A file that
/// could not be read still gets an entry, so a script sees every file it asked about.
pub enum Entry<'a> {
    Judged(&'a Judged),
    Unreadable { file: &'a str, error: String },
}

pub fn results(all: &[Entry]) -> Value {
    let results: Vec<Value> = all
        .iter()
        .map(|entry| match entry {
            Entry::Judged(j) => result(j),
            Entry::Unreadable { file, error } => unreadable(file, error),
        })
        .collect();
    json!({ "results": results })
}

/// The entry of a file that could not be read or parsed: `{"file", "error"}`.
pub fn unreadable(file: &str, error: &str) -> Value {
    json!({ "file": file, "error": error })
}

fn result(j: &Judged) -> Value {
    let findings: Vec<Value> = j
        .findings
        .iter()
        .map(|f| {
            json!({
                "rule": f.rule.id,
                "severity": f.severity().as_str(),
                "device": f.device,
                "message": f.message,
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
