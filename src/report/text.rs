//! The report for people: one line per finding, a summary, colour only on a terminal.

use std::io::{self, Write};

use super::Judged;
use crate::rules::Severity;

#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn severity(self, s: Severity) -> (&'static str, &'static str) {
        match (self.color, s) {
            (false, _) => ("", ""),
            (true, Severity::Error) => ("\x1b[1;31m", "\x1b[0m"),
            (true, Severity::Warning) => ("\x1b[1;33m", "\x1b[0m"),
        }
    }
}

/// `db02: error[hostdev-on-default-phb]: hostdev 0002:02:00.0 at 0000:00:05.0 is on ...`
pub fn write_findings(out: &mut impl Write, judged: &Judged, style: Style) -> io::Result<()> {
    for f in &judged.findings {
        let (on, off) = style.severity(f.severity());
        writeln!(
            out,
            "{}: {on}{}[{}]{off}: {}",
            judged.label(),
            f.severity(),
            f.rule.id,
            f.message
        )?;
    }
    Ok(())
}

/// `3 domains checked: 2 errors, 1 warning (2 domains rejected)`
pub fn write_summary(out: &mut impl Write, all: &[Judged], unreadable: usize) -> io::Result<()> {
    let count = |s: Severity| {
        all.iter()
            .flat_map(|j| &j.findings)
            .filter(|f| f.severity() == s)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let rejected = all
        .iter()
        .filter(|j| crate::rules::has_errors(&j.findings))
        .count();
    write!(
        out,
        "{} checked: {}, {}",
        plural(all.len(), "domain"),
        plural(errors, "error"),
        plural(warnings, "warning")
    )?;
    if rejected > 0 {
        write!(out, " ({} not compliant)", plural(rejected, "domain"))?;
    }
    if unreadable > 0 {
        write!(out, "; {} could not be read", plural(unreadable, "file"))?;
    }
    writeln!(out)?;
    if errors + warnings > 0 {
        writeln!(
            out,
            "'phbguard explain RULE' tells why a rule exists and how to fix it by hand"
        )?;
    }
    Ok(())
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
