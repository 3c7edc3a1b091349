//! `phbguard-libvirt`: the commands that talk to libvirt (audit, groups, fix --domain, watch).
//! The admin types `phbguard audit`; `phbguard` execs this binary for those commands (as `git
//! foo` runs `git-foo`), so the `phbguard` binary libvirtd runs as a hook never loads libvirt.so.

mod fix_domain;

use std::process::ExitCode;

use phbguard_cli::command::{AuditArgs, AuditFormat, Command, Format, GroupsArgs};
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, output};
use phbguard_core::config;
use phbguard_core::escape::controls;
use phbguard_libvirt::{audit, audit_report, connect, groups, host::Host};

fn main() -> ExitCode {
    let cli = phbguard_cli::parse();
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
            output::error(&err);
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// The policy the hook on this host reads. A problem in it is reported here as a warning: the
/// hook would judge in warn mode until it is fixed, and so does audit's "refused" column.
fn hook_policy(flag: Option<std::path::PathBuf>) -> audit::Policy {
    let (path, explicit) = config::choose_path(flag, std::env::var_os(config::ENV_VAR));
    let (config, problems) = config::load(&path, explicit);
    for p in &problems {
        eprintln!(
            "phbguard: warning: policy {}; the hook judges in warn mode until it is fixed",
            controls(&p.to_string())
        );
    }
    audit::Policy {
        config,
        in_doubt: !problems.is_empty(),
    }
}

fn run_audit(args: &AuditArgs) -> anyhow::Result<u8> {
    args.sysfs_root
        .as_deref()
        .map(phbguard_cli::sysfs_root)
        .transpose()?;
    let conn = connect::open_read_only(args.connect.uri.as_deref())?;
    let host = Host::new(&conn, args.sysfs_root.as_deref()).map_err(anyhow::Error::msg)?;
    let policy = hook_policy(args.config.clone());
    let result = audit::audit(&conn, &host, &policy).map_err(anyhow::Error::msg)?;
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

fn run_groups(args: &GroupsArgs) -> anyhow::Result<u8> {
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
