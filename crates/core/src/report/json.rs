//! The reports for scripts: `check`'s in the shape rules.md fixes (`{"results": [...]}`), and
//! `fix`'s (docs/fix.md).

use serde_json::{Map, Value, json};

use super::Judged;
use crate::fix::{Change, Fixed};
use crate::model::Domain;
use crate::rules::Finding;

/// One file named on the command line: judged, or the reason it could not be. A file that
/// could not be read still gets an entry, so a script sees every file it asked about.
pub enum Entry<'a> {
    /// A document that was read and judged.
    Judged(&'a Judged),
    /// A file that could not be read or parsed.
    Unreadable {
        /// The file as named on the command line.
        file: &'a str,
        /// Why, as its stderr line says it.
        error: String,
    },
}

/// `check --format json`: one entry per file, in command-line order.
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
    let mut report = fix_report(domain, fixed, changed);
    report.insert("file".into(), json!(file));
    Value::Object(report)
}

/// What every fix report says, whatever was fixed (a file, or a libvirt domain for `fix
/// --domain`, which adds its own fields): `domain`, `uuid`, `pseries`, `fixed`, `changed`,
/// `changes` (one object each, [`change`]) and `problems`.
pub fn fix_report(domain: &Domain, fixed: &Fixed, changed: bool) -> Map<String, Value> {
    let changes: Vec<Value> = fixed.plan.changes.iter().map(|c| change(c, domain)).collect();
    let report = json!({
        "domain": domain.name,
        "uuid": domain.uuid,
        "pseries": domain.is_pseries(),
        "fixed": fixed.is_clean(),
        "changed": changed,
        "changes": changes,
        "problems": fixed.problems().iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    match report {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// One change of a fix plan on `domain`: its `kind`, its fields and `summary`, the line the
/// text output prints.
pub fn change(change: &Change, domain: &Domain) -> Value {
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
}
