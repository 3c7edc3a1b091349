//! The hook's policy file, `/etc/phbguard/phbguard.toml`. Every key is optional; a missing file
//! means the defaults. A file that cannot be read or parsed, an unknown key or a bad value is a
//! [`Problem`] to report, never a reason to stop: the key (or the whole file) falls back to its
//! safe default, so that a typo can't block every guest on the host.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the policy file is read from when neither `--config` nor `PHBGUARD_CONFIG` says.
pub const DEFAULT_PATH: &str = "/etc/phbguard/phbguard.toml";
/// The environment variable that names another policy file (tests use it).
pub const ENV_VAR: &str = "PHBGUARD_CONFIG";
/// A policy file is a handful of lines; anything larger than this is not one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

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

impl Mode {
    /// The mode a policy file or `<phbguard:policy mode>` names, if it is one.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "enforce" => Some(Mode::Enforce),
            "warn" => Some(Mode::Warn),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }

    /// The mode as the policy file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Off => "off",
        }
    }
}

/// What `migrate begin` (incoming migration) and `restore begin` do with error findings. The
/// hook can't fix a guest there: libvirt refuses any rewritten XML that is not ABI-identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Exit 1: the migration or restore is cancelled.
    Refuse,
    /// Log the findings and let the guest in.
    Warn,
}

/// What the hook does when it cannot judge (unreadable or malformed XML, oversized input, a bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInternalError {
    /// Let the guest start, logged at error level on stderr and syslog.
    Allow,
    /// Exit 1: the guest does not start.
    Deny,
}
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

/// Something wrong with the policy file, and what phbguard did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The policy file.
    pub path: PathBuf,
    /// What is wrong in it: the key, the value and why.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy file {}: {}", self.path.display(), self.detail)
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

/// Reads and interprets the policy file; never fails.
pub fn load(path: &Path, explicit: bool) -> (Config, Vec<Problem>) {
    let problem = |detail: String| Problem {
        path: path.to_path_buf(),
        detail,
    };
    let text = match read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return (Config::default(), Vec::new());
        }
        Err(e) => {
            let detail = format!("cannot read it ({e}); using the built-in defaults");
            return (Config::default(), vec![problem(detail)]);
        }
    };
    let (config, details) = parse(&text);
    (config, details.into_iter().map(problem).collect())
}

fn read(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB, not a policy file",
            MAX_CONFIG_BYTES >> 10
        )));
    }
    Ok(text)
}

/// Interprets the text of a policy file: the configuration, and one sentence per problem.
pub fn parse(text: &str) -> (Config, Vec<String>) {
    let mut config = Config::default();
    let mut problems = Vec::new();
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let detail = e.to_string().replace('\n', " ").replace("  ", " ");
            problems.push(format!(
                "not valid TOML, ignoring the whole file and using the built-in defaults: {}",
                detail.trim()
            ));
            return (config, problems);
        }
    };
    for (key, value) in &table {
        let mut bad = |expected: &str, default: &dyn fmt::Display| {
            problems.push(format!(
                "{key} = {}: expected {expected}; using the default ({default})",
                short(value)
            ));
        };
        match key.as_str() {
            "sysfs_root" => match value.as_str() {
                Some(s) if Path::new(s).is_absolute() => config.sysfs_root = PathBuf::from(s),
                _ => bad("an absolute path", &config.sysfs_root.display()),
            },
            "syslog_socket" => match value.as_str() {
                Some(s) if Path::new(s).is_absolute() => config.syslog_socket = PathBuf::from(s),
                _ => bad("an absolute path", &config.syslog_socket.display()),
            },
            "mode" => match value.as_str().and_then(Mode::parse) {
                Some(m) => config.mode = m,
                None => bad("\"enforce\", \"warn\" or \"off\"", &"enforce"),
            },
            "incoming" => match value.as_str() {
                Some("refuse") => config.incoming = Incoming::Refuse,
                Some("warn") => config.incoming = Incoming::Warn,
                _ => bad("\"refuse\" or \"warn\"", &"warn"),
            },
            "reject_iommu_group_unknown" => match value.as_bool() {
                Some(b) => config.reject_iommu_group_unknown = b,
                None => bad("true or false", &false),
            },
            "on_internal_error" => match value.as_str() {
                Some("allow") => config.on_internal_error = OnInternalError::Allow,
                Some("deny") => config.on_internal_error = OnInternalError::Deny,
                _ => bad("\"allow\" or \"deny\"", &"allow"),
            },
            "exempt" => {
                let names: Option<Vec<String>> = value
                    .as_array()
                    .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
                match names {
                    Some(names) => config.exempt = names,
                    None => bad("a list of domain names or UUIDs", &"[]"),
                }
            }
            _ => problems.push(format!("unknown key '{key}', ignored")),
        }
    }
    (config, problems)
}

/// A value as the admin wrote it, cut short enough for one log line.
fn short(value: &toml::Value) -> String {
    let s = match value {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "[...]".into(),
        toml::Value::Table(_) => "{...}".into(),
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
            "#,
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.sysfs_root, Path::new("/tmp/sys"));
        assert_eq!(c.mode, Mode::Warn);
        assert_eq!(c.incoming, Incoming::Refuse);
        assert!(c.reject_iommu_group_unknown);
        assert_eq!(c.on_internal_error, OnInternalError::Deny);
        assert_eq!(c.syslog_socket, Path::new("/run/test.sock"));
        assert!(c.is_exempt("db01", None));
        assert!(c.is_exempt("x", Some("6a1f0c2e-0000-4000-8000-000000000001")));
        assert!(!c.is_exempt("db02", Some("6a1f0c2e-0000-4000-8000-000000000002")));
    }

    #[test]
    fn mode_off_is_read() {
        assert_eq!(parse("mode = 'off'").0.mode, Mode::Off);
    }

    #[test]
    fn unknown_keys_are_reported_not_fatal() {
        let (c, p) = parse("mode = 'warn'\nmodee = 'off'\n[section]\nx = 1\n");
        assert_eq!(c.mode, Mode::Warn);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("unknown key 'modee'"), "{p:?}");
        assert!(p[1].contains("unknown key 'section'"), "{p:?}");
    }

    #[test]
    fn bad_values_fall_back_per_key() {
        let (c, p) = parse(
            "mode = 'block'\nincoming = 1\nreject_iommu_group_unknown = 'yes'\n\
             on_internal_error = 'crash'\nexempt = 'db01'\nsysfs_root = 'relative'\n\
             syslog_socket = 3\nexempt2 = []\n",
        );
        assert_eq!(c, Config::default());
        assert_eq!(p.len(), 8, "{p:?}");
        assert!(
            p.iter().any(|l| l.contains("mode = \"block\": expected")),
            "{p:?}"
        );
        assert!(p.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn exempt_with_a_non_string_is_refused_whole() {
        let (c, p) = parse("exempt = ['db01', 2]");
        assert!(c.exempt.is_empty());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn broken_toml_is_the_defaults_with_one_problem() {
        let (c, p) = parse("mode = 'warn\nexempt = [");
        assert_eq!(c, Config::default());
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("not valid TOML"), "{p:?}");
        assert!(!p[0].contains('\n'));
    }

    #[test]
    fn missing_default_file_is_silent_missing_named_file_is_reported() {
        let missing = Path::new("/nonexistent/phbguard.toml");
        assert!(load(missing, false).1.is_empty());
        let (c, p) = load(missing, true);
        assert_eq!(c, Config::default());
        assert_eq!(p.len(), 1);
        assert!(p[0].to_string().contains("/nonexistent/phbguard.toml"));
    }

    #[test]
    fn directory_and_oversized_files_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), true).1.len(), 1);
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
        let (c, p) = load(&big, true);
        assert_eq!(c, Config::default());
        assert!(p[0].detail.contains("larger than"), "{p:?}");
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
