//! The `phbguard` command: argument parsing and exit codes over the library.

mod check;
mod cli;
mod output;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, Format};
use phbguard::rules::{self, RULES};

/// Exit codes, a stable interface (rules.md).
pub const EXIT_OK: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Explain { rule } => explain(&rule),
        Command::Rules { format } => list_rules(format),
    };
    ExitCode::from(code)
}

fn explain(id: &str) -> u8 {
    let Some(rule) = rules::find(id) else {
        eprintln!("phbguard: unknown rule '{id}'; 'phbguard rules' lists them");
        return EXIT_BAD_INPUT;
    };
    let text = format!(
        "{} ({}): {}\n\n{}\n",
        rule.id, rule.severity, rule.summary, rule.explanation
    );
    output::print(&text, EXIT_OK)
}

fn list_rules(format: Format) -> u8 {
    let text = match format {
        Format::Text => RULES
            .iter()
            .map(|r| format!("{:<26} {:<8} {}\n", r.id, r.severity, r.summary))
            .collect(),
        Format::Json => {
            let rules: Vec<_> = RULES
                .iter()
                .map(|r| serde_json::json!({"id": r.id, "severity": r.severity.as_str(), "summary": r.summary}))
                .collect();
            format!("{}\n", serde_json::json!({ "rules": rules }))
        }
    };
    output::print(&text, EXIT_OK)
}
