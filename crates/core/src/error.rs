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
        /// How libvirt reads this attribute.
        base: crate::number::Base,
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
            Self::Malformed { offset, detail } => write!(f, "malformed XML at byte {offset}: {detail}"),
            Self::Empty => f.write_str("empty document: no root element"),
            Self::Truncated { open } => write!(f, "truncated XML: <{open}> is never closed"),
            Self::NotDomain { root } => {
                write!(f, "root element is <{root}>, expected a libvirt <domain>")
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
                    "<{element}> {attribute}='{value}' is not a number from 0 to {max:#x} \
                     (libvirt reads it as decimal, 0x-prefixed hex or 0-prefixed octal)"
                ),
                crate::number::Base::Decimal => write!(
                    f,
                    "<{element}> {attribute}='{value}' is not a number from 0 to {max} \
                     (libvirt reads it as decimal only)"
                ),
            },
            Self::BadNodeset { value } => write!(f, "<memnode> nodeset='{value}' is not a valid node set"),
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
