//! What the admin reads when the hook refuses a guest (`virsh start` shows the hook's stderr
//! whole): the findings, the blocking ones first, then the ways out.

use std::fmt::Write as _;
use std::path::Path;

use phbguard_core::config::Config;
use phbguard_core::escape::controls;
use phbguard_core::parse::METADATA_NS;
use phbguard_core::verdict::{Arrival, HookCall, Phase, Verdict};

/// The most finding lines a refusal shows; the rest are counted.
pub const MAX_REFUSAL_LINES: usize = 20;

/// What `virsh start` (or `restore`, `migrate`) shows the admin when the guest is refused: at
/// most [`MAX_REFUSAL_LINES`] findings, the blocking ones first, then the ways out.
pub fn refusal_text(
    name: &str,
    occasion: HookCall,
    verdict: &Verdict,
    policy: &Path,
    config: &Config,
) -> String {
    let shown = controls(name);
    let quoted = shell_word(name);
    let sysfs = if config.sysfs_root == Path::new("/sys") {
        String::new()
    } else {
        format!(
            " --sysfs-root {}",
            shell_word(&config.sysfs_root.to_string_lossy())
        )
    };
    let mut text = String::new();
    for j in verdict.findings.iter().take(MAX_REFUSAL_LINES) {
        let f = &j.finding;
        if j.blocking {
            let _ = writeln!(text, "{}: {}", f.rule.id, controls(&f.message));
        } else {
            let _ = writeln!(text, "{} ({}): {}", f.rule.id, f.severity(), controls(&f.message));
        }
    }
    let hidden = verdict.findings.len().saturating_sub(MAX_REFUSAL_LINES);
    if hidden > 0 {
        let _ = writeln!(
            text,
            "… and {hidden} more: virsh dumpxml --inactive {quoted} | phbguard check{sysfs} -"
        );
    }
    let errors = verdict.blocking();
    let first = verdict
        .findings
        .iter()
        .find(|j| j.blocking)
        .map_or("", |j| j.finding.rule.id.as_str());
    let refused = match occasion.arrival {
        Arrival::Start => "refused to start",
        Arrival::Incoming(Phase::Migrate) => "refused the incoming migration of",
        Arrival::Incoming(_) => "refused to restore",
    };
    let _ = writeln!(
        text,
        "phbguard: {refused} '{shown}': {errors} error{}; 'phbguard explain {first}' tells why and how to fix it",
        if errors == 1 { "" } else { "s" },
    );
    let policy = shell_word(&policy.to_string_lossy());
    match occasion.arrival {
        Arrival::Start => {
            // Through the API, never dumpxml > file > define: dumpxml without --security-info
            // drops VNC/SPICE passwords and the redefine would erase them.
            let _ = writeln!(
                text,
                "phbguard: fix its definition: phbguard fix --domain {quoted}{sysfs} (shows the diff, redefines when you confirm)"
            );
            let _ = writeln!(
                text,
                "phbguard: or start it anyway: virsh metadata {quoted} --uri {METADATA_NS} --key phbguard --set \"<policy mode='warn'/>\" --config"
            );
            let _ = writeln!(
                text,
                "phbguard: or warn for every guest: mode = \"warn\" in {policy}"
            );
        }
        Arrival::Incoming(_) => {
            let _ = writeln!(
                text,
                "phbguard: let incoming guests in with a warning: incoming = \"warn\" in {policy} (the default)"
            );
            let _ = writeln!(
                text,
                "phbguard: then fix its definition: phbguard fix --domain {quoted}{sysfs} (shows the diff, redefines when you confirm)"
            );
        }
    }
    text
}

/// `s` as one shell word: bare when it is plain, else single-quoted; control characters are
/// escaped (the line is for reading; such a name must be typed by hand anyway).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", controls(s).replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("db-02.x"), "db-02.x");
        assert_eq!(shell_word("it's me"), "'it'\\''s me'");
        assert_eq!(shell_word("a\u{1b}[31m"), "'a\\x1b[31m'");
        assert_eq!(shell_word(""), "''");
    }
}
