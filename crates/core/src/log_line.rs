//! What a syslog line of phbguard's says, built one way for the hook, audit and the watcher: a
//! verb naming what happened, `key=value` fields a script can grep
//! (`grep 'rule=hostdev-on-default-phb'`), then `: ` and a sentence for a person. Sending it is
//! phbguard-io's `syslog`.

use std::fmt::{self, Write};

/// A line's syslog severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `err`: a guest refused, an internal or setup error.
    Err,
    /// `warning`: a finding let through.
    Warning,
    /// `notice`: a finding of an exempt guest.
    Notice,
    /// `info`: what the hook did, for the record (an incoming guest).
    Info,
}

/// One line, built field by field:
///
/// ```
/// # use phbguard_core::log_line::Line;
/// let line = Line::new("internal-error")
///     .field("domain", "db 02")
///     .field("op", "prepare")
///     .says("cannot judge: the domain XML: ...");
/// assert_eq!(line, "internal-error domain=\"db 02\" op=prepare: cannot judge: the domain XML: ...");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Line(String);

impl Line {
    /// A line that starts with `verb` (`rejected`, `internal-error`, `redefined`...).
    pub fn new(verb: &str) -> Line {
        Line(verb.to_owned())
    }

    /// Adds ` key=value`, quoted as [`field`] quotes it.
    pub fn field(mut self, key: &str, value: impl fmt::Display) -> Line {
        self.0.push(' ');
        push_field(&mut self.0, key, &value.to_string());
        self
    }

    /// Adds ` key=value` when there is a value.
    pub fn field_if(self, key: &str, value: Option<impl fmt::Display>) -> Line {
        match value {
            Some(value) => self.field(key, value),
            None => self,
        }
    }

    /// The line, ending with `: ` and `sentence`.
    pub fn says(self, sentence: impl fmt::Display) -> String {
        let mut line = self.0;
        // Writing to a String cannot fail.
        let _ = write!(line, ": {sentence}");
        line
    }

    /// The line as it is, without a sentence.
    pub fn done(self) -> String {
        self.0
    }
}

/// `key=value`, the value quoted when it holds spaces, quotes, `=` or nothing at all, so a line
/// splits back into its fields (`grep 'rule=hostdev-on-default-phb'`).
pub fn field(key: &str, value: &str) -> String {
    let mut out = String::new();
    push_field(&mut out, key, value);
    out
}

fn push_field(out: &mut String, key: &str, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    out.push_str(key);
    out.push('=');
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_quotes_only_when_needed() {
        assert_eq!(
            field("rule", "hostdev-on-default-phb"),
            "rule=hostdev-on-default-phb"
        );
        assert_eq!(
            field("device", "hostdev 0002:02:00.0"),
            "device=\"hostdev 0002:02:00.0\""
        );
        assert_eq!(field("domain", "a\"b=c"), "domain=\"a\\\"b=c\"");
        assert_eq!(field("uuid", ""), "uuid=\"\"");
    }

    #[test]
    fn a_line_is_its_verb_its_fields_and_what_it_says() {
        let line = Line::new("rejected")
            .field("domain", "db02")
            .field("device", "hostdev 0002:02:00.0")
            .field_if("incoming", None::<&str>)
            .field_if("after", Some("restore"))
            .field("changes", 2);
        assert_eq!(
            line.clone().done(),
            "rejected domain=db02 device=\"hostdev 0002:02:00.0\" after=restore changes=2"
        );
        assert_eq!(
            line.says("on the default PHB"),
            "rejected domain=db02 device=\"hostdev 0002:02:00.0\" after=restore changes=2: on the default PHB"
        );
    }
}
