//! Read a defined guest, fix it, and redefine it only if nobody changed it meanwhile.
//!
//! The definition is read with `VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE`: without
//! SECURE libvirt leaves VNC/SPICE passwords out of the XML (measured on libvirt 9.0: `virsh
//! dumpxml --inactive` drops `passwd`, `--security-info` keeps it), and redefining from such a
//! copy would erase them. libvirt has no compare-and-swap define, so [`redefine`] re-reads the
//! definition just before defining and refuses when it differs from what was fixed; the window
//! left is the one between that read and `virDomainDefineXML`.
//!
//! Used by `phbguard fix --domain` and by `phbguard watch`.

use std::fmt;

use phbguard_core::fix::{Fixed, InternalError, Options, fix};
use phbguard_core::host::HostFacts;
use phbguard_core::model::Domain as Definition;
use phbguard_core::{ParseError, parse_domain};
use sha2::{Digest, Sha256};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::sys;

/// How the persistent definition is read: inactive (not the live one), with secrets.
pub const READ_FLAGS: sys::virDomainXMLFlags = sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_SECURE;

/// Why a guest was not fixed or not redefined.
#[derive(Debug)]
pub enum Error {
    /// A libvirt call failed; the text says which and why.
    Libvirt(String),
    /// The guest has no persistent definition (a transient guest): defining one would make it
    /// persistent, which is not a fix.
    Transient(String),
    /// The guest is gone: undefined (or undefined and stopped) since it was looked up.
    Gone(String),
    /// libvirt's XML did not parse as a domain.
    BadXml(String, ParseError),
    /// The fixer failed on this input (a bug in phbguard).
    Internal(String, InternalError),
    /// The fix leaves error findings: nothing is defined.
    Unfixable(String, Vec<String>),
    /// The definition changed between reading and redefining; nothing was defined.
    ChangedMeanwhile(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Libvirt(what) => f.write_str(what),
            Error::Gone(name) => write!(f, "domain '{name}' is gone: it was undefined meanwhile"),
            Error::Transient(name) => write!(
                f,
                "domain '{name}' is transient (not defined): there is no persistent definition to fix"
            ),
            Error::BadXml(name, e) => write!(f, "domain '{name}': libvirt's XML: {e}"),
            Error::Internal(name, e) => write!(f, "domain '{name}': {e}"),
            Error::Unfixable(name, problems) => {
                write!(f, "domain '{name}' cannot be fixed: {}", problems.join("; "))
            }
            Error::ChangedMeanwhile(name) => write!(
                f,
                "domain '{name}' was redefined by someone else meanwhile; not redefined (run again)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// A fix of one guest's persistent definition, not yet applied.
#[derive(Debug)]
pub struct Proposal {
    pub name: String,
    /// The persistent definition as read, with secrets ([`READ_FLAGS`]).
    pub before: String,
    /// `before`, parsed.
    pub definition: Definition,
    /// The fixer's outcome; `fixed.output` is what would be defined.
    pub fixed: Fixed,
}

impl Proposal {
    /// The changes, one line each (`hostdev 0002:02:00.0: 0000:00:05.0 -> 0000:01:01.0`).
    pub fn changes(&self) -> Vec<String> {
        self.fixed
            .plan
            .changes
            .iter()
            .map(|c| c.describe(&self.definition))
            .collect()
    }

    /// Whether the fix keeps every error rule (else [`redefine`] refuses it).
    pub fn is_clean(&self) -> bool {
        self.fixed.is_clean()
    }

    /// Whether redefining would change anything.
    pub fn changes_definition(&self) -> bool {
        self.fixed.output != self.before
    }

    /// `sha256:HEX` of the change this proposal makes: the definition as read and the one that
    /// would be defined. The same digest means the same diff applied to the same definition, so
    /// a confirmation given for one shown diff (`fix --domain --if-digest`) cannot define
    /// anything else, whether the guest or the host facts the fix placed devices by changed.
    pub fn digest(&self) -> String {
        let mut sha = Sha256::new();
        // Lengths first: no split of the two texts gives another pair the same bytes.
        for text in [&self.before, &self.fixed.output] {
            sha.update((text.len() as u64).to_le_bytes());
            sha.update(text.as_bytes());
        }
        let hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// A unified diff from the current definition to the fixed one (empty when equal), with
    /// password values hidden: a fix never changes them, but a context line may show one, and
    /// the diff goes to terminals, JSON and the Cockpit page. The digest covers the real text.
    pub fn diff(&self) -> String {
        if !self.changes_definition() {
            return String::new();
        }
        let label = format!("{} (persistent definition)", self.name);
        phbguard_core::report::diff::unified(
            &label,
            &hide_passwords(&self.before),
            &hide_passwords(&self.fixed.output),
        )
    }
}

/// What a hidden password's value is shown as.
const HIDDEN: &str = "(hidden)";

/// `text` with the value of every `passwd` attribute replaced by [`HIDDEN`]. [`READ_FLAGS`]
/// makes libvirt include `<graphics passwd='...'>` (VNC, SPICE), the one secret its domain XML
/// carries in clear.
fn hide_passwords(text: &str) -> String {
    const NAME: &str = "passwd=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(NAME) {
        let (head, tail) = rest.split_at(at + NAME.len());
        out.push_str(head);
        rest = tail;
        let is_attribute = head[..at].ends_with(|c: char| c.is_ascii_whitespace());
        let Some(quote) = rest
            .chars()
            .next()
            .filter(|&q| is_attribute && (q == '\'' || q == '"'))
        else {
            continue;
        };
        let Some(len) = rest[1..].find(quote) else { break };
        out.push(quote);
        out.push_str(HIDDEN);
        out.push(quote);
        rest = &rest[len + 2..];
    }
    out.push_str(rest);
    out
}

/// What [`redefine`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to change: the definition already keeps the rules.
    Unchanged,
    /// Redefined; `after` is the definition libvirt holds now, read back with [`READ_FLAGS`].
    Redefined { after: String },
}

/// The persistent definition of `dom`, with secrets.
pub fn read_definition(dom: &Domain) -> Result<String, Error> {
    let name = dom.name().unwrap_or_default();
    let gone_or = |e: virt::error::Error, what: String| {
        if e.code().is(ErrorNumber::NoDomain) {
            Error::Gone(name.clone())
        } else {
            Error::Libvirt(format!("{what}: {e}"))
        }
    };
    match dom.is_persistent() {
        Ok(true) => {}
        Ok(false) => return Err(Error::Transient(name)),
        Err(e) => return Err(gone_or(e, format!("domain '{name}'"))),
    }
    dom.xml_desc(READ_FLAGS)
        .map_err(|e| gone_or(e, format!("cannot read the definition of domain '{name}'")))
}

/// [`read_definition`] of a guest already known to be persistent: the definition only, one
/// call to libvirt.
pub fn read_again(dom: &Domain) -> Result<String, Error> {
    dom.xml_desc(READ_FLAGS).map_err(|e| {
        let name = dom.name().unwrap_or_default();
        if e.code().is(ErrorNumber::NoDomain) {
            Error::Gone(name)
        } else {
            Error::Libvirt(format!("cannot read the definition of domain '{name}': {e}"))
        }
    })
}

/// Reads `dom`'s persistent definition and fixes it, judging with `host`. Defines nothing.
pub fn propose(dom: &Domain, host: &dyn HostFacts, options: Options) -> Result<Proposal, Error> {
    let before = read_definition(dom)?;
    let name = dom.name().unwrap_or_default();
    propose_from(name, before, host, options)
}

/// [`propose`] for a definition already read with [`READ_FLAGS`].
pub fn propose_from(
    name: String,
    before: String,
    host: &dyn HostFacts,
    options: Options,
) -> Result<Proposal, Error> {
    let definition = parse_domain(before.as_bytes()).map_err(|e| Error::BadXml(name.clone(), e))?;
    let fixed = fix(&before, &definition, host, options).map_err(|e| Error::Internal(name.clone(), e))?;
    Ok(Proposal {
        name,
        before,
        definition,
        fixed,
    })
}

/// Defines the fixed definition, if it changes anything, keeps the rules, and the guest's
/// definition is still the one the proposal was made from.
pub fn redefine(conn: &Connect, dom: &Domain, proposal: &Proposal) -> Result<Outcome, Error> {
    let name = &proposal.name;
    if !proposal.is_clean() {
        let problems = proposal
            .fixed
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect();
        return Err(Error::Unfixable(name.clone(), problems));
    }
    if !proposal.changes_definition() {
        return Ok(Outcome::Unchanged);
    }
    if read_definition(dom)? != proposal.before {
        return Err(Error::ChangedMeanwhile(name.clone()));
    }
    let defined = conn
        .define_domain_xml(&proposal.fixed.output)
        .map_err(|e| Error::Libvirt(format!("libvirt refused the fixed definition of '{name}': {e}")))?;
    let after = read_definition(&defined)?;
    Ok(Outcome::Redefined { after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_values_are_hidden_and_nothing_else_changes() {
        let xml = "<graphics type='vnc' passwd='s3cret' port='-1'/>\n\
                   <graphics type=\"spice\"\tpasswd=\"p'w\"/>\n\
                   <description>mypasswd='kept' passwd=bare</description>\n";
        assert_eq!(
            hide_passwords(xml),
            "<graphics type='vnc' passwd='(hidden)' port='-1'/>\n\
             <graphics type=\"spice\"\tpasswd=\"(hidden)\"/>\n\
             <description>mypasswd='kept' passwd=bare</description>\n"
        );
        assert_eq!(
            hide_passwords("<a passwd='unterminated"),
            "<a passwd='unterminated"
        );
        assert_eq!(hide_passwords(""), "");
    }
}
