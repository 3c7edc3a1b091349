//! The hook's policy file, `/etc/phbguard/phbguard.toml`. Every key is optional; a missing file
//! means the defaults. A file that cannot be read or parsed, an unknown key or a bad value is a
//! [`Problem`] with its line, never a reason to stop: the key (or the whole file) falls back to
//! its default, and the hook, which cannot know what the admin meant, judges in warn mode
//! (docs/hook.md, "When the hook cannot trust its setup"). `phbguard check-config` reports the
//! same problems and exits 2.
//!
//! Kept here, in the engine, and public: the hook, `check-config`, and the libvirt half (audit,
//! watch) all read the same policy. This is its meaning; reading the file is phbguard-io's
//! `policy_file`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the policy file is read from when neither `--config` nor `PHBGUARD_CONFIG` says.
pub const DEFAULT_PATH: &str = "/etc/phbguard/phbguard.toml";
/// The environment variable that names another policy file (tests use it).
pub const ENV_VAR: &str = "PHBGUARD_CONFIG";
/// Where the hook keeps its marks for incoming guests (root-only, under /run so a reboot
/// forgets them).
pub const DEFAULT_STATE_DIR: &str = "/run/phbguard/incoming";

/// What the hook does with error findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Error findings reject the guest.
    Enforce,
    /// Findings are logged; the guest starts.
    Warn,
    /// phbguard does nothing.
    Off,
}

/// Gives a setting's values their names, written once: `as_str` (how the policy file, the
/// `<metadata>` element and the log lines spell a value), `parse` (the value a name is) and
/// `expected` (what a bad value is told to be).
macro_rules! spelled {
    ($setting:ident { $($value:ident => $name:literal),+ $(,)? }) => {
        impl $setting {
            /// The value as the policy file spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($setting::$value => $name,)+
                }
            }


            /// The value the policy file (or a guest's `<metadata>`) names, if it is one.
            pub fn parse(name: &str) -> Option<$setting> {
                match name {
                    $($name => Some($setting::$value),)+
                    _ => None,
                }
            }


            /// The names, as a bad value's message lists them: `"a", "b" or "c"`.
            pub fn expected() -> String {
                let names = [$(concat!("\"", $name, "\"")),+];
                match names.split_last() {
                    Some((last, [])) => (*last).to_owned(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => String::new(),
                }
            }
        }
    };
}

spelled!(Mode {
    Enforce => "enforce",
    Warn => "warn",
    Off => "off",
});

/// What `migrate begin` (incoming migration) and `restore begin` do with error findings. The
/// hook can't fix a guest there: libvirt refuses any rewritten XML that is not ABI-identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Exit 1: the migration or restore is cancelled.
    Refuse,
    /// Log the findings and let the guest in.
    Warn,
}

spelled!(Incoming {
    Refuse => "refuse",
    Warn => "warn",
});

/// What the hook does when it cannot judge (unreadable or malformed XML, oversized input, a bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInternalError {
    /// Let the guest start, logged at error level on stderr and syslog.
    Allow,
    /// Exit 1: the guest does not start.
    Deny,
}

spelled!(OnInternalError {
    Allow => "allow",
    Deny => "deny",
});

/// What `phbguard watch` does with a definition that breaks an error rule (`[watch] action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchAction {
    /// Log the findings; leave the definition as it is.
    Warn,
    /// Redefine the guest with `phbguard fix`'s output, when that output keeps every rule.
    Fix,
}

spelled!(WatchAction {
    Warn => "warn",
    Fix => "fix",
});

/// The policy file's settings, defaults for what it does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where host facts (IOMMU groups, NUMA nodes) are read.
    pub sysfs_root: PathBuf,
    /// Whether findings refuse a start, only warn, or are not looked for.
    pub mode: Mode,
    /// What incoming migrations and restores get: refused or warned.
    pub incoming: Incoming,
    /// Whether `iommu-group-unknown` (a warning) rejects like an error.
    pub reject_iommu_group_unknown: bool,
    /// Whether a guest the hook cannot judge is let through or refused.
    pub on_internal_error: OnInternalError,
    /// Domains never rejected, by name or UUID (UUIDs compared case-insensitively).
    pub exempt: Vec<String>,
    /// The syslog datagram socket.
    pub syslog_socket: PathBuf,
    /// Where the hook marks a guest coming in by migration or restore, so that the
    /// `prepare begin` that follows is judged by `incoming` (tests point it elsewhere).
    pub state_dir: PathBuf,
    /// `[watch] action`: what `phbguard watch` does with a non-compliant definition.
    pub watch_action: WatchAction,
    /// `[fix] spare_phbs`: the spare PHBs (empty, for hot-plugs) every definition phbguard
    /// rewrites keeps (`fix --domain`, `watch` with `action = "fix"`).
    pub fix_spare_phbs: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sysfs_root: PathBuf::from("/sys"),
            mode: Mode::Enforce,
            incoming: Incoming::Warn,
            reject_iommu_group_unknown: false,
            on_internal_error: OnInternalError::Allow,
            exempt: Vec::new(),
            syslog_socket: PathBuf::from("/dev/log"),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            // Changing a guest's definition is the admin's call: only when asked for.
            watch_action: WatchAction::Warn,
            fix_spare_phbs: 0,
        }
    }
}

impl Config {
    /// Whether a domain is exempt, by its name or its UUID.
    pub fn is_exempt(&self, name: &str, uuid: Option<&str>) -> bool {
        self.exempt
            .iter()
            .any(|e| e == name || uuid.is_some_and(|u| u.eq_ignore_ascii_case(e)))
    }
}

/// Something wrong in a policy file's text: its line (1-based, when known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The line of the key or the syntax error, when known.
    pub line: Option<usize>,
    /// What is wrong: the key, the value and what was expected.
    pub detail: String,
}

/// Something wrong with the policy file: the file, the line and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The policy file.
    pub path: PathBuf,
    /// The line of the key or the syntax error, when known (1-based).
    pub line: Option<usize>,
    /// What is wrong: the key, the value and what was expected.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.detail),
            None => write!(f, "{}: {}", self.path.display(), self.detail),
        }
    }
}

/// Which file to read: `--config`, else `PHBGUARD_CONFIG`, else [`DEFAULT_PATH`]. The bool says
/// whether the file was named explicitly (then a missing file is a problem, not the default).
pub fn choose_path(flag: Option<PathBuf>, env: Option<std::ffi::OsString>) -> (PathBuf, bool) {
    match (flag, env) {
        (Some(p), _) => (p, true),
        (None, Some(e)) if !e.is_empty() => (PathBuf::from(e), true),
        _ => (PathBuf::from(DEFAULT_PATH), false),
    }
}

/// Interprets the text of a policy file: the configuration, and one issue per problem.
pub fn parse(text: &str) -> (Config, Vec<Issue>) {
    use toml::de::{DeTable, DeValue};
    let mut config = Config::default();
    let mut issues = Vec::new();
    let line_of = |offset: usize| Some(text[..offset.min(text.len())].matches('\n').count() + 1);
    let table = match DeTable::parse(text) {
        Ok(t) => t.into_inner(),
        Err(e) => {
            let message = e.message().replace('\n', " ");
            issues.push(Issue {
                line: e.span().and_then(|s| line_of(s.start)),
                detail: format!("not valid TOML ({}); the whole file is ignored", message.trim()),
            });
            return (config, issues);
        }
    };
    for (key, spanned) in &table {
        let value: &DeValue = spanned.get_ref();
        let line = line_of(key.span().start);
        let key = key.get_ref().as_ref();
        let mut bad = |expected: &str| {
            issues.push(Issue {
                line,
                detail: format!("{key} = {}: expected {expected}", short(value)),
            });
        };
        let path = |v: &DeValue| {
            v.as_str()
                .filter(|s| Path::new(s).is_absolute())
                .map(PathBuf::from)
        };
        match key {
            "sysfs_root" => match path(value) {
                Some(p) => config.sysfs_root = p,
                None => bad("an absolute path"),
            },
            "syslog_socket" => match path(value) {
                Some(p) => config.syslog_socket = p,
                None => bad("an absolute path"),
            },
            "state_dir" => match path(value) {
                Some(p) => config.state_dir = p,
                None => bad("an absolute path"),
            },
            "mode" => match value.as_str().and_then(Mode::parse) {
                Some(m) => config.mode = m,
                None => bad(&Mode::expected()),
            },
            "incoming" => match value.as_str().and_then(Incoming::parse) {
                Some(i) => config.incoming = i,
                None => bad(&Incoming::expected()),
            },
            "reject_iommu_group_unknown" => match value.as_bool() {
                Some(b) => config.reject_iommu_group_unknown = b,
                None => bad("true or false"),
            },
            "on_internal_error" => match value.as_str().and_then(OnInternalError::parse) {
                Some(o) => config.on_internal_error = o,
                None => bad(&OnInternalError::expected()),
            },
            "exempt" => {
                let names: Option<Vec<String>> = value.as_array().and_then(|a| {
                    a.iter()
                        .map(|v| v.get_ref().as_str().map(str::to_owned))
                        .collect()
                });
                match names {
                    Some(names) => config.exempt = names,
                    None => bad("a list of domain names or UUIDs"),
                }
            }
            "watch" => match value {
                DeValue::Table(watch) => parse_watch(watch, &mut config, &mut issues, &line_of),
                _ => bad("a table ([watch])"),
            },
            "fix" => match value {
                DeValue::Table(fix) => parse_fix(fix, &mut config, &mut issues, &line_of),
                _ => bad("a table ([fix])"),
            },
            _ if FIX_KEYS.contains(&key) => issues.push(Issue {
                line,
                detail: format!(
                    "'{key}' is a key of [fix]: write it in a [fix] table, after every top-level key"
                ),
            }),
            _ => issues.push(Issue {
                line,
                detail: format!("unknown key '{}'", crate::escape::controls(key)),
            }),
        }
    }
    issues.sort_by_key(|i| i.line);
    (config, issues)
}

/// The `[watch]` table: settings of `phbguard watch` only.
fn parse_watch(
    table: &toml::de::DeTable<'_>,
    config: &mut Config,
    issues: &mut Vec<Issue>,
    line_of: &dyn Fn(usize) -> Option<usize>,
) {
    for (key, spanned) in table {
        let value = spanned.get_ref();
        let line = line_of(key.span().start);
        let key = key.get_ref().as_ref();
        match key {
            "action" => match value.as_str().and_then(WatchAction::parse) {
                Some(a) => config.watch_action = a,
                None => issues.push(Issue {
                    line,
                    detail: format!(
                        "watch.action = {}: expected {}",
                        short(value),
                        WatchAction::expected()
                    ),
                }),
            },
            _ if FIX_KEYS.contains(&key) => issues.push(Issue {
                line,
                detail: format!("'watch.{key}' is not a setting: '{key}' is a key of [fix]"),
            }),
            _ => issues.push(Issue {
                line,
                detail: format!("unknown key 'watch.{}'", crate::escape::controls(key)),
            }),
        }
    }
}

/// The keys of the `[fix]` table.
const FIX_KEYS: &[&str] = &["spare_phbs"];

/// `[fix] spare_phbs` at most: a pSeries guest has at most 31 PHBs, the default one included.
pub const MAX_SPARE_PHBS: u8 = crate::topology::MAX_TARGET as u8;

/// The `[fix]` table: what the definitions phbguard rewrites keep (`fix --domain`, `watch`
/// with `action = "fix"`).
fn parse_fix(
    table: &toml::de::DeTable<'_>,
    config: &mut Config,
    issues: &mut Vec<Issue>,
    line_of: &dyn Fn(usize) -> Option<usize>,
) {
    for (key, spanned) in table {
        let value = spanned.get_ref();
        let line = line_of(key.span().start);
        let key = key.get_ref().as_ref();
        match key {
            "spare_phbs" => match value
                .as_integer()
                .and_then(|i| u8::from_str_radix(i.as_str(), i.radix()).ok())
                .filter(|&n| n <= MAX_SPARE_PHBS)
            {
                Some(n) => config.fix_spare_phbs = n,
                None => issues.push(Issue {
                    line,
                    detail: format!(
                        "fix.spare_phbs = {}: expected a whole number from 0 to {MAX_SPARE_PHBS} (a \
                         pSeries guest has at most 31 PHBs, the default one included)",
                        short(value)
                    ),
                }),
            },
            _ => issues.push(Issue {
                line,
                detail: format!("unknown key 'fix.{}'", crate::escape::controls(key)),
            }),
        }
    }
}

/// A value as the admin wrote it, cut short enough for one log line.
fn short(value: &toml::de::DeValue) -> String {
    use toml::de::DeValue;
    let s = match value {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) => i.as_str().to_owned(),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => "[...]".into(),
        DeValue::Table(_) => "{...}".into(),
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(issues: &[Issue]) -> Vec<(Option<usize>, &str)> {
        issues.iter().map(|i| (i.line, i.detail.as_str())).collect()
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let (c, p) = parse("");
        assert_eq!(c, Config::default());
        assert!(p.is_empty());
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.incoming, Incoming::Warn);
        assert_eq!(c.on_internal_error, OnInternalError::Allow);
        assert!(!c.reject_iommu_group_unknown);
        assert_eq!(c.sysfs_root, Path::new("/sys"));
        assert_eq!(c.syslog_socket, Path::new("/dev/log"));
        assert_eq!(c.state_dir, Path::new("/run/phbguard/incoming"));
    }

    #[test]
    fn every_key_is_read() {
        let (c, p) = parse(
            r#"
            sysfs_root = "/tmp/sys"
            mode = "warn"
            incoming = "refuse"
            reject_iommu_group_unknown = true
            on_internal_error = "deny"
            exempt = ["db01", "6A1F0C2E-0000-4000-8000-000000000001"]
            syslog_socket = "/run/test.sock"
            state_dir = "/tmp/state"
            "#,
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.sysfs_root, Path::new("/tmp/sys"));
        assert_eq!(c.mode, Mode::Warn);
        assert_eq!(c.incoming, Incoming::Refuse);
        assert!(c.reject_iommu_group_unknown);
        assert_eq!(c.on_internal_error, OnInternalError::Deny);
        assert_eq!(c.syslog_socket, Path::new("/run/test.sock"));
        assert_eq!(c.state_dir, Path::new("/tmp/state"));
        assert!(c.is_exempt("db01", None));
        assert!(c.is_exempt("x", Some("6a1f0c2e-0000-4000-8000-000000000001")));
        assert!(!c.is_exempt("db02", Some("6a1f0c2e-0000-4000-8000-000000000002")));
    }

    #[test]
    fn watch_action_is_read_and_defaults_to_warn() {
        assert_eq!(parse("").0.watch_action, WatchAction::Warn);
        let (c, p) = parse("mode = 'warn'\n[watch]\naction = 'fix'\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((c.mode, c.watch_action), (Mode::Warn, WatchAction::Fix));
        assert_eq!(
            parse("watch = { action = 'warn' }").0.watch_action,
            WatchAction::Warn
        );
    }

    #[test]
    fn watch_mistakes_are_reported_with_their_line_and_fall_back_to_warn() {
        let (c, p) = parse("mode = 'warn'\n[watch]\naction = 'repair'\nactoin = 'fix'\n");
        assert_eq!(c.watch_action, WatchAction::Warn);
        assert_eq!(
            details(&p),
            [
                (Some(3), "watch.action = \"repair\": expected \"warn\" or \"fix\""),
                (Some(4), "unknown key 'watch.actoin'")
            ]
        );
        let (c, p) = parse("watch = 'fix'");
        assert_eq!(c.watch_action, WatchAction::Warn);
        assert_eq!(
            details(&p),
            [(Some(1), "watch = \"fix\": expected a table ([watch])")]
        );
    }

    #[test]
    fn fix_spare_phbs_is_read_and_defaults_to_0() {
        assert_eq!(parse("").0.fix_spare_phbs, 0);
        let (c, p) = parse("mode = 'warn'\n[watch]\naction = 'fix'\n[fix]\nspare_phbs = 2\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((c.watch_action, c.fix_spare_phbs), (WatchAction::Fix, 2));
        assert_eq!(parse("fix.spare_phbs = 30").0.fix_spare_phbs, 30);
    }

    #[test]
    fn fix_mistakes_are_reported_with_their_line_and_fall_back_to_0() {
        let (c, p) = parse("[fix]\nspare_phbs = 31\nspare_phb = 1\n[watch]\nspare_phbs = 2\n");
        assert_eq!(c.fix_spare_phbs, 0);
        assert_eq!(
            details(&p),
            [
                (
                    Some(2),
                    "fix.spare_phbs = 31: expected a whole number from 0 to 30 (a pSeries guest has \
                     at most 31 PHBs, the default one included)"
                ),
                (Some(3), "unknown key 'fix.spare_phb'"),
                (
                    Some(5),
                    "'watch.spare_phbs' is not a setting: 'spare_phbs' is a key of [fix]"
                ),
            ]
        );
        for bad in ["-1", "2.0", "'2'", "true"] {
            let (c, p) = parse(&format!("[fix]\nspare_phbs = {bad}\n"));
            assert_eq!((c.fix_spare_phbs, p.len()), (0, 1), "{bad}: {p:?}");
        }
        let (_, p) = parse("spare_phbs = 2\n");
        assert_eq!(
            details(&p),
            [(
                Some(1),
                "'spare_phbs' is a key of [fix]: write it in a [fix] table, after every top-level key"
            )]
        );
        assert_eq!(
            details(&parse("fix = 2").1),
            [(Some(1), "fix = 2: expected a table ([fix])")]
        );
    }

    #[test]
    fn mode_off_is_read() {
        assert_eq!(parse("mode = 'off'").0.mode, Mode::Off);
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let (c, p) = parse("mode = 'warn'\nexmept = ['db']\n[section]\nx = 1\n");
        assert_eq!(c.mode, Mode::Warn);
        assert_eq!(
            details(&p),
            [
                (Some(2), "unknown key 'exmept'"),
                (Some(3), "unknown key 'section'")
            ]
        );
    }

    #[test]
    fn bad_values_are_reported_with_their_line_and_fall_back_per_key() {
        let (c, p) = parse(
            "mode = 'warning'\nincoming = 3\nreject_iommu_group_unknown = 'yes'\n\
             on_internal_error = 'crash'\nexempt = 'db01'\nsysfs_root = 'relative'\n\
             syslog_socket = 3\nstate_dir = 'run'\n",
        );
        assert_eq!(c, Config::default());
        let d = details(&p);
        assert_eq!(d.len(), 8, "{p:?}");
        assert_eq!(
            d[0],
            (
                Some(1),
                "mode = \"warning\": expected \"enforce\", \"warn\" or \"off\""
            )
        );
        assert_eq!(d[1], (Some(2), "incoming = 3: expected \"refuse\" or \"warn\""));
        assert_eq!(d[7].0, Some(8));
        assert!(p.iter().all(|i| !i.detail.contains('\n')));
    }

    #[test]
    fn exempt_with_a_non_string_is_refused_whole() {
        let (c, p) = parse("exempt = ['db01', 2]");
        assert!(c.exempt.is_empty());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn broken_toml_is_the_defaults_with_one_problem_and_its_line() {
        for (text, line) in [("x = 1\nexempt = [", 2), ("\n\nmode = enforce\n", 3)] {
            let (c, p) = parse(text);
            assert_eq!(c, Config::default());
            assert_eq!(p.len(), 1);
            assert!(p[0].detail.starts_with("not valid TOML ("), "{p:?}");
            assert_eq!(p[0].line, Some(line), "{p:?}");
            assert!(!p[0].detail.contains('\n'));
        }
    }

    #[test]
    fn control_characters_in_keys_are_escaped() {
        let (_, p) = parse("\"a\\u001b[31m\" = 1");
        assert_eq!(p[0].detail, "unknown key 'a\\x1b[31m'");
    }

    #[test]
    fn path_precedence() {
        let flag = Some(PathBuf::from("/a"));
        let env = Some(std::ffi::OsString::from("/b"));
        assert_eq!(choose_path(flag, env.clone()), (PathBuf::from("/a"), true));
        assert_eq!(choose_path(None, env), (PathBuf::from("/b"), true));
        assert_eq!(
            choose_path(None, Some("".into())),
            (PathBuf::from(DEFAULT_PATH), false)
        );
        assert_eq!(choose_path(None, None), (PathBuf::from(DEFAULT_PATH), false));
    }
}
