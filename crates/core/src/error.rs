//! What can be wrong with an input document. Each variant prints as one line that names
//! the element and the value, so that an admin can find it without reading code.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    NotUtf8 {
        offset: usize,
    },
    Malformed {
        offset: u64,
        detail: String,
    },
    Empty,
    Truncated {
        open: String,
    },
    NotDomain {
        root: String,
    },
    BadNumber {
        element: String,
        attribute: String,
        value: String,
        max: u64,
    },
    BadNodeset {
        value: String,
    },
    MissingHostAddress {
        element: String,
    },
    DuplicateController {
        index: u32,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 { offset } => write!(f, "not UTF-8 text (invalid byte at offset {offset})"),
            Self::Malformed { offset, detail } => {
                write!(f, "malformed XML at byte {offset}: {}", Shown(detail))
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
                max,
            } => write!(
                f,
                "<{element}> {attribute}='{}' is not a number from 0 to {max:#x} (decimal or 0x-prefixed hex)",
                Shown(value)
            ),
            Self::BadNodeset { value } => {
                write!(f, "<memnode> nodeset='{}' is not a valid node set", Shown(value))
            }
            Self::MissingHostAddress { element } => {
                write!(
                    f,
                    "<{element}> has no <source><address> naming the host PCI device"
                )
            }
            Self::DuplicateController { index } => {
                write!(f, "two <controller type='pci'> elements have index {index}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// A value from the input as an error line shows it: control characters escaped so the line
/// stays one line, and cut after [`Shown::MAX_CHARS`] characters so that a ten-megabyte
/// attribute does not become a ten-megabyte message.
struct Shown<'a>(&'a str);

impl Shown<'_> {
    const MAX_CHARS: usize = 64;
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(Self::MAX_CHARS) {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if let Some((cut, _)) = chars.next() {
            write!(f, "... ({} more bytes)", self.0.len() - cut)?;
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
            max: 0xff,
        };
        let text = e.to_string();
        assert!(text.len() < 200, "{text}");
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
