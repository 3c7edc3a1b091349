//! `phbguard-libvirt`: the commands that talk to libvirt (audit, groups, fix --domain, watch).
//! The admin types `phbguard audit`; `phbguard` execs this binary for those commands (as `git
//! foo` runs `git-foo`), so the `phbguard` binary libvirtd runs as a hook never loads libvirt.so.

// The same clap definitions the `phbguard` binary parses with: one declaration of the CLI.
#[allow(dead_code)]
#[path = "../../../src/cli.rs"]
mod cli;
mod fix_domain;
mod output;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use phbguard_core::config;
use phbguard_core::escape::controls;
use phbguard_core::host::Sysfs;
use phbguard_libvirt::{audit, audit_report, connect, groups, host::Host};

use cli::{AuditFormat, Cli, Command, Format};

/// Exit codes, as `phbguard`'s (docs/rules.md).
const EXIT_OK: u8 = 0;
const EXIT_FINDINGS: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Audit(args) => run_audit(&args),
        Command::Groups(args) => run_groups(&args),
        Command::Fix(args) if args.domain.is_some() => fix_domain::run(&args),
        Command::Watch(args) => Ok(phbguard_libvirt::watch::run(&phbguard_libvirt::watch::Options {
            uri: args.connect.uri,
            config: args.config,
        })),
        _ => {
            eprintln!(
                "phbguard-libvirt: only audit, groups, watch and fix --domain run here; use 'phbguard'"
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // A domain name or a value from a definition may be in it.
            eprintln!("phbguard: {}", controls(&format!("{err:#}")));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// A `--sysfs-root` that is not a directory is bad input (exit 2), as for `check` and `fix
/// FILE`: judged from it, every host device would be "not on this host".
pub(crate) fn check_sysfs_root(root: Option<&Path>) -> anyhow::Result<()> {
    match root {
        Some(root) => Sysfs::new(root)
            .check_root()
            .map_err(|e| anyhow::anyhow!("--sysfs-root: {e}")),
        None => Ok(()),
    }
}

fn run_audit(args: &cli::AuditArgs) -> anyhow::Result<u8> {
    check_sysfs_root(args.sysfs_root.as_deref())?;
    let conn = connect::open_read_only(args.connect.uri.as_deref())?;
    // The hook's policy on this host: audit says what the hook would do with each guest.
    let policy = config::Policy::read(args.config.clone());
    let remote = conn.uri().is_ok_and(|uri| audit::is_remote(&uri));
    let source = audit::host_source(args.sysfs_root.as_deref(), &policy, remote);
    let host = Host::new(&conn, source.sysfs_root()).map_err(anyhow::Error::msg)?;
    let text_on_stdout = args.format == AuditFormat::Text && args.output.is_none();
    if !text_on_stdout {
        // The text report says it itself; a timer's JSON or metrics file is read by a machine,
        // its stderr by the journal.
        for p in &policy.problems {
            eprintln!("phbguard: warning: policy file {}", controls(&p.to_string()));
        }
        if policy.in_doubt() {
            eprintln!(
                "phbguard: warning: policy file {}: {}",
                controls(&policy.path.to_string_lossy()),
                policy.applied()
            );
        }
    }
    let result = audit::audit(&conn, &host, policy, source, remote).map_err(anyhow::Error::msg)?;
    for u in &result.unreadable {
        eprintln!(
            "phbguard: {}",
            controls(&format!("domain '{}': {}", u.name, u.reason))
        );
    }
    let text = match args.format {
        AuditFormat::Text => audit_report::text(&result),
        AuditFormat::Json => format!("{}\n", audit_report::json(&result)),
        AuditFormat::Prometheus => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            audit_report::prometheus(&result, now)
        }
    };
    output::write(args.output.as_deref(), &text)?;
    Ok(if !result.unreadable.is_empty() {
        EXIT_BAD_INPUT
    } else if result.fails() {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

fn run_groups(args: &cli::GroupsArgs) -> anyhow::Result<u8> {
    let conn = connect::open_read_only(args.connect.uri.as_deref())?;
    let pools = phbguard_libvirt::networks::hostdev_pools(&conn).map_err(anyhow::Error::msg)?;
    let groups = groups::groups(&conn, &pools).map_err(anyhow::Error::msg)?;
    for pool in &groups.unresolved {
        eprintln!("phbguard: warning: {}", controls(&pool.to_string()));
    }
    let text = match args.format {
        Format::Text => groups::text(&groups),
        Format::Json => format!("{}\n", groups::json(&groups)),
    };
    output::write(None, &text)?;
    Ok(EXIT_OK)
}
