//! `phbguard-libvirt`: the commands that talk to libvirt (audit, groups, fix --domain, watch).
//! The admin types `phbguard audit`; `phbguard` execs this binary for those commands (as `git
//! foo` runs `git-foo`), so the `phbguard` binary libvirtd runs as a hook never loads libvirt.so.

// The same clap definitions the `phbguard` binary parses with: one declaration of the CLI.
#[allow(dead_code)]
#[path = "../../../src/cli.rs"]
mod cli;
use phbguard_libvirt::connect;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Audit(args) => not_built("audit", &args.connect),
        Command::Groups(args) => not_built("groups", &args.connect),
        Command::Watch(args) => Ok(phbguard_libvirt::watch::run(&phbguard_libvirt::watch::Options {
            uri: args.connect.uri,
            config: args.config,
        })),
        _ => {
            eprintln!(
                "phbguard-libvirt: only audit, groups, watch and fix --domain run here; use 'phbguard'"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("phbguard: {err:#}");
            ExitCode::from(2)
        }
    }
}

// Scaffolding for the libvirt-half issues; replaced by the real commands.
fn not_built(what: &str, connect: &cli::ConnectArgs) -> anyhow::Result<ExitCode> {
    let conn = connect::open(connect.uri.as_deref())?;
    drop(conn);
    anyhow::bail!("{what} is not built yet")
}
