//! The command line of `phbguard`, declared once. Both binaries parse with [`command`] (the
//! `phbguard` binary, and `phbguard-libvirt`, which it execs for the commands that talk to
//! libvirt), `phbguard-gen-docs` writes the man pages and completions from it, and all of them
//! answer with the same [exit codes](EXIT_OK), argument checks and [`output`] helpers.
//!
//! The hook does not parse with clap (its arguments are libvirt's, whatever they look like):
//! it uses only the exit codes and, for `phbguard hook --help`, the declaration's help text.

pub mod command;
pub mod output;

use std::path::Path;

use clap::{CommandFactory, Parser};
use phbguard_io::sysfs::Sysfs;

pub use command::{Cli, Command};

/// Exit status: nothing wrong (warnings allowed). The exit codes are a stable interface
/// (docs/rules.md).
pub const EXIT_OK: u8 = 0;
/// Exit status: at least one error finding, or something that cannot be fixed.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: bad input or usage.
pub const EXIT_BAD_INPUT: u8 = 2;

/// The host facts under `--sysfs-root`, which must be a directory: judged from anything else,
/// every host device would be "not on this host". An `Err` is bad input (exit 2).
pub fn sysfs_root(root: &Path) -> anyhow::Result<Sysfs> {
    let host = Sysfs::new(root);
    host.check_root()
        .map_err(|e| anyhow::anyhow!("--sysfs-root: {e}"))?;
    Ok(host)
}

/// The command line of this process, parsed; on a usage error or `--help`, clap prints and
/// exits (2 for a usage error, as [`EXIT_BAD_INPUT`]).
pub fn parse() -> Cli {
    Cli::parse()
}

/// The declaration as clap holds it, for what is generated from it (man pages, completions).
pub fn definition() -> clap::Command {
    Cli::command()
}

/// A subcommand's `--help` text, as `phbguard SUBCOMMAND --help` prints it.
pub fn long_help(subcommand: &str) -> String {
    let mut cmd = definition();
    cmd.build();
    let sub = cmd
        .find_subcommand_mut(subcommand)
        .unwrap_or_else(|| panic!("'{subcommand}' is declared in command.rs"));
    sub.render_long_help().to_string()
}
