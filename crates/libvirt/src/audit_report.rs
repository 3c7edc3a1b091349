//! What `phbguard audit` prints: a table, JSON in the shape of `check --format json`, or
//! node_exporter's textfile-collector format (Prometheus text exposition format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use phbguard_core::escape::controls;
use phbguard_core::report::json::{finding, topology};
use phbguard_core::rules::Severity;
use serde_json::{Value, json};

use phbguard_core::config::Mode;
use phbguard_core::verdict::OptOut;

use crate::audit::{Audit, Judged};

/// The policy file's state, one row per judged definition, then the findings of every
/// definition that has some. Names and messages come from the definitions: their control
/// characters are escaped, as `check` does, so a tab or newline in a domain name cannot break
/// the table or forge a row.
pub fn text(audit: &Audit) -> String {
    let mut out = policy_lines(audit);
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
        "WOULD REFUSE".into(),
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
                match (j.opt_out, &j.bad_metadata_mode) {
                    (Some(how), _) => format!("yes ({})", how.as_str()),
                    (None, Some(m)) => format!("no (bad mode '{}')", controls(m)),
                    (None, None) => "no".into(),
                },
                match (j.start_refused, audit.why_not_refused(j)) {
                    (true, _) => "yes".into(),
                    (false, Some(why)) => format!("no ({why})"),
                    (false, None) => "no".into(),
                },
            ]);
        }
    }
    let mut widths = [0usize; 10];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
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
    let judged = || audit.guests.iter().flat_map(|g| &g.judged);
    let definitions = judged().count();
    let with_errors = judged().filter(|j| j.count(Severity::Error) > 0).count();
    let refused = judged().filter(|j| j.start_refused).count();
    let under_enforce = judged().filter(|j| j.refused_under_enforce).count();
    let opted_out = judged().filter(|j| j.opted_out()).count();
    let bad_metadata = judged().filter(|j| j.bad_metadata_mode.is_some()).count();
    let mut summary = format!(
        "{} guest{}, {definitions} definition{} judged: {with_errors} with errors, {refused} the hook \
         would refuse to start",
        audit.guests.len(),
        plural(audit.guests.len()),
        plural(definitions),
    );
    if under_enforce != refused {
        let _ = write!(summary, " ({under_enforce} under mode = \"enforce\")");
    }
    if opted_out > 0 {
        let _ = write!(summary, ", {opted_out} opted out");
    }
    if bad_metadata > 0 {
        let _ = write!(summary, ", {bad_metadata} with a bad policy mode");
    }
    if !audit.unreadable.is_empty() {
        let _ = write!(summary, ", {} unreadable", audit.unreadable.len());
    }
    let _ = writeln!(out, "\n{summary}");
    out
}

/// What the report says first: the policy file the hook reads and what the hook applies (the
/// fail-safe warn mode while the file has problems, each listed), and where host facts came
/// from when not from libvirt's node devices.
fn policy_lines(audit: &Audit) -> String {
    let policy = &audit.policy;
    let path = controls(&policy.path.to_string_lossy()).into_owned();
    let whose = if audit.remote {
        " (this machine's: the hook on the guests' host reads its own)"
    } else {
        ""
    };
    let mut out = if policy.in_doubt() {
        let n = policy.problems.len();
        let mut lines = format!(
            "policy {path}{whose}: {n} problem{}; {}:\n",
            plural(n),
            policy.applied()
        );
        for p in &policy.problems {
            let _ = writeln!(lines, "  {}", controls(&p.to_string()));
        }
        lines
    } else if policy.found {
        format!("policy {path}{whose}: valid; {}\n", policy.applied())
    } else {
        format!(
            "policy {path}{whose}: absent, the built-in defaults apply; {}\n",
            policy.applied()
        )
    };
    if let Some(source) = audit.host_source.describe() {
        let _ = writeln!(out, "{}", controls(&source));
    }
    out.push('\n');
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `{"policy_file": {...}, "results": [...], "unreadable": [...]}`, one result per judged
/// definition.
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
                "opt_out": j.opt_out.map(OptOut::as_str),
                "start_refused": j.start_refused,
                "refused_under_enforce": j.refused_under_enforce,
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
    let policy = &audit.policy;
    let problems: Vec<Value> = policy
        .problems
        .iter()
        .map(|p| json!({"line": p.line, "message": p.detail}))
        .collect();
    json!({
        "policy_file": {
            "path": policy.path.to_string_lossy(),
            "found": policy.found,
            "valid": !policy.in_doubt(),
            "problems": problems,
            "mode": policy.config.mode.as_str(),
            "applied_mode": policy.applied_mode().as_str(),
            "this_host": !audit.remote,
        },
        "host_facts": {
            "sysfs_root": audit.host_source.sysfs_root().map(|p| p.to_string_lossy()),
            "note": audit.host_source.describe(),
        },
        "results": results,
        "unreadable": unreadable,
    })
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
    let mut under_enforce = Vec::new();
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
            let enforce = u8::from(j.refused_under_enforce).to_string();
            under_enforce.push((labels(&base), enforce));
            if j.bad_metadata_mode.is_some() {
                bad_metadata.push((labels(&base), "1".to_string()));
            }
            if let Some(how) = j.opt_out {
                let l = labels(&[base[0], base[1], base[2], ("opt_out", how.as_str())]);
                opted_out.push((l, "1".to_string()));
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
        "1 for a guest definition opted out of refusal: opt_out is off or warn (its \
         <phbguard:policy mode>) or exempt (the policy file's exempt list).",
        &opted_out,
    );
    metric(
        "phbguard_domain_start_refused",
        "1 when the hook, under this host's policy file as it is, would refuse to start this guest definition.",
        &refused,
    );
    metric(
        "phbguard_domain_refused_under_enforce",
        "1 when the hook would refuse to start this guest definition under mode = \"enforce\" in a valid \
         policy file (what switching to enforce would refuse).",
        &under_enforce,
    );
    metric(
        "phbguard_domain_bad_metadata",
        "1 for a guest definition whose <phbguard:policy mode> is none of enforce, warn, off (the \
         hook ignores it and applies the policy file's mode).",
        &bad_metadata,
    );
    let policy = &audit.policy;
    metric(
        "phbguard_policy_ok",
        "1 when the hook's policy file is valid; 0 when it has problems: the hook then judges \
         every guest in warn mode (refuses none) until it is fixed ('phbguard check-config').",
        &[(String::new(), u8::from(!policy.in_doubt()).to_string())],
    );
    metric(
        "phbguard_policy_problems",
        "Problems in the hook's policy file ('phbguard check-config' lists them).",
        &[(String::new(), policy.problems.len().to_string())],
    );
    let applied = policy.applied_mode();
    let modes: Vec<(String, String)> = [Mode::Enforce, Mode::Warn, Mode::Off]
        .into_iter()
        .map(|m| {
            (
                labels(&[("mode", m.as_str())]),
                u8::from(m == applied).to_string(),
            )
        })
        .collect();
    metric(
        "phbguard_hook_mode",
        "1 for the mode the hook applies to guests that did not opt out: the policy file's, \
         or warn while the file has problems.",
        &modes,
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
