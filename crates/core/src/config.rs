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

use crate::near::near;

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
    /// The sysfs tree the policy names instead of the kernel's `/sys`, if it does. `audit` and
    /// `watch` read host facts from libvirt's node devices unless the policy names one (a test
    /// host, an offline one); the hook reads sysfs either way.
    pub fn sysfs_override(&self) -> Option<&Path> {
        (self.sysfs_root != Config::default().sysfs_root).then_some(self.sysfs_root.as_path())
    }

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

/// The policy file as the hook reads it, and with it `check-config`, `audit` and `watch`: where
/// it is, what it says and everything wrong with it (phbguard-io's `policy_file::read` reads
/// it). Reading never fails: a problem is listed and the key (or the whole file) keeps its
/// default.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file read.
    pub path: PathBuf,
    /// Named by `--config` or [`ENV_VAR`]: then a missing file is a problem, not the defaults.
    pub explicit: bool,
    /// The file exists; `false`: the built-in defaults apply.
    pub found: bool,
    /// The settings, with the default for every key that has a problem.
    pub config: Config,
    /// Every problem, in line order: the file's syntax, keys and values, and a `sysfs_root` it
    /// names that is not a directory.
    pub problems: Vec<Problem>,
    /// The problem that `sysfs_root` is not a directory, also in `problems`: read from it, every
    /// host device would be "not on this host" (the watcher will not start on that).
    pub sysfs_root_problem: Option<Problem>,
}

impl Policy {
    /// No file read yet: the defaults, no problem.
    pub fn new(path: PathBuf, explicit: bool) -> Policy {
        Policy {
            path,
            explicit,
            found: false,
            config: Config::default(),
            problems: Vec::new(),
            sysfs_root_problem: None,
        }
    }

    /// Adds a problem of this file.
    pub fn problem(&mut self, line: Option<usize>, detail: String) {
        self.problems.push(Problem {
            path: self.path.clone(),
            line,
            detail,
        });
    }

    /// The hook cannot trust a policy file with problems: it judges every guest in warn mode
    /// (never refuses one) until the file is fixed.
    pub fn in_doubt(&self) -> bool {
        !self.problems.is_empty()
    }

    /// The mode the hook applies to a guest whose definition names none: the file's, but warn
    /// (the fail-safe) while the file has problems.
    pub fn applied_mode(&self) -> Mode {
        match self.config.mode {
            Mode::Enforce if self.in_doubt() => Mode::Warn,
            mode => mode,
        }
    }

    /// What the hook does to guests under [`Policy::applied_mode`], in a few words.
    pub fn applied(&self) -> String {
        let mode = self.applied_mode();
        let what = match mode {
            Mode::Enforce => "guests with error findings are refused",
            Mode::Warn => "findings are logged, no guest is refused",
            Mode::Off => "nothing is judged",
        };
        if self.in_doubt() && mode == Mode::Warn {
            format!("until it is fixed the hook judges every guest in warn mode, its fail-safe ({what})")
        } else {
            format!("the hook applies mode = \"{}\" ({what})", mode.as_str())
        }
    }
}

/// Every key a policy file may have at its top level, before any `[table]`.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "sysfs_root",
    "mode",
    "incoming",
    "reject_iommu_group_unknown",
    "on_internal_error",
    "exempt",
    "syslog_socket",
    "state_dir",
];
/// The tables a policy file may have, after every top-level key.
pub const TABLES: &[&str] = &["watch", "fix"];
/// The keys of the `[watch]` table.
pub const WATCH_KEYS: &[&str] = &["action"];
/// The keys of the `[fix]` table.
pub const FIX_KEYS: &[&str] = &["spare_phbs"];

/// What the text of a policy file says.
#[derive(Debug)]
pub struct Parsed {
    /// The settings, with the default for every key that has an issue.
    pub config: Config,
    /// What is wrong in the text, in line order.
    pub issues: Vec<Issue>,
    /// The line `sysfs_root` is set on, for a problem found with its value later (whether the
    /// tree is a directory is a question for the system, not the text).
    pub sysfs_root_line: Option<usize>,
}

/// Interprets the text of a policy file: the configuration, and one issue per problem.
pub fn parse(text: &str) -> (Config, Vec<Issue>) {
    let parsed = parse_text(text);
    (parsed.config, parsed.issues)
}

/// Interprets the text of a policy file, with the line of `sysfs_root`.
pub fn parse_text(text: &str) -> Parsed {
    use toml::de::{DeTable, DeValue};
    let mut parsed = Parsed {
        config: Config::default(),
        issues: Vec::new(),
        sysfs_root_line: None,
    };
    let line_of = |offset: usize| Some(text[..offset.min(text.len())].matches('\n').count() + 1);
    let table = match DeTable::parse(text) {
        Ok(t) => t.into_inner(),
        Err(e) => {
            let message = e.message().replace('\n', " ");
            parsed.issues.push(Issue {
                line: e.span().and_then(|s| line_of(s.start)),
                detail: format!("not valid TOML ({}); the whole file is ignored", message.trim()),
            });
            return parsed;
        }
    };
    let config = &mut parsed.config;
    let issues = &mut parsed.issues;
    for (key, spanned) in &table {
        let value: &DeValue = spanned.get_ref();
        let key_start = key.span().start;
        let line = line_of(key_start);
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
                Some(p) => {
                    config.sysfs_root = p;
                    parsed.sysfs_root_line = line;
                }
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
            _ => match (Table::named(key), value) {
                // `[watch]` and its keys below it, or `watch.action = ...` (a dotted key).
                (Some(spec), DeValue::Table(table)) => {
                    let header = header_line(text, key_start, line);
                    spec.parse(table, header, config, issues, &line_of);
                }
                (Some(spec), _) => bad(&format!("a table ([{}])", spec.name)),
                (None, DeValue::Table(keys)) => {
                    let header = header_line(text, key_start, line);
                    misplaced_in(key, header, keys, issues, &line_of);
                    issues.push(Issue {
                        line,
                        detail: unknown_table(key),
                    });
                }
                (None, _) => issues.push(Issue {
                    line,
                    detail: unknown_top_level_key(key),
                }),
            },
        }
    }
    parsed.issues.sort_by_key(|i| i.line);
    parsed
}

/// A table of the policy file: its name, its keys, and how it reads one of them.
struct Table {
    name: &'static str,
    keys: &'static [&'static str],
    /// Sets a key of `keys` from its value, or says what is wrong with the value.
    set: fn(&str, &toml::de::DeValue<'_>, &mut Config) -> Result<(), String>,
}

/// Every table of [`TABLES`]: `[watch]`, settings of `phbguard watch` only; `[fix]`, what the
/// definitions phbguard rewrites keep (`fix --domain`, `watch` with `action = "fix"`).
const TABLE_SPECS: [Table; 2] = [
    Table {
        name: "watch",
        keys: WATCH_KEYS,
        set: set_watch,
    },
    Table {
        name: "fix",
        keys: FIX_KEYS,
        set: set_fix,
    },
];

impl Table {
    fn named(name: &str) -> Option<&'static Table> {
        TABLE_SPECS.iter().find(|t| t.name == name)
    }

    /// The keys of this table, each set or reported: a key of another table, a top-level key
    /// below this table's header, or an unknown one (with the near miss it was meant to be).
    fn parse(
        &self,
        table: &toml::de::DeTable<'_>,
        header: Header,
        config: &mut Config,
        issues: &mut Vec<Issue>,
        line_of: &dyn Fn(usize) -> Option<usize>,
    ) {
        for (key, spanned) in table {
            let line = line_of(key.span().start);
            let key = key.get_ref().as_ref();
            let detail = if self.keys.contains(&key) {
                match (self.set)(key, spanned.get_ref(), config) {
                    Ok(()) => continue,
                    Err(detail) => detail,
                }
            } else if let Some(other) = TABLE_SPECS.iter().find(|t| t.keys.contains(&key)) {
                let (this, other) = (self.name, other.name);
                format!("'{this}.{key}' is not a setting: '{key}' is a key of [{other}]")
            } else if TOP_LEVEL_KEYS.contains(&key) {
                misplaced(self.name, key, header)
            } else {
                unknown_in(self.name, self.keys, key, header)
            };
            issues.push(Issue { line, detail });
        }
    }
}

fn set_watch(key: &str, value: &toml::de::DeValue<'_>, config: &mut Config) -> Result<(), String> {
    match key {
        "action" => {
            config.watch_action = value.as_str().and_then(WatchAction::parse).ok_or_else(|| {
                format!(
                    "watch.action = {}: expected {}",
                    short(value),
                    WatchAction::expected()
                )
            })?;
        }
        _ => return Err(format!("unknown key 'watch.{key}'")),
    }
    Ok(())
}

/// Where a table was opened: a `[table]` line (its line number), or the first of its dotted
/// keys (`watch.action = ...`).
#[derive(Debug, Clone, Copy)]
enum Header {
    Line(Option<usize>),
    Dotted,
}

/// How `table` (its name at `start`, on `line`) was opened.
fn header_line(text: &str, start: usize, line: Option<usize>) -> Header {
    let before = text[..start.min(text.len())].trim_end_matches([' ', '\t']);
    if before.ends_with('[') {
        Header::Line(line)
    } else {
        Header::Dotted
    }
}

/// A top-level key found inside a table: TOML reads every key below a `[table]` line as that
/// table's, so a key added at the end of the file is lost to the table before it.
fn misplaced(table: &str, key: &str, header: Header) -> String {
    let table = crate::escape::controls(table);
    match header {
        Header::Line(at) => {
            let at = at.map(|l| format!(" (line {l})")).unwrap_or_default();
            format!("'{key}' is inside [{table}]{at}; top-level keys go before the first [table]")
        }
        Header::Dotted => {
            format!("unknown key '{table}.{key}' ('{key}' is a top-level key: write it without '{table}.')")
        }
    }
}

/// The top-level keys inside an unknown table: each is reported as misplaced, since the admin
/// meant it at the top level (the table's name has its own problem).
fn misplaced_in(
    table: &str,
    header: Header,
    keys: &toml::de::DeTable<'_>,
    issues: &mut Vec<Issue>,
    line_of: &dyn Fn(usize) -> Option<usize>,
) {
    for (key, _) in keys {
        if TOP_LEVEL_KEYS.contains(&key.get_ref().as_ref()) {
            issues.push(Issue {
                line: line_of(key.span().start),
                detail: misplaced(table, key.get_ref(), header),
            });
        }
    }
}

/// `[fix] spare_phbs` at most: a pSeries guest has at most 31 PHBs, the default one included.
pub const MAX_SPARE_PHBS: u8 = crate::topology::MAX_TARGET as u8;

fn set_fix(key: &str, value: &toml::de::DeValue<'_>, config: &mut Config) -> Result<(), String> {
    match key {
        "spare_phbs" => {
            config.fix_spare_phbs = value
                .as_integer()
                .and_then(|i| u8::from_str_radix(i.as_str(), i.radix()).ok())
                .filter(|&n| n <= MAX_SPARE_PHBS)
                .ok_or_else(|| {
                    format!(
                        "fix.spare_phbs = {}: expected a whole number from 0 to {MAX_SPARE_PHBS} \
                         (a pSeries guest has at most 31 PHBs, the default one included)",
                        short(value)
                    )
                })?;
        }
        _ => return Err(format!("unknown key 'fix.{key}'")),
    }
    Ok(())
}

/// A key of `table` that is none of its `keys` nor a top-level key: the near miss it was meant
/// to be, spelled as the table was opened (`[watch]` line or dotted `watch.action`).
fn unknown_in(table: &str, keys: &[&'static str], key: &str, header: Header) -> String {
    let key = crate::escape::controls(key);
    match near(&key, keys).or_else(|| near(&key, TOP_LEVEL_KEYS)) {
        Some(k) if keys.contains(&k) => match header {
            Header::Line(_) => format!("unknown key '{table}.{key}' (did you mean '{k}'?)"),
            Header::Dotted => format!("unknown key '{table}.{key}' (did you mean '{table}.{k}'?)"),
        },
        Some(k) => match header {
            Header::Line(_) => format!("{} (did you mean '{k}'?)", misplaced(table, &key, header)),
            Header::Dotted => {
                format!("unknown key '{table}.{key}' (did you mean '{k}', a top-level key?)")
            }
        },
        None => format!(
            "unknown key '{table}.{key}' ([{table}] has only {})",
            quoted(keys)
        ),
    }
}

fn unknown_table(name: &str) -> String {
    let name = crate::escape::controls(name);
    match near(&name, TABLES).or_else(|| near(&name, TOP_LEVEL_KEYS)) {
        Some(t) if TABLES.contains(&t) => format!("unknown table [{name}] (did you mean [{t}]?)"),
        Some(k) => format!("unknown table [{name}] (did you mean the key '{k}'?)"),
        None => format!("unknown table [{name}] (the tables are {})", tables()),
    }
}

/// `[watch]` and `[fix]`.
fn tables() -> String {
    let tables: Vec<String> = TABLES.iter().map(|t| format!("[{t}]")).collect();
    match tables.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn unknown_top_level_key(key: &str) -> String {
    let key = crate::escape::controls(key);
    if let Some(table) = TABLE_SPECS.iter().find(|t| t.keys.contains(&&*key)) {
        let table = table.name;
        return format!("'{key}' is a key of [{table}]: write it as {table}.{key}");
    }
    match near(&key, TOP_LEVEL_KEYS) {
        Some(k) => format!("unknown key '{key}' (did you mean '{k}'?)"),
        None => match TABLE_SPECS
            .iter()
            .find_map(|t| Some((t.name, near(&key, t.keys)?)))
        {
            Some((table, k)) => format!("unknown key '{key}' (did you mean '{table}.{k}'?)"),
            None => format!("unknown key '{key}'"),
        },
    }
}

/// `'a', 'b' or 'c'`.
fn quoted(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
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

    #[test]
    fn every_table_has_a_reader() {
        assert_eq!(TABLES, TABLE_SPECS.map(|t| t.name));
    }

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
        let (c, p) = parse("mode = 'warn'\nwatch.action = 'fix'\nexempt = []\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((c.mode, c.watch_action), (Mode::Warn, WatchAction::Fix));
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
                (Some(4), "unknown key 'watch.actoin' (did you mean 'action'?)")
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
        // A top-level key below [fix] is named as below [watch].
        let (_, p) = parse("[fix]\nspare_phbs = 2\nmode = 'enforce'\n");
        assert_eq!(
            details(&p),
            [(
                Some(3),
                "'mode' is inside [fix] (line 1); top-level keys go before the first [table]"
            )]
        );
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
                (
                    Some(3),
                    "unknown key 'fix.spare_phb' (did you mean 'spare_phbs'?)"
                ),
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
                "'spare_phbs' is a key of [fix]: write it as fix.spare_phbs"
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
                (Some(2), "unknown key 'exmept' (did you mean 'exempt'?)"),
                (
                    Some(3),
                    "unknown table [section] (the tables are [watch] and [fix])"
                )
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
    fn a_top_level_key_below_a_table_is_named_with_the_table_and_its_line() {
        // The packaged file's [watch] uncommented, then mode added at the end (echo >>).
        let text = "exempt = ['db01']\n\n[watch]\naction = 'fix'\nmode = 'enforce'\nsysfs_root = '/sys'\n";
        let (c, p) = parse(text);
        assert_eq!((c.mode, c.watch_action), (Mode::Enforce, WatchAction::Fix));
        assert_eq!(
            details(&p),
            [
                (
                    Some(5),
                    "'mode' is inside [watch] (line 3); top-level keys go before the first [table]"
                ),
                (
                    Some(6),
                    "'sysfs_root' is inside [watch] (line 3); top-level keys go before the first [table]"
                ),
            ]
        );
        // In a table phbguard does not know, too: the key is what the admin meant.
        let (_, p) = parse("[wacth]\naction = 'fix'\nmode = 'warn'\n");
        assert_eq!(
            details(&p),
            [
                (Some(1), "unknown table [wacth] (did you mean [watch]?)"),
                (
                    Some(3),
                    "'mode' is inside [wacth] (line 1); top-level keys go before the first [table]"
                ),
            ]
        );
    }

    #[test]
    fn a_table_key_at_the_top_level_says_where_it_belongs() {
        let (c, p) = parse("action = 'fix'\n");
        assert_eq!(c.watch_action, WatchAction::Warn);
        assert_eq!(
            details(&p),
            [(Some(1), "'action' is a key of [watch]: write it as watch.action")]
        );
    }

    #[test]
    fn near_misses_get_a_did_you_mean() {
        for (text, detail) in [
            ("exmept = []", "unknown key 'exmept' (did you mean 'exempt'?)"),
            ("mdoe = 'warn'", "unknown key 'mdoe' (did you mean 'mode'?)"),
            ("Mode = 'warn'", "unknown key 'Mode' (did you mean 'mode'?)"),
            (
                "sysfs-root = '/sys'",
                "unknown key 'sysfs-root' (did you mean 'sysfs_root'?)",
            ),
            (
                "reject_iommu_group_unknwon = true",
                "unknown key 'reject_iommu_group_unknwon' (did you mean 'reject_iommu_group_unknown'?)",
            ),
            (
                "actoin = 'fix'",
                "unknown key 'actoin' (did you mean 'watch.action'?)",
            ),
            ("colour = 1", "unknown key 'colour'"),
            (
                "[watch]\nactoin = 'fix'",
                "unknown key 'watch.actoin' (did you mean 'action'?)",
            ),
            (
                "[watch]\nexmept = []",
                "'exmept' is inside [watch] (line 1); top-level keys go before the first [table] (did you mean 'exempt'?)",
            ),
            (
                "[watch]\ncolour = 1",
                "unknown key 'watch.colour' ([watch] has only 'action')",
            ),
            ("[wacth]", "unknown table [wacth] (did you mean [watch]?)"),
            // The dotted form the packaged file uses.
            (
                "watch.actoin = 'fix'",
                "unknown key 'watch.actoin' (did you mean 'watch.action'?)",
            ),
            (
                "watch.mode = 'warn'",
                "unknown key 'watch.mode' ('mode' is a top-level key: write it without 'watch.')",
            ),
            (
                "watch.exmept = []",
                "unknown key 'watch.exmept' (did you mean 'exempt', a top-level key?)",
            ),
            (
                "wacth.action = 'fix'",
                "unknown table [wacth] (did you mean [watch]?)",
            ),
            (
                "[exempt]",
                "exempt = {...}: expected a list of domain names or UUIDs",
            ),
        ] {
            let (_, p) = parse(text);
            let got: Vec<&str> = p.iter().map(|i| i.detail.as_str()).collect();
            assert_eq!(got, [detail], "{text}");
        }
    }

    #[test]
    fn the_key_lists_are_the_keys_parse_reads() {
        for key in TOP_LEVEL_KEYS {
            let (_, p) = parse(&format!("{key} = 0"));
            assert!(p[0].detail.starts_with(&format!("{key} = 0: expected ")), "{p:?}");
        }
        for key in WATCH_KEYS {
            let (_, p) = parse(&format!("[watch]\n{key} = 0"));
            assert!(
                p[0].detail.starts_with(&format!("watch.{key} = 0: expected ")),
                "{p:?}"
            );
        }
        for table in TABLES {
            let (_, p) = parse(&format!("[{table}]"));
            assert!(p.is_empty(), "{p:?}");
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
