//! What `phbguard audit` prints: a table, JSON in the shape of `check --format json`, or
//! node_exporter's textfile-collector format (Prometheus text exposition format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use phbguard_core::escape::controls;
use phbguard_core::report::json::{finding, topology};
use phbguard_core::rules::Severity;
use serde_json::{Value, json};

use crate::audit::{Audit, Judged};

/// One row per judged definition, then the findings of the failing ones. Names and messages
/// come from the definitions: their control characters are escaped, as `check` does, so a tab
/// or newline in a domain name cannot break the table or forge a row.
pub fn text(audit: &Audit) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "DEFINITION".into(),
        "PSERIES".into(),
        "ERRORS".into(),
        "WARNINGS".into(),
        "WORST RULE".into(),
        "SPARE PHBS".into(),
        "OPTED OUT".into(),
    ]];
    for g in &audit.guests {
        for j in &g.judged {
            rows.push([
                controls(&g.name).into_owned(),
                g.state.into(),
                j.which.as_str().into(),
                if j.definition.is_pseries() { "yes" } else { "no" }.into(),
                j.count(Severity::Error).to_string(),
                j.count(Severity::Warning).to_string(),
                j.worst_rule().unwrap_or("-").into(),
                j.spare_phbs.map_or("-".into(), |n| n.to_string()),
                match (j.opted_out(), &j.bad_metadata_mode) {
                    (true, _) => "yes (off)".into(),
                    (false, Some(m)) => format!("no (bad mode '{}')", controls(m)),
                    (false, None) => "no".into(),
                },
            ]);
        }
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let mut details = String::new();
    for g in &audit.guests {
        for j in g
            .judged
            .iter()
            .filter(|j| !j.findings.is_empty() || j.bad_metadata_mode.is_some())
        {
            let _ = writeln!(details, "\n{} ({}):", controls(&g.name), j.which.as_str());
            if let Some(problem) = j.metadata_error() {
                let _ = writeln!(details, "  warning metadata-error: {}", controls(&problem));
            }
            for f in &j.findings {
                let _ = writeln!(
                    details,
                    "  {} {}: {}",
                    f.severity(),
                    f.rule.id,
                    controls(&f.message)
                );
            }
        }
    }
    out.push_str(&details);
    let definitions: usize = audit.guests.iter().map(|g| g.judged.len()).sum();
    let failing = audit
        .guests
        .iter()
        .flat_map(|g| &g.judged)
        .filter(|j| j.fails())
        .count();
    let bad_metadata = audit
        .guests
        .iter()
        .flat_map(|g| &g.judged)
        .filter(|j| j.bad_metadata_mode.is_some())
        .count();
    let _ = writeln!(
        out,
        "\n{} guest{}, {definitions} definition{} judged: {failing} with errors{}{}",
        audit.guests.len(),
        plural(audit.guests.len()),
        plural(definitions),
        if bad_metadata == 0 {
            String::new()
        } else {
            format!(", {bad_metadata} with a bad policy mode")
        },
        if audit.unreadable.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable", audit.unreadable.len())
        }
    );
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `{"results": [...]}`, one result per judged definition.
pub fn json(audit: &Audit) -> Value {
    let mut results = Vec::new();
    for g in &audit.guests {
        for j in &g.judged {
            results.push(json!({
                "domain": g.name,
                "uuid": g.uuid,
                "pseries": j.definition.is_pseries(),
                "state": g.state,
                "definition": j.which.as_str(),
                "policy": j.definition.policy_mode,
                "mode": j.mode.as_str(),
                "opted_out": j.opted_out(),
                "start_refused": j.start_refused,
                "metadata_error": j.metadata_error(),
                "spare_phbs": j.spare_phbs,
                "findings": j.findings.iter().map(finding).collect::<Vec<_>>(),
                "topology": topology(&j.definition, &j.facts, &j.findings),
            }));
        }
    }
    let unreadable: Vec<Value> = audit
        .unreadable
        .iter()
        .map(|u| json!({"domain": u.name, "error": u.reason}))
        .collect();
    json!({ "results": results, "unreadable": unreadable })
}

/// The textfile-collector file. `now` is the Unix time of the run.
pub fn prometheus(audit: &Audit, now: f64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };

    let mut findings = Vec::new();
    let mut by_rule = Vec::new();
    let mut opted_out = Vec::new();
    let mut refused = Vec::new();
    let mut bad_metadata = Vec::new();
    let mut spares = Vec::new();
    for g in &audit.guests {
        for j in &g.judged {
            let base = [
                ("domain", g.name.as_str()),
                ("uuid", g.uuid.as_str()),
                ("definition", j.which.as_str()),
            ];
            // Whether the rules apply or not (opted out), a running guest's spares say what
            // it can take by hot-plug.
            if let Some(n) = j.spare_phbs {
                spares.push((labels(&base), n.to_string()));
            }
            refused.push((labels(&base), u8::from(j.start_refused).to_string()));
            if j.bad_metadata_mode.is_some() {
                bad_metadata.push((labels(&base), "1".to_string()));
            }
            if j.opted_out() {
                opted_out.push((labels(&base), "1".to_string()));
                continue;
            }
            for severity in [Severity::Error, Severity::Warning] {
                let l = labels(&[base[0], base[1], base[2], ("severity", severity.as_str())]);
                findings.push((l, j.count(severity).to_string()));
            }
            for ((rule, severity), n) in per_rule(j) {
                let l = labels(&[base[0], base[1], base[2], ("rule", rule), ("severity", severity)]);
                by_rule.push((l, n.to_string()));
            }
        }
    }
    metric(
        "phbguard_domain_findings",
        "Findings per guest definition and severity at the last audit (opted-out guests left out).",
        &findings,
    );
    metric(
        "phbguard_domain_violations",
        "Findings per guest definition, rule and severity at the last audit (only rules that fire).",
        &by_rule,
    );
    metric(
        "phbguard_domain_opted_out",
        "1 for a guest definition with <phbguard:policy mode='off'/>, which is not judged.",
        &opted_out,
    );
    metric(
        "phbguard_domain_start_refused",
        "1 when the hook, under this host's policy file, would refuse to start this guest definition.",
        &refused,
    );
    metric(
        "phbguard_domain_bad_metadata",
        "1 for a guest definition whose <phbguard:policy mode> is none of enforce, warn, off (the \
         hook ignores it and applies the policy file's mode).",
        &bad_metadata,
    );
    metric(
        "phbguard_domain_spare_phbs",
        "Spare PHBs (other than the default one, nothing on them) per pSeries guest definition: on \
         the live one, how many hostdevs of new IOMMU groups the running guest can take by hot-plug.",
        &spares,
    );
    metric(
        "phbguard_audit_domains",
        "Guests the last audit saw.",
        &[(String::new(), audit.guests.len().to_string())],
    );
    metric(
        "phbguard_audit_unreadable_domains",
        "Guests whose definition the last audit could not read or parse.",
        &[(String::new(), audit.unreadable.len().to_string())],
    );
    metric(
        "phbguard_audit_last_run_timestamp_seconds",
        "When the last audit ran (Unix time).",
        &[(String::new(), format!("{now:.3}"))],
    );
    out
}

fn per_rule(j: &Judged) -> BTreeMap<(&'static str, &'static str), usize> {
    let mut counts = BTreeMap::new();
    for f in &j.findings {
        *counts
            .entry((f.rule.id.as_str(), f.severity().as_str()))
            .or_insert(0) += 1;
    }
    counts
}

/// `{a="x",b="y"}`, values escaped as the exposition format says (`\\`, `\"`, `\n`).
fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("domain", "a\"b\\c\nd"), ("x", "y")]),
            r#"{domain="a\"b\\c\nd",x="y"}"#
        );
    }
}
