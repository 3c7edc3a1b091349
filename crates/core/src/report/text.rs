//! The report for people: one line per finding, a summary, colour only on a terminal.

use std::io::{self, Write};

use super::Judged;
use crate::escape::controls;
use crate::rules::Severity;
/// How the text report looks.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Severities in colour (on a terminal, unless `NO_COLOR`).
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

/// `db02.xml:14: error[hostdev-on-default-phb]: hostdev 0002:02:00.0 at 0000:00:05.0 is on ...`
pub fn write_findings(out: &mut impl Write, judged: &Judged, style: Style) -> io::Result<()> {
    for f in &judged.findings {
        let (on, off) = style.severity(f.severity());
        writeln!(
            out,
            "{}: {on}{}[{}]{off}: {}",
            controls(&judged.location(f.line)),
            f.severity(),
            f.rule.id,
            controls(&f.message)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Facts;
    use crate::host::StaticHost;
    use crate::parse_domain;

    fn judged() -> Judged {
        let xml = "<domain><name>db02</name><os><type arch='ppc64le' machine='pseries'>hvm</type></os>\
                   \n\n<devices><hostdev mode='subsystem' type='pci'><source><address domain='0x0002' bus='0x02' \
                   slot='0x00' function='0x0'/></source><address type='pci' bus='0x00' slot='0x05'/></hostdev>\
                   </devices></domain>";
        let domain = parse_domain(xml.as_bytes()).unwrap();
        Judged::new("db02.xml", &domain, &Facts::gather(&domain, &StaticHost::new()))
    }

    #[test]
    fn colour_only_when_asked_for() {
        let j = judged();
        let mut plain = Vec::new();
        write_findings(&mut plain, &j, Style { color: false }).unwrap();
        let plain = String::from_utf8(plain).unwrap();
        assert!(
            plain.starts_with(
                "db02.xml:3: error[hostdev-on-default-phb]: hostdev 0002:02:00.0 at 0000:00:05.0 "
            )
        );
        assert!(!plain.contains('\x1b'));

        let mut coloured = Vec::new();
        write_findings(&mut coloured, &j, Style { color: true }).unwrap();
        let coloured = String::from_utf8(coloured).unwrap();
        assert!(
            coloured.starts_with("db02.xml:3: \x1b[1;31merror[hostdev-on-default-phb]\x1b[0m: hostdev"),
            "{coloured:?}"
        );
    }

    #[test]
    fn summary_counts_errors_warnings_and_unreadable_files() {
        let mut out = Vec::new();
        write_summary(&mut out, &[judged()], 2).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "1 domain checked: 1 error, 1 warning (1 domain not compliant); 2 files could not be read\n"
            ),
            "{text}"
        );
    }
}
