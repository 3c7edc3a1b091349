//! `phbguard-libvirt`: the commands that talk to libvirt (audit, groups, fix --domain, watch).
//! The admin types `phbguard audit`; `phbguard` execs this binary for those commands (as `git
//! foo` runs `git-foo`), so the `phbguard` binary libvirtd runs as a hook never loads libvirt.so.

mod fix_domain;

use std::path::Path;
use std::process::ExitCode;

use phbguard_cli::command::{AuditArgs, AuditFormat, Command, Format, GroupsArgs};
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, output};
use phbguard_core::config;
use phbguard_core::escape::controls;
use phbguard_io::sysfs::Sysfs;
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

/// Where host facts come from, checked: `--sysfs-root` (a tree that is not a directory is bad
/// input, as for `check` and `fix FILE`), else the policy file's `sysfs_root` ([`sysfs_root`]),
/// named as the policy's when it is not a directory.
pub(crate) fn host_sysfs<'a>(
    flag: Option<&'a Path>,
    policy: &'a config::Config,
) -> anyhow::Result<Option<&'a Path>> {
    if let Some(flag) = flag {
        phbguard_cli::sysfs_root(flag)?;
        return Ok(Some(flag));
    }
    let root = sysfs_root(None, policy);
    if let Some(root) = root {
        Sysfs::new(root)
            .check_root()
            .map_err(|e| anyhow::anyhow!("the policy file's sysfs_root: {e}"))?;
    }
    Ok(root)
}

/// The policy the hook on this host reads. A problem in it is reported here as a warning: the
/// hook would judge in warn mode until it is fixed, and so does audit's "refused" column.
pub(crate) fn hook_policy(flag: Option<std::path::PathBuf>) -> audit::Policy {
    let (path, explicit) = config::choose_path(flag, std::env::var_os(config::ENV_VAR));
    let (config, problems) = phbguard_io::policy_file::load(&path, explicit);
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

/// Where host PCI facts come from: `--sysfs-root`, else the sysfs tree the hook's policy file
/// names (`sysfs_root`, when not the default /sys: the hook and the watcher judge from it, and
/// so must a report of what they would decide), else `None`: the connection's node devices.
pub(crate) fn sysfs_root<'a>(flag: Option<&'a Path>, policy: &'a config::Config) -> Option<&'a Path> {
    flag.or_else(|| {
        (policy.sysfs_root != config::Config::default().sysfs_root).then_some(policy.sysfs_root.as_path())
    })
}

fn run_audit(args: &AuditArgs) -> anyhow::Result<u8> {
    let policy = hook_policy(args.config.clone());
    let sysfs = host_sysfs(args.sysfs_root.as_deref(), &policy.config)?;
    let conn = connect::open_read_only(args.connect.uri.as_deref())?;
    let host = Host::new(&conn, sysfs).map_err(anyhow::Error::msg)?;
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
