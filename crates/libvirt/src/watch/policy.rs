//! The watcher's policy file: read when it starts, and read again on SIGHUP
//! (`systemctl reload phbguard-watch`).
//!
//! At start a mistake in the file is logged and the key falls back to its default, as for the
//! hook; only a `sysfs_root` that is not a directory stops it (every judgement would be wrong).
//! A reload is stricter: the watcher already has a policy the admin chose, so a file with any
//! mistake changes nothing. Applying the good half of a file (say `action = "fix"` from a file
//! whose `exempt` list did not parse) would redefine guests the admin meant to exempt.

use std::path::PathBuf;

use phbguard_core::config::{self, Config, Problem};
use phbguard_core::log_line::{Level, Line};

use super::handler::Handler;

/// Where the policy is read from: `--config`, `$PHBGUARD_CONFIG` or the default path. The
/// same file is read again on every reload.
pub struct PolicyFile {
    path: PathBuf,
    /// Named by `--config` or the environment: then a missing file is a mistake.
    explicit: bool,
}

/// What one reading of the policy file gave.
pub struct Reading {
    /// The settings, with the default for every key that had a mistake.
    pub config: Config,
    /// Every mistake (unknown keys, bad values, bad TOML, unreadable file, `sysfs_root`).
    pub problems: Vec<Problem>,
    /// The mistake that `sysfs_root` cannot be used, if it is one of them.
    pub sysfs_root: Option<Problem>,
}

impl PolicyFile {
    pub fn choose(flag: Option<PathBuf>) -> PolicyFile {
        let (path, explicit) = config::choose_path(flag, std::env::var_os(config::ENV_VAR));
        PolicyFile { path, explicit }
    }

    pub fn read(&self) -> Reading {
        let policy = phbguard_io::policy_file::read_at(self.path.clone(), self.explicit);
        Reading {
            config: policy.config,
            problems: policy.problems,
            sysfs_root: policy.sysfs_root_problem,
        }
    }
}

/// What a reload does with a reading: all of it, or nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// A clean file: its settings replace the ones in force.
    Apply(Config),
    /// A file with mistakes (each described with the file and line): the policy in force stays.
    Keep(Vec<String>),
}

impl Reading {
    pub fn decide(self) -> Decision {
        let mistakes: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        if mistakes.is_empty() {
            Decision::Apply(self.config)
        } else {
            Decision::Keep(mistakes)
        }
    }
}

/// SIGHUP: reads the policy file again and applies it whole, or logs its mistakes and keeps
/// the policy in force. Tells systemd RELOADING=1 before and READY=1 after, once the watcher
/// has said READY=1 at all (a SIGHUP before the first connection must not announce the
/// start-up finished). `activity` is what the watcher is doing meanwhile (watching, or
/// reconnecting), the start of the status it reports after.
pub fn reload(handler: &mut Handler, file: &PolicyFile, shown_uri: &str, ready: bool, activity: &str) {
    if ready {
        // systemd 253's Type=notify-reload wants MONOTONIC_USEC in the same message as
        // RELOADING=1 (to tell this reload from an earlier one); older systemd ignores it.
        let mut states = vec![sd_notify::NotifyState::Reloading];
        if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        super::notify(&states);
    }
    let status = match file.read().decide() {
        Decision::Apply(config) => {
            let changed = changes(handler.config(), &config);
            handler.reconfigure(config);
            let line = Line::new("reloaded")
                .field("uri", shown_uri)
                .field("action", handler.action().as_str())
                .field("changed", changed.len())
                .says(format_args!(
                    "{} read again; {}",
                    file.path.display(),
                    if changed.is_empty() {
                        "nothing changed".to_owned()
                    } else {
                        changed.join("; ")
                    }
                ));
            handler.journal.log(Level::Notice, &line);
            format!(
                "{activity} (policy reloaded, action={})",
                handler.action().as_str()
            )
        }
        Decision::Keep(mistakes) => {
            for m in &mistakes {
                let line = Line::new("config-error").field("op", "reload").says(m);
                handler.journal.log(Level::Err, &line);
            }
            let line = Line::new("not-reloaded")
                .field("uri", shown_uri)
                .field("action", handler.action().as_str())
                .field("mistakes", mistakes.len())
                .says(format_args!(
                    "{} has {} mistake{}; the previous policy stays in \
                 force",
                    file.path.display(),
                    mistakes.len(),
                    if mistakes.len() == 1 { "" } else { "s" }
                ));
            handler.journal.log(Level::Err, &line);
            format!(
                "{activity} (reload refused: {} has mistakes, see journalctl -t phbguard; previous \
                 policy in force)",
                file.path.display()
            )
        }
    };
    if ready {
        super::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    }
}

/// The settings the watcher uses that differ, as `key: old -> new`.
fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    if old.watch_action != new.watch_action {
        changed.push(format!(
            "watch.action: {} -> {}",
            old.watch_action.as_str(),
            new.watch_action.as_str()
        ));
    }
    if old.fix_spare_phbs != new.fix_spare_phbs {
        changed.push(format!(
            "fix.spare_phbs: {} -> {}",
            old.fix_spare_phbs, new.fix_spare_phbs
        ));
    }
    if old.exempt != new.exempt {
        changed.push(format!("exempt: {:?} -> {:?}", old.exempt, new.exempt));
    }
    for (key, old, new) in [
        ("sysfs_root", &old.sysfs_root, &new.sysfs_root),
        ("syslog_socket", &old.syslog_socket, &new.syslog_socket),
    ] {
        if old != new {
            changed.push(format!("{key}: {} -> {}", old.display(), new.display()));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use phbguard_core::config::WatchAction;

    use super::*;

    fn file(dir: &Path, text: &str) -> PolicyFile {
        let path = dir.join("phbguard.toml");
        std::fs::write(&path, text).unwrap();
        PolicyFile { path, explicit: true }
    }

    fn decide(f: &PolicyFile) -> Decision {
        f.read().decide()
    }

    #[test]
    fn a_clean_file_is_applied_whole() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        std::fs::create_dir(&sys).unwrap();
        let f = file(
            dir.path(),
            &format!(
                "sysfs_root = \"{}\"\nexempt = [\"db01\"]\n[watch]\naction = \"fix\"\n",
                sys.display()
            ),
        );
        let Decision::Apply(c) = decide(&f) else {
            panic!("not applied: {:?}", decide(&f))
        };
        assert_eq!(c.watch_action, WatchAction::Fix);
        assert_eq!(c.exempt, ["db01"]);
        assert_eq!(c.sysfs_root, sys);
    }

    #[test]
    fn any_mistake_keeps_the_policy_in_force() {
        let dir = tempfile::tempdir().unwrap();
        // The good half of a file is not applied either: action = "fix" with a broken exempt.
        let f = file(dir.path(), "exempt = \"db01\"\n[watch]\naction = \"fix\"\n");
        let path = f.path.display().to_string();
        assert_eq!(
            decide(&f),
            Decision::Keep(vec![format!(
                "{path}:1: exempt = \"db01\": expected a list of domain names or UUIDs"
            )])
        );

        let f = file(dir.path(), "[watch]\naction = fix\n");
        let Decision::Keep(m) = decide(&f) else { panic!() };
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with(&format!("{path}:2: not valid TOML")), "{m:?}");

        let f = file(dir.path(), "sysfs_root = \"/nonexistent/phbguard-sys\"\n");
        let Decision::Keep(m) = decide(&f) else { panic!() };
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with(&format!("{path}:1: sysfs_root = \"/nonexistent/phbguard-sys\": ")),
            "{m:?}"
        );

        // A file named by --config that has gone.
        std::fs::remove_file(&f.path).unwrap();
        let Decision::Keep(m) = decide(&f) else { panic!() };
        assert!(m[0].starts_with(&format!("{path}: cannot read it: ")), "{m:?}");
    }

    #[test]
    fn the_default_file_missing_is_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = PolicyFile {
            path: dir.path().join("absent.toml"),
            explicit: false,
        };
        assert_eq!(decide(&f), Decision::Apply(Config::default()));
    }

    #[test]
    fn changes_name_each_setting_the_watcher_uses() {
        let old = Config::default();
        assert!(changes(&old, &old).is_empty());
        let new = Config {
            watch_action: WatchAction::Fix,
            fix_spare_phbs: 2,
            exempt: vec!["db01".into()],
            syslog_socket: "/run/log".into(),
            // The hook's setting: not the watcher's, not listed.
            mode: phbguard_core::config::Mode::Warn,
            ..Config::default()
        };
        assert_eq!(
            changes(&old, &new),
            [
                "watch.action: warn -> fix",
                "fix.spare_phbs: 0 -> 2",
                "exempt: [] -> [\"db01\"]",
                "syslog_socket: /dev/log -> /run/log"
            ]
        );
    }
}
