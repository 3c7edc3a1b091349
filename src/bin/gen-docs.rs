//! `phbguard-gen-docs OUT_DIR`: writes the man pages (`OUT_DIR/man/*.1`, one per visible
//! subcommand) and the bash, zsh and fish completions (`OUT_DIR/completions/`) from the same clap
//! definitions the `phbguard` binary parses with, so they never drift from `--help`.
//!
//! Run at package build time (packaging/phbguard.spec, `--features gen-docs`); not installed. It
//! is a binary of its own rather than a `phbguard` subcommand or a build script so that neither
//! the binary libvirt execs on every guest start nor every ordinary `cargo build` pays for
//! clap_mangen and clap_complete.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

// The same file the phbguard binary compiles: it holds only the clap types, on purpose.
#[allow(dead_code)]
#[path = "../cli.rs"]
mod cli;

const BIN: &str = "phbguard";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: phbguard-gen-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phbguard-gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &std::path::Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    // phbguard.1 plus phbguard-SUBCOMMAND.1 for every subcommand that --help lists.
    clap_mangen::generate_to(cli::Cli::command(), &man)?;

    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cli::Cli::command(), BIN, &completions)?;
    }
    Ok(())
}
