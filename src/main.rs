//! The `phbguard` command: argument parsing and exit codes over the library.

mod check;
mod check_config;
mod fix;
mod hook;
mod libvirt_half;

use std::process::ExitCode;

use phbguard_cli::command::{Cli, Command, Format};
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_OK, output};
use phbguard_core::rules::{self, RULES, RuleId};

fn main() -> ExitCode {
    // The hook is handled before clap: its last four arguments are libvirt's, whatever they
    // look like, and it is the hot path (no clap parser is built for it).
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    if let Some(invocation) = hook::invocation(&argv) {
        return ExitCode::from(hook::run(invocation));
    }
    match run(phbguard_cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            output::error(&err);
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Runs a command. An `Err` is bad input or usage: `main` prints it with its causes, exit 2.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let code = match cli.command {
        Command::Check(args) => check::run(&args)?,
        Command::Fix(args) if args.domain.is_some() => libvirt_half::exec(),
        Command::Fix(args) => fix::run(&args)?,
        Command::Explain {
            rule: Some(rule),
            format,
        } => explain(&rule, format)?,
        Command::Explain { rule: None, .. } => explain_which(),
        Command::Rules { format } => list_rules(format)?,
        // Not reached ('hook' is taken above); clap declares it for --help and the man page.
        Command::Hook(args) => hook::run(hook::Invocation {
            args: args.args,
            shebang: false,
            mistake: None,
        }),
        Command::CheckConfig(args) => check_config::run(&args)?,
        Command::Audit(_) | Command::Groups(_) | Command::Watch(_) => libvirt_half::exec(),
    };
    Ok(ExitCode::from(code))
}

fn explain(asked: &str, format: Format) -> anyhow::Result<u8> {
    let rule = rule_id(asked)
        .parse::<RuleId>()
        .map_err(|e| anyhow::anyhow!("{e}; 'phbguard rules' lists them"))?
        .rule();
    if format == Format::Json {
        let host: Vec<_> = rules::EXAMPLE_HOST
            .iter()
            .map(|(addr, group, node, driver)| {
                serde_json::json!({"address": addr, "iommu_group": group, "numa_node": node,
                                   "driver": driver})
            })
            .collect();
        let json = serde_json::json!({
            "id": rule.id.as_str(),
            "severity": rule.severity.as_str(),
            "summary": rule.summary,
            "needs_libvirt": rule.id.needs_libvirt(),
            "explanation": rule.explanation,
            "flagged": rule.bad,
            "compliant": rule.good,
            "example_host": host,
        });
        return output::print(&format!("{json}\n"), EXIT_OK);
    }
    let host: Vec<String> = rules::EXAMPLE_HOST
        .iter()
        .map(|(addr, group, node, driver)| {
            let driver = driver.map_or("no driver".to_string(), |d| format!("bound to {d}"));
            format!("{addr} in IOMMU group {group} on NUMA node {node}, {driver}")
        })
        .collect();
    let text = format!(
        "{} ({}): {}\n\n{}\n\nFlagged (inside <domain>, on a host with {}):\n\n{}\n\nCompliant:\n\n{}\n",
        rule.id,
        rule.severity,
        rule.summary,
        rule.explanation,
        host.join(", "),
        indent(rule.bad),
        indent(rule.good)
    );
    output::print(&text, EXIT_OK)
}

fn indent(xml: &str) -> String {
    xml.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// The rule id in what a user pasted: a bare id, or a whole line that names one as phbguard
/// prints it: `check`'s `FILE:LINE: error[ID]: ...`, a syslog line's `rule=ID`, audit's
/// `error ID: ...` and the hook's `ID: ...` or `ID (warning): ...`; else the one rule id the
/// line names anywhere (virsh's `error: Hook script execution failed: ... exit status 1: ID:
/// ...`, the hook's `refused to start ...; 'phbguard explain ID' ...`).
fn rule_id(asked: &str) -> &str {
    let found = rule_id_where_phbguard_puts_it(asked);
    if found.parse::<RuleId>().is_ok() {
        return found;
    }
    let mut named = RULES
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| names_word(asked, id));
    match (named.next(), named.next()) {
        (Some(id), None) => id,
        _ => found,
    }
}

/// Whether `text` has `word` with no letter, digit or `-` on either side.
fn names_word(text: &str, word: &str) -> bool {
    let part_of_id = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
    text.match_indices(word).any(|(at, _)| {
        !part_of_id(text[..at].chars().next_back()) && !part_of_id(text[at + word.len()..].chars().next())
    })
}

fn rule_id_where_phbguard_puts_it(asked: &str) -> &str {
    let asked = asked.trim();
    for marker in ["error[", "warning["] {
        if let Some((_, rest)) = asked.split_once(marker)
            && let Some((id, _)) = rest.split_once(']')
        {
            return id;
        }
    }
    if let Some((_, rest)) = asked.split_once("rule=") {
        return rest.split_whitespace().next().unwrap_or(rest);
    }
    let first = |s: &'_ str| -> usize { s.find([':', ' ']).unwrap_or(s.len()) };
    let line = ["error ", "warning "]
        .iter()
        .find_map(|p| asked.strip_prefix(p))
        .unwrap_or(asked);
    &line[..first(line)]
}

/// `phbguard explain` without a rule: say how to ask, and what can be asked about.
fn explain_which() -> u8 {
    eprint!(
        "phbguard explain: which rule? Give its id, or paste it from a finding:\n  \
         phbguard explain hostdev-on-default-phb\n  \
         phbguard explain 'error[hostdev-on-default-phb]'\n\nThe rules:\n{}",
        rules_table()
    );
    EXIT_BAD_INPUT
}

/// One line per rule, the summaries in one column whatever the severity.
fn rules_table() -> String {
    let width = RULES.iter().map(|r| r.id.as_str().len()).max().unwrap_or(0);
    RULES
        .iter()
        .map(|r| {
            // `as_str`: Display of these types ignores width, so `{:<8}` would not pad.
            format!(
                "{:<width$}  {:<7}  {}\n",
                r.id.as_str(),
                r.severity.as_str(),
                r.summary
            )
        })
        .collect()
}

fn list_rules(format: Format) -> anyhow::Result<u8> {
    let text = match format {
        Format::Text => rules_table(),
        Format::Json => {
            let rules: Vec<_> = RULES
                .iter()
                .map(|r| {
                    serde_json::json!({"id": r.id.as_str(), "severity": r.severity.as_str(), "summary": r.summary,
                                       "needs_libvirt": r.id.needs_libvirt()})
                })
                .collect();
            format!("{}\n", serde_json::json!({ "rules": rules }))
        }
    };
    output::print(&text, EXIT_OK)
}
