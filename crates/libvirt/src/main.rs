//! `phbguard-libvirt`: the commands that talk to libvirt (audit, groups, fix --domain, watch).
//! The admin types `phbguard audit`; `phbguard` execs this binary for those commands (as `git
//! foo` runs `git-foo`), so the `phbguard` binary libvirtd runs as a hook never loads libvirt.so.

mod fix_domain;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use phbguard_cli::command::{AuditArgs, AuditFormat, Command, Format, GroupsArgs};
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, output};
use phbguard_core::config;
use phbguard_core::escape::controls;
use phbguard_libvirt::host::{self, Host, HostSource};
use phbguard_libvirt::{audit, audit_report, connect, groups};

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

/// Where `fix --domain` reads host facts ([`host::host_source`]), checked: `--sysfs-root` must
/// be a directory (bad input, as for `check` and `fix FILE`), and so must the policy file's
/// `sysfs_root` when it applies (the tree the hook judges the fixed guest on). Audit reports a
/// bad one instead: a report must still be written.
pub(crate) fn host_sysfs(
    flag: Option<&Path>,
    policy: &config::Policy,
    remote: bool,
) -> anyhow::Result<Option<PathBuf>> {
    if let Some(flag) = flag {
        phbguard_cli::sysfs_root(flag)?;
    }
    let source = host::host_source(flag, &policy.config, policy.sysfs_root_problem.is_some(), remote);
    if let HostSource::NotPolicySysfs { why, .. } = &source {
        if *why == host::Unread::NotADirectory
            && let Some(problem) = &policy.sysfs_root_problem
        {
            anyhow::bail!("the policy file's sysfs_root: {problem}")
        }
        if let Some(note) = source.describe() {
            eprintln!("phbguard: note: {}", controls(&note));
        }
    }
    Ok(source.sysfs_root().map(Path::to_path_buf))
}

/// The problems of the hook's policy file, on stderr, and what the hook applies meanwhile.
pub(crate) fn warn_policy_problems(policy: &config::Policy) {
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

fn run_audit(args: &AuditArgs) -> anyhow::Result<u8> {
    if let Some(flag) = args.sysfs_root.as_deref() {
        phbguard_cli::sysfs_root(flag)?;
    }
    let conn = connect::open_read_only(args.connect.uri.as_deref())?;
    // The hook's policy on this host: audit says what the hook would do with each guest.
    let policy = phbguard_io::policy_file::read(args.config.clone());
    let remote = host::connection_is_remote(&conn);
    let unusable = policy.sysfs_root_problem.is_some();
    let source = host::host_source(args.sysfs_root.as_deref(), &policy.config, unusable, remote);
    let host = Host::new(&conn, source.sysfs_root()).map_err(anyhow::Error::msg)?;
    let text_on_stdout = args.format == AuditFormat::Text && args.output.is_none();
    if !text_on_stdout {
        // The text report says it itself; a timer's JSON or metrics file is read by a machine,
        // its stderr by the journal.
        warn_policy_problems(&policy);
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

fn run_groups(args: &GroupsArgs) -> anyhow::Result<u8> {
    let sysfs = args
        .sysfs_root
        .as_deref()
        .map(phbguard_cli::sysfs_root)
        .transpose()?;
    let conn = connect::open_read_only(args.connect.uri.as_deref())?;
    let pools = phbguard_libvirt::networks::hostdev_pools(&conn).map_err(anyhow::Error::msg)?;
    let groups = groups::groups(&conn, &pools, sysfs.as_ref()).map_err(anyhow::Error::msg)?;
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
