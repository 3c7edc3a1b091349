//! Reading the policy file (its meaning is `phbguard_core::config`): bounded, non-blocking,
//! never failing, every problem reported with its file and line, a `sysfs_root` that is not a
//! directory included.

use std::path::PathBuf;

use phbguard_core::config::{ENV_VAR, Policy, choose_path, parse_text};

use crate::input::{InputError, Links, read_regular};
use crate::sysfs::Sysfs;

/// A policy file is a handful of lines; anything larger than this is not one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The file `--config` names, else `$PHBGUARD_CONFIG`, else the default path.
pub fn read(flag: Option<PathBuf>) -> Policy {
    let (path, explicit) = choose_path(flag, std::env::var_os(ENV_VAR));
    read_at(path, explicit)
}

/// Reads `path` (`explicit`: named by the admin, so a missing file is a problem). It is opened
/// non-blocking and must be a regular file of at most [`MAX_CONFIG_BYTES`]: a FIFO or
/// `/dev/zero` named as the policy is a problem, not a hang.
pub fn read_at(path: PathBuf, explicit: bool) -> Policy {
    let mut policy = Policy::new(path, explicit);
    let text = match read_regular(&policy.path, MAX_CONFIG_BYTES, Links::Follow) {
        Ok(bytes) => {
            policy.found = true;
            match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    policy.problem(None, format!("not UTF-8 text (at byte {at})"));
                    return policy;
                }
            }
        }
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return policy;
        }
        Err(e) => {
            // Found but unusable (a directory, a FIFO, unreadable) unless it is not there.
            policy.found = !matches!(&e, InputError::Io(e) if e.kind() == std::io::ErrorKind::NotFound);
            let detail = match e {
                InputError::Io(e) => format!("cannot read it: {e}"),
                InputError::IsDirectory => "cannot read it: is a directory, not a policy file".into(),
                InputError::LargerThan(_) => {
                    format!("larger than {} KiB, not a policy file", MAX_CONFIG_BYTES >> 10)
                }
                e => format!("cannot read it: {e}"),
            };
            policy.problem(None, detail);
            return policy;
        }
    };
    let parsed = parse_text(&text);
    policy.config = parsed.config;
    for issue in parsed.issues {
        policy.problem(issue.line, issue.detail);
    }
    if let Some(root) = policy.config.sysfs_override()
        && let Some(why) = Sysfs::new(root).unusable()
    {
        let detail = format!("sysfs_root = {:?}: {why}", root.display().to_string());
        policy.problem(parsed.sysfs_root_line, detail);
        policy.sysfs_root_problem = policy.problems.last().cloned();
    }
    policy.problems.sort_by_key(|p| p.line);
    policy
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use phbguard_core::config::{Config, Mode, Problem};

    use super::*;

    fn load(path: &Path, explicit: bool) -> (Config, Vec<Problem>) {
        let policy = read_at(path.to_path_buf(), explicit);
        (policy.config, policy.problems)
    }

    #[test]
    fn missing_default_file_is_silent_missing_named_file_is_reported() {
        let missing = Path::new("/nonexistent/phbguard.toml");
        assert!(load(missing, false).1.is_empty());
        let (c, p) = load(missing, true);
        assert_eq!(c, Config::default());
        assert_eq!(p.len(), 1);
        assert!(
            p[0].to_string()
                .starts_with("/nonexistent/phbguard.toml: cannot read it: ")
        );
    }

    #[test]
    fn directory_fifo_device_and_oversized_files_are_problems_not_hangs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), true).1.len(), 1);
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
        let (c, p) = load(&big, true);
        assert_eq!(c, Config::default());
        assert!(p[0].detail.contains("larger than"), "{p:?}");
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let (_, p) = load(&fifo, false);
        assert_eq!(p[0].detail, "cannot read it: is a FIFO, not a regular file");
        let (_, p) = load(Path::new("/dev/zero"), false);
        assert_eq!(
            p[0].detail,
            "cannot read it: is a character device, not a regular file"
        );
    }

    #[test]
    fn a_sysfs_root_that_is_not_a_directory_is_a_problem_on_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "mode = 'enforce'\n\nsysfs_root = '/nonexistent/sys'\n").unwrap();
        let policy = read_at(file.clone(), true);
        assert!(policy.sysfs_root_problem.is_some() && policy.in_doubt());
        let lines: Vec<String> = policy.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [format!(
                "{}:3: sysfs_root = \"/nonexistent/sys\": No such file or directory (os error 2)",
                file.display()
            )]
        );
        assert_eq!(policy.config.mode, Mode::Enforce);
        assert_eq!(policy.applied_mode(), Mode::Warn);
        // Every other problem is listed too, in line order.
        std::fs::write(&file, "sysfs_root = '/etc/hostname'\nmdoe = 'warn'\n").unwrap();
        let policy = read_at(file.clone(), true);
        let details: Vec<&str> = policy.problems.iter().map(|p| p.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "sysfs_root = \"/etc/hostname\": not a directory",
                "unknown key 'mdoe' (did you mean 'mode'?)"
            ]
        );
        // The kernel's /sys is not a setting: not checked here (an image built in a chroot).
        std::fs::write(&file, "mode = 'off'\n").unwrap();
        let policy = read_at(file, true);
        assert!(!policy.in_doubt() && policy.found);
        assert_eq!(policy.applied_mode(), Mode::Off);
    }

    #[test]
    fn a_policy_file_is_called_a_policy_file() {
        let dir = tempfile::tempdir().unwrap();
        let policy = read_at(dir.path().to_path_buf(), true);
        assert_eq!(
            policy.problems[0].detail,
            "cannot read it: is a directory, not a policy file"
        );
        assert!(policy.found);
        let policy = read_at(dir.path().join("absent.toml"), false);
        assert!(!policy.found && policy.problems.is_empty());
        assert_eq!(policy.applied_mode(), Mode::Enforce);
    }
}
