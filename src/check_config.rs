//! `phbguard check-config [FILE]`: the policy file's problems, one `FILE:LINE: PROBLEM` line
//! each, exit 2 if there is any. The RPM's %post runs it on the installed file, so a mistake
//! is seen at install time rather than in the first guest start's log.

use std::path::PathBuf;

use phbguard_cli::command::CheckConfigArgs;
use phbguard_cli::{EXIT_BAD_INPUT, EXIT_OK, output};
use phbguard_core::config::{self, Mode};
use phbguard_io::sysfs::Sysfs;

/// Exit 0 when the file is valid (or the default file is absent), 2 on any problem.
pub fn run(args: &CheckConfigArgs) -> anyhow::Result<u8> {
    let (path, explicit) = config::choose_path(args.file.clone(), std::env::var_os(config::ENV_VAR));
    let (config, problems) = phbguard_io::policy_file::load(&path, explicit);
    let mut lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    // A sysfs_root the admin set must be a directory. The default /sys is the kernel's, not a
    // setting: an image being built in a chroot without /sys gets no false alarm.
    let default_root = config.sysfs_root == config::Config::default().sysfs_root;
    if problems.is_empty()
        && config.mode != Mode::Off
        && !default_root
        && let Err(e) = Sysfs::new(&config.sysfs_root).check_root()
    {
        lines.push(format!("{}: {e}", path.display()));
    }
    if !lines.is_empty() {
        for line in &lines {
            eprintln!("phbguard: {}", phbguard_core::escape::controls(line));
        }
        eprintln!(
            "phbguard: {}: {} problem{}; until it is fixed the hook judges every guest in warn mode",
            path.display(),
            lines.len(),
            if lines.len() == 1 { "" } else { "s" }
        );
        return Ok(EXIT_BAD_INPUT);
    }
    let state = if path.exists() {
        "valid"
    } else {
        "absent: the built-in defaults apply"
    };
    let text = format!(
        "{}: {state} (mode = \"{}\")\n",
        PathBuf::from(&path).display(),
        config.mode.as_str()
    );
    output::print(&text, EXIT_OK)
}
