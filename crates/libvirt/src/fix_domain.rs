//! `phbguard fix --domain NAME`: fix a defined guest through libvirt, as virt-xml does: show
//! the diff, then redefine with `--yes` or after the admin confirms on a terminal; without a
//! terminal and without `--yes`, nothing is defined.

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::Context;
use phbguard_cli::command::{FixArgs, Format};
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, output};
use phbguard_core::report::json;
use phbguard_core::verdict::rewrite_options;
use phbguard_libvirt::connect;
use phbguard_libvirt::host::{self, Host};
use phbguard_libvirt::redefine::{self, Error, Outcome, Proposal};
use serde_json::json;
use virt::connect::Connect;
use virt::domain::Domain;

/// One line on stderr. The guest's name, device names and values come from libvirt's XML: their
/// control characters are escaped, as `fix FILE` does.
fn say(line: &str) {
    eprintln!("phbguard: {}", phbguard_core::escape::controls(line));
}

pub fn run(args: &FixArgs) -> anyhow::Result<u8> {
    let name = args.domain.as_deref().expect("dispatched on --domain");
    // The host facts the hook will judge the fixed guest on at its next start.
    let policy = phbguard_io::policy_file::read(None);
    crate::warn_policy_problems(&policy);
    let conn = connect::open(args.uri.as_deref())?;
    let remote = host::connection_is_remote(&conn);
    let sysfs = crate::host_sysfs(args.sysfs_root.as_deref(), &policy, remote)?;
    let dom = lookup(&conn, name)?;
    let host = Host::new(&conn, sysfs.as_deref()).map_err(anyhow::Error::msg)?;
    // What every rewrite under this host's policy keeps (its spare PHBs), unless the command
    // line says otherwise.
    let mut options = rewrite_options(&policy.config);
    options.assign_unaddressed = args.assign_addresses;
    options.raise_hard_limit = args.raise_hard_limit;
    if let Some(n) = args.spare_phbs {
        options.spare_phbs = n;
    }
    let proposal = match redefine::propose(&dom, &host, options) {
        Ok(p) => p,
        Err(e @ (Error::Transient(_) | Error::BadXml(..))) => {
            say(&e.to_string());
            return Ok(EXIT_BAD_INPUT);
        }
        Err(e) => return Err(e.into()),
    };
    if args.format == Format::Text && !args.quiet {
        for change in &proposal.changes() {
            say(&format!("{name}: {change}"));
        }
    }
    let problems = proposal.fixed.problems();
    for problem in &problems {
        say(&format!("{name}: cannot fix: {problem}"));
    }
    for note in proposal.fixed.host_notes() {
        say(&format!("{name}: note: {note}"));
    }
    if args.format == Format::Text
        && let Some(short) = proposal.fixed.plan.spares.shortfall()
    {
        say(&format!("{name}: warning: {short}"));
    }

    let (code, redefined) = decide(&conn, &dom, &proposal, args)?;
    let text = match args.format {
        Format::Json => {
            // `fix FILE --format json`'s report (docs/fix.md), the guest as libvirt names it,
            // plus what only a libvirt domain has.
            let mut report = json::fix_report(
                &proposal.definition,
                &proposal.fixed,
                proposal.changes_definition(),
            );
            report.insert("domain".into(), json!(proposal.name));
            report.insert("diff".into(), json!(proposal.diff()));
            report.insert("digest".into(), json!(proposal.digest()));
            report.insert("redefined".into(), json!(redefined));
            format!("{}\n", serde_json::Value::Object(report))
        }
        Format::Text => proposal.diff(),
    };
    // The diff is shown before the question in `decide`; JSON comes after the outcome.
    if args.format == Format::Json {
        output::write(None, &text)?;
    }
    Ok(code)
}

/// Shows the diff (text), asks if needed, redefines; returns the exit code and whether the
/// guest was redefined.
fn decide(conn: &Connect, dom: &Domain, proposal: &Proposal, args: &FixArgs) -> anyhow::Result<(u8, bool)> {
    let name = &proposal.name;
    if !proposal.is_clean() {
        say(&format!(
            "{name}: not redefined: the fix would still break a rule"
        ));
        return Ok((EXIT_FINDINGS, false));
    }
    if !proposal.changes_definition() {
        if args.format == Format::Text {
            say(&format!("{name}: already keeps the rules; nothing to change"));
        }
        return Ok((EXIT_OK, false));
    }
    if args.format == Format::Text {
        output::write(None, &proposal.diff())?;
    }
    if let Some(confirmed) = &args.if_digest
        && *confirmed != proposal.digest()
    {
        say(&format!(
            "{name}: not redefined: this is not the change with digest {confirmed} (the \
             definition or the host changed since it was shown); review this diff (digest {})",
            proposal.digest()
        ));
        return Ok((EXIT_FINDINGS, false));
    }
    if !args.yes && !confirm(name)? {
        say(&format!(
            "{name}: not redefined ({}); run with --yes to redefine",
            if io::stdin().is_terminal() {
                "not confirmed"
            } else {
                "no terminal to confirm on"
            }
        ));
        return Ok((EXIT_FINDINGS, false));
    }
    match redefine::redefine(conn, dom, proposal) {
        Ok(Outcome::Redefined { .. }) => {
            let running = dom.is_active().unwrap_or(false);
            say(&format!(
                "{name}: redefined{}",
                if running {
                    "; the running guest keeps its current layout until it is shut down and started again"
                } else {
                    ""
                }
            ));
            Ok((EXIT_OK, true))
        }
        Ok(Outcome::Unchanged) => Ok((EXIT_OK, false)),
        Err(e @ Error::ChangedMeanwhile(_)) => {
            say(&e.to_string());
            Ok((EXIT_FINDINGS, false))
        }
        Err(e) => Err(e.into()),
    }
}

/// Asks on the terminal; `false` without one.
fn confirm(name: &str) -> anyhow::Result<bool> {
    if !io::stdin().is_terminal() {
        return Ok(false);
    }
    let mut stderr = io::stderr().lock();
    let name = phbguard_core::escape::controls(name);
    write!(stderr, "Redefine domain '{name}' with these changes? [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// A domain by name, else by UUID, as virsh takes either.
fn lookup(conn: &Connect, name: &str) -> anyhow::Result<Domain> {
    match conn.lookup_domain_by_name(name) {
        Ok(d) => Ok(d),
        Err(by_name) => conn
            .lookup_domain_by_uuid_string(name)
            .map_err(|_| anyhow::anyhow!("no domain '{name}': {by_name}")),
    }
}
