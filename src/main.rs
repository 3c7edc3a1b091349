//! The `phbguard` command: argument parsing and exit codes over the library.

mod check;
mod cli;
mod fix;
mod libvirt_half;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, Format};
use phbguard_core::rules::{self, RULES};

/// Exit codes, a stable interface (rules.md).
pub const EXIT_OK: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    // The hook is handled before clap: its last four arguments are a domain name and libvirt's
    // op words, which clap must never read as a subcommand or an option (a domain may be named
    // 'check' or '--help'). It is also the hot path: no clap parser is built for it.
    let mut args = std::env::args_os();
    if let Some(first) = args.nth(1) {
        if first == "hook" {
            return ExitCode::from(hook(&args.collect::<Vec<_>>()));
        }
        // '#!/usr/bin/phbguard hook --config=FILE': Linux passes everything after the
        // interpreter as one argument, so its words are split here (no quoting).
        if let Some(options) = first.to_str().and_then(|f| f.strip_prefix("hook ")) {
            let mut all: Vec<_> = options.split_whitespace().map(Into::into).collect();
            all.extend(args);
            return ExitCode::from(hook(&all));
        }
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Fix(args) if args.domain.is_some() => libvirt_half::exec(),
        Command::Fix(args) => fix::run(&args),
        Command::Explain { rule } => explain(&rule),
        Command::Rules { format } => list_rules(format),
        // Not reached ('hook' is taken above); clap declares it for --help and the man page.
        Command::Hook(args) => hook(&args.args),
        Command::Audit(_) | Command::Groups(_) | Command::Watch(_) => libvirt_half::exec(),
    };
    ExitCode::from(code)
}

fn hook(args: &[std::ffi::OsString]) -> u8 {
    use phbguard_core::hook::ArgsError;
    match phbguard_core::hook::main(args) {
        Ok(code) => code,
        Err(ArgsError::Help) => {
            let mut cmd = Cli::command();
            cmd.build();
            let help = cmd
                .find_subcommand_mut("hook")
                .expect("declared in cli.rs")
                .render_long_help();
            output::print(&format!("{help}"), EXIT_OK)
        }
        Err(ArgsError::Usage(msg)) => {
            eprintln!(
                "phbguard hook: {msg}\nUsage: phbguard hook [--config FILE] [SCRIPT] DOMAIN OP SUBOP EXTRA"
            );
            EXIT_BAD_INPUT
        }
    }
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
                .map(|r| {
                    serde_json::json!({"id": r.id, "severity": r.severity.as_str(), "summary": r.summary,
                                       "needs_libvirt": r.needs_libvirt()})
                })
                .collect();
            format!("{}\n", serde_json::json!({ "rules": rules }))
        }
    };
    output::print(&text, EXIT_OK)
}
