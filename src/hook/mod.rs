//! `phbguard hook`: what libvirtd runs from `/etc/libvirt/hooks/qemu.d/phbguard` as
//! `HOOK DOMAIN OP SUBOP EXTRA` with the domain XML on stdin. The thin edge around
//! `phbguard_core::verdict`: the arguments ([`args`]), the policy file, stdin, the incoming
//! marks ([`incoming`]), the judging and what the admin sees of it on stderr and in syslog
//! ([`judge`], [`refusal`]), and a panic ([`panic`]). It lives in the binary, not in the engine,
//! because it is all process effects (environment, stdin, a panic hook, files under /run); the
//! engine stays free of them so that audit and watch reuse the verdict and the policy as they
//! are.
//!
//! * Every call but `prepare begin`, `migrate begin` and `restore begin` exits 0 at once, before
//!   any option, the policy file, stdin or sysfs is looked at: whatever the `#!` line says, a
//!   `reconnect begin` after a libvirtd restart must never fail (libvirt would stop the guest).
//! * For the three judged calls, a mistake in the hook's setup (options, the policy file, a
//!   sysfs root that is not a directory) never refuses a guest: one error line on stderr and in
//!   syslog names it, and the guest is judged in warn mode.
//! * `migrate begin`/`restore begin` and the `prepare begin` that follows them for the same
//!   guest are judged by `incoming` ([`incoming`]); every other `prepare` by `mode`.
//! * Nothing is ever printed on stdout: libvirt reads it as a replacement XML at `migrate` and
//!   `restore`.
//!
//! **stdin is not drained** for ops that don't judge, nor after an oversized input. Seen with
//! libvirt 9.0.0 (tests/it/hook_libvirt.rs): with a 300 KiB domain XML and a hook that exits at
//! once, `virsh start`, `destroy`, `save` and `restore` all succeed; libvirtd's debug log only
//! says `child closed stdin early, ignoring EPIPE` (virCommandProcessIO).

mod args;
mod deadline;
mod incoming;
mod judge;
mod panic;
mod refusal;

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;

use phbguard_cli::{EXIT_BAD_INPUT, EXIT_OK, output};
use phbguard_core::config::Mode;
use phbguard_core::escape::controls;
use phbguard_core::verdict::Phase;
use phbguard_io::input::read_within;
use phbguard_io::sysfs::Sysfs;

use args::{ArgsError, Mistake, Options, options_place, parse_options, split_call};
pub use args::{Invocation, invocation};
use judge::JudgedCall;

/// Runs the hook: its exit code. Arguments that are no hook call at all (fewer than libvirt's
/// four) are a person's: `--help`, or a usage error.
pub fn run(invocation: Invocation) -> u8 {
    match call(&invocation.args, invocation.shebang, invocation.mistake) {
        Ok(code) => code,
        Err(ArgsError::Help) => {
            output::print(&phbguard_cli::long_help("hook"), EXIT_OK).unwrap_or_else(|err| {
                output::error(&err);
                EXIT_BAD_INPUT
            })
        }
        Err(ArgsError::Usage(msg)) => {
            eprintln!(
                "phbguard hook: {msg}\nUsage: phbguard hook [--config FILE] [SCRIPT] DOMAIN OP SUBOP EXTRA"
            );
            EXIT_BAD_INPUT
        }
    }
}

/// One call from libvirt: exit 0 at once unless it is judged; else the setup's mistakes
/// reported (and the call judged in warn mode), then the verdict.
fn call(args: &[OsString], shebang: bool, setup: Option<Mistake>) -> Result<u8, ArgsError> {
    let (words, call) = split_call(args)?;
    let Some(phase) = Phase::of(&call.op, &call.subop) else {
        return Ok(0);
    };
    let mut mistakes: Vec<Mistake> = setup.into_iter().collect();
    let options = parse_options(words, shebang).unwrap_or_else(|detail| {
        mistakes.push(Mistake {
            place: controls(&options_place(words, shebang)).into_owned(),
            detail,
        });
        Options::default()
    });
    let policy = phbguard_io::policy_file::read(options.config);
    mistakes.extend(policy.problems.into_iter().map(|p| Mistake {
        place: match p.line {
            Some(line) => format!("{}:{line}", p.path.display()),
            None => p.path.display().to_string(),
        },
        detail: p.detail,
    }));
    let mut judged = JudgedCall::new(call, phase, policy.config, policy.path);
    if judged.config.mode == Mode::Off {
        judged.report_mistakes(&mistakes);
        return Ok(0);
    }
    let host = Sysfs::new(&judged.config.sysfs_root);
    // The policy file's reading checked a sysfs_root it names; the kernel's /sys is the host's.
    if judged.config.sysfs_override().is_none()
        && let Err(e) = host.check_root()
    {
        mistakes.push(Mistake {
            place: format!("{} (sysfs_root)", judged.policy_path.display()),
            detail: e,
        });
    }
    judged.report_mistakes(&mistakes);
    judged.warn_only = !mistakes.is_empty();
    panic::on_panic(&judged);
    let deadline = deadline::stdin_deadline(std::env::var_os(deadline::STDIN_DEADLINE_VAR).as_deref());
    let input = read_within(io::stdin().as_fd(), deadline);
    Ok(judged.judge(input, &host))
}
