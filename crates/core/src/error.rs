//! What can be wrong with an input document. Each variant prints as one line that names
//! the element and the value, so that an admin can find it without reading code.

use std::fmt;
/// Why a document is not a domain phbguard can judge; each prints as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The input is not UTF-8.
    NotUtf8 {
        /// The first byte that is not.
        offset: usize,
    },
    /// quick-xml refused the document.
    Malformed {
        /// Where it stopped.
        offset: u64,
        /// The line of `offset`, once [`ParseError::located`] has read the document for it.
        line: Option<usize>,
        /// What it said.
        detail: String,
    },
    /// No root element at all.
    Empty,
    /// The document ends inside an element.
    Truncated {
        /// The element left open.
        open: String,
    },
    /// The root element is not `<domain>`.
    NotDomain {
        /// The root element's name.
        root: String,
    },
    /// A numeric attribute libvirt would refuse.
    BadNumber {
        /// The element, with the path to it: `hostdev><address`.
        element: String,
        /// The attribute.
        attribute: String,
        /// Its value as written.
        value: String,
        /// How libvirt reads this attribute.
        base: crate::number::Base,
        /// The largest value allowed.
        max: u64,
    },
    /// A `<memnode nodeset>` that is not a node set.
    BadNodeset {
        /// The value as written.
        value: String,
    },
    /// A PCI hostdev without `<source><address>`.
    MissingHostAddress {
        /// `hostdev` or `interface`.
        element: String,
    },
    /// A memory size libvirt would refuse.
    BadSize {
        /// The element, with the path to it: `memtune><hard_limit`.
        element: String,
        /// Its text as written.
        value: String,
        /// Its `unit`, as written.
        unit: Option<String>,
        /// What is wrong with it.
        why: crate::number::SizeError,
    },
    /// An attribute whose value libvirt does not know.
    BadValue {
        /// The element.
        element: String,
        /// The attribute.
        attribute: String,
        /// Its value as written.
        value: String,
        /// What libvirt takes.
        expected: &'static str,
    },
    /// Two PCI controllers with one index.
    DuplicateController {
        /// The index both have.
        index: u32,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 { offset } => write!(f, "not UTF-8 text (invalid byte at offset {offset})"),
            Self::Malformed {
                offset,
                line: Some(line),
                detail,
            } => write!(
                f,
                "malformed XML at line {line} (byte {offset}): {}",
                Detail(detail)
            ),
            Self::Malformed { offset, detail, .. } => {
                write!(f, "malformed XML at byte {offset}: {}", Detail(detail))
            }
            Self::Empty => f.write_str("empty document: no root element"),
            Self::Truncated { open } => write!(f, "truncated XML: <{}> is never closed", Shown(open)),
            Self::NotDomain { root } => {
                write!(
                    f,
                    "root element is <{}>, expected a libvirt <domain>",
                    Shown(root)
                )
            }
            Self::BadNumber {
                element,
                attribute,
                value,
                base,
                max,
            } => match base {
                crate::number::Base::Auto => write!(
                    f,
                    "<{element}> {attribute}='{}' is not a number from 0 to {max:#x} \
                     (libvirt reads it as decimal, 0x-prefixed hex or 0-prefixed octal)",
                    Shown(value)
                ),
                crate::number::Base::Decimal => write!(
                    f,
                    "<{element}> {attribute}='{}' is not a number from 0 to {max} \
                     (libvirt reads it as decimal only)",
                    Shown(value)
                ),
            },
            Self::BadNodeset { value } => {
                write!(f, "<memnode> nodeset='{}' is not a valid node set", Shown(value))
            }
            Self::MissingHostAddress { element } => {
                write!(
                    f,
                    "<{element}> has no <source><address> naming the host PCI device"
                )
            }
            Self::BadSize {
                element,
                value,
                unit,
                why,
            } => {
                let unit = unit
                    .as_deref()
                    .map(|u| format!(" unit='{}'", Shown(u)))
                    .unwrap_or_default();
                let why = match why {
                    crate::number::SizeError::NotANumber => "is not a whole decimal number",
                    crate::number::SizeError::UnknownUnit => {
                        "has a unit libvirt does not know (b, KiB, MiB, GiB, TiB, KB, MB, ...)"
                    }
                    crate::number::SizeError::TooLarge => "is larger than libvirt accepts",
                };
                write!(f, "<{element}{unit}> '{}' {why}", Shown(value))
            }
            Self::BadValue {
                element,
                attribute,
                value,
                expected,
            } => write!(f, "<{element}> {attribute}='{}' is not {expected}", Shown(value)),
            Self::DuplicateController { index } => {
                write!(f, "two <controller type='pci'> elements have index {index}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The error with the line of its byte offset in `input`, the document it was found in.
    pub fn located(self, input: &[u8]) -> ParseError {
        match self {
            Self::Malformed {
                offset,
                line: None,
                detail,
            } => {
                let before = &input[..(offset as usize).min(input.len())];
                let line = Some(1 + memchr::memchr_iter(b'\n', before).count());
                Self::Malformed { offset, line, detail }
            }
            e => e,
        }
    }
}

/// What the XML reader said: its own words, which quote the input (element names), so cut
/// too, but later than a value.
struct Detail<'a>(&'a str);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        shown(f, self.0, 4 * Shown::MAX_CHARS)
    }
}

/// A value from the input as an error line shows it: control characters escaped so the line
/// stays one line, and cut after [`Shown::MAX_CHARS`] characters so that a ten-megabyte
/// attribute does not become a ten-megabyte message.
struct Shown<'a>(&'a str);

impl Shown<'_> {
    const MAX_CHARS: usize = 64;
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        shown(f, self.0, Self::MAX_CHARS)
    }
}

/// `text` with control characters escaped, cut after `max` characters.
fn shown(f: &mut fmt::Formatter<'_>, text: &str, max: usize) -> fmt::Result {
    let mut chars = text.char_indices();
    for (_, c) in chars.by_ref().take(max) {
        crate::escape::write_char(f, c)?;
    }
    if let Some((cut, _)) = chars.next() {
        write!(f, "... ({} more bytes)", text.len() - cut)?;
    }
    Ok(())
}

/// Shows an error with its causes, `outer: inner: innermost`, as anyhow's `{:#}` does: for the
/// hook, which reports library errors without anyhow.
pub struct Chain<'e>(pub &'e (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shown_on_one_short_line() {
        let e = ParseError::BadNumber {
            element: "hostdev><address".into(),
            attribute: "bus".into(),
            value: "9".repeat(1 << 20),
            base: crate::number::Base::Auto,
            max: 0xff,
        };
        let text = e.to_string();
        assert!(text.len() < 300, "{text}");
        assert!(
            text.contains(&format!(
                "'{}... ({} more bytes)'",
                "9".repeat(64),
                (1 << 20) - 64
            )),
            "{text}"
        );
        let e = ParseError::BadNodeset {
            value: "1\n2\r".into(),
        };
        assert_eq!(
            e.to_string(),
            "<memnode> nodeset='1\\n2\\r' is not a valid node set"
        );
        let short = ParseError::NotDomain {
            root: "dömain".into(),
        };
        assert_eq!(
            short.to_string(),
            "root element is <dömain>, expected a libvirt <domain>"
        );
    }
}
