//! The `phbguard` command: argument parsing and exit codes over the library.

mod check;
mod check_config;
mod cli;
mod fix;
mod hook;
mod incoming;
mod libvirt_half;
mod output;

use std::ffi::OsString;
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
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    if let Some(first) = argv.first() {
        if first == "hook" {
            return ExitCode::from(hook(&argv[1..], false, None));
        }
        // '#!/usr/bin/phbguard hook --config=FILE': Linux passes everything after the
        // interpreter as one argument, so its words are split here (no quoting).
        let words = first.to_str().map(|f| f.split_whitespace().collect::<Vec<_>>());
        if let Some(["hook", options @ ..]) = words.as_deref() {
            let mut all: Vec<_> = options.iter().map(Into::into).collect();
            all.extend_from_slice(&argv[1..]);
            return ExitCode::from(hook(&all, true, None));
        }
        // A '#!' line with a mistyped subcommand ('hooks') run by libvirt: still a hook call,
        // never a usage error that would stop a guest at 'reconnect begin'.
        if libvirt_hook_call(&argv) && !is_subcommand(first) {
            let mistake = hook::Mistake {
                place: format!("{}:1", argv[argv.len() - 5].to_string_lossy()),
                detail: format!(
                    "'{}' on the '#!' line is not 'hook'",
                    phbguard_core::escape::controls(&first.to_string_lossy())
                ),
            };
            let script = argv.len() - 5;
            return ExitCode::from(hook(&argv[script..], true, Some(mistake)));
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
        Command::Hook(args) => hook(&args.args, false, None),
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Audit(_) | Command::Groups(_) | Command::Watch(_) => libvirt_half::exec(),
    };
    ExitCode::from(code)
}

fn hook(args: &[OsString], shebang: bool, mistake: Option<hook::Mistake>) -> u8 {
    match hook::main(args, shebang, mistake) {
        Ok(code) => code,
        Err(hook::ArgsError::Help) => {
            let mut cmd = Cli::command();
            cmd.build();
            let help = cmd
                .find_subcommand_mut("hook")
                .expect("declared in cli.rs")
                .render_long_help();
            output::print(&format!("{help}"), EXIT_OK)
        }
        Err(hook::ArgsError::Usage(msg)) => {
            eprintln!(
                "phbguard hook: {msg}\nUsage: phbguard hook [--config FILE] [SCRIPT] DOMAIN OP SUBOP EXTRA"
            );
            EXIT_BAD_INPUT
        }
    }
}

/// Whether argv ends as libvirt's qemu hook calls do: `SCRIPT DOMAIN OP SUBOP EXTRA`, the
/// script in a libvirt hooks directory and OP one of libvirt's qemu hook ops.
fn libvirt_hook_call(argv: &[OsString]) -> bool {
    const OPS: &[&str] = &[
        "prepare",
        "start",
        "started",
        "stopped",
        "release",
        "migrate",
        "restore",
        "reconnect",
        "attach",
    ];
    let n = argv.len();
    n >= 6
        && argv[n - 5].to_string_lossy().contains("/hooks/")
        && OPS.iter().any(|op| argv[n - 3] == *op)
        && ["begin", "end", "-"].iter().any(|s| argv[n - 2] == *s)
}

fn is_subcommand(word: &OsString) -> bool {
    Cli::command().get_subcommands().any(|c| word == c.get_name())
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
