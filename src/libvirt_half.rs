//! The commands that talk to libvirt live in a second binary, `phbguard-libvirt`, so this one
//! (which libvirtd runs as a hook on every guest start) never loads libvirt.so. `phbguard audit
//! ...` replaces itself with `phbguard-libvirt audit ...`, as `git foo` runs `git-foo`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use phbguard_cli::EXIT_BAD_INPUT;

const BINARY: &str = "phbguard-libvirt";
/// Where the RPM installs it: a helper, not a command on PATH.
const LIBEXEC: &str = "/usr/libexec/phbguard/phbguard-libvirt";

/// Runs `phbguard-libvirt` with this process's arguments; returns only if it cannot be run.
pub fn exec() -> u8 {
    let path = locate();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let err = Command::new(&path).args(args).exec();
    eprintln!(
        "phbguard: cannot run {} ({err}); audit, groups, watch and fix --domain need the \
         phbguard-libvirt binary (the RPM installs it as {LIBEXEC}; from source, \
         `cargo build --release --workspace` builds it beside phbguard)",
        path.display()
    );
    EXIT_BAD_INPUT
}

/// `$PHBGUARD_LIBVIRT`, else beside this binary (a cargo build), else the installed path.
fn locate() -> PathBuf {
    if let Some(path) = std::env::var_os("PHBGUARD_LIBVIRT") {
        return PathBuf::from(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(BINARY)));
    match beside {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from(LIBEXEC),
    }
}
