//! Reading the policy file (its meaning is `phbguard_core::config`): bounded, non-blocking,
//! never failing, every problem reported with its file and line.

use std::path::Path;

use phbguard_core::config::{Config, Issue, Problem, parse};

use crate::input::{InputError, Links, read_regular};

/// A policy file is a handful of lines; anything larger than this is not one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads and interprets the policy file; never fails. The file is opened non-blocking and must
/// be a regular file of at most [`MAX_CONFIG_BYTES`]: a FIFO or `/dev/zero` named as the policy
/// is a problem, not a hang.
pub fn load(path: &Path, explicit: bool) -> (Config, Vec<Problem>) {
    let problem = |issue: Issue| Problem {
        path: path.to_path_buf(),
        line: issue.line,
        detail: issue.detail,
    };
    let text = match read_regular(path, MAX_CONFIG_BYTES, Links::Follow) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let detail = format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to());
                return (Config::default(), vec![problem(Issue { line: None, detail })]);
            }
        },
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return (Config::default(), Vec::new());
        }
        Err(e) => {
            let detail = match e {
                InputError::Io(e) => format!("cannot read it: {e}"),
                InputError::LargerThan(_) => {
                    format!("larger than {} KiB, not a policy file", MAX_CONFIG_BYTES >> 10)
                }
                e => format!("cannot read it: {e}"),
            };
            return (Config::default(), vec![problem(Issue { line: None, detail })]);
        }
    };
    let (config, issues) = parse(&text);
    (config, issues.into_iter().map(problem).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
