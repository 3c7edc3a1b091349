//! Turns a [`Plan`] into byte edits of the document it was made from. New text is written the
//! way libvirt formats it (`bus='0x02'`, two-space steps), in the quoting and indentation the
//! surrounding document already uses.

use std::fmt;

use crate::edit::{Edit, indent_before, line_removal, set_attributes, start_tag};
use crate::model::{Domain, PciAddr};
use crate::number::{Base, parse_uint};
use crate::topology::PHB_MODEL_NAME;

use super::plan::{Change, Plan};

/// Why a plan could not be rendered: the document does not look like what was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// No start tag where the parser saw an element begin.
    NoStartTag {
        /// The byte offset.
        at: usize,
    },
    /// The element at this byte has no end tag to put a child before.
    NoClosingTag {
        /// The byte offset.
        at: usize,
    },
    /// A controller the plan renumbers has no `<target>`.
    NoTarget {
        /// Its position in the domain's devices.
        device: usize,
    },
    /// A PHB the plan gives the right model name has no `<model>`.
    NoModel {
        /// Its position in the domain's devices.
        device: usize,
    },
    /// The domain has no device to place a new controller after.
    NoDevices,
    /// The plan raises a `<hard_limit>` the domain does not have.
    NoHardLimit,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStartTag { at } => write!(f, "no start tag at byte {at}"),
            Self::NoClosingTag { at } => write!(f, "element at byte {at} has no closing tag"),
            Self::NoTarget { device } => write!(f, "device {device} has no <target>"),
            Self::NoModel { device } => write!(f, "device {device} has no <model>"),
            Self::NoDevices => f.write_str("no device to place a new controller after"),
            Self::NoHardLimit => f.write_str("no <memtune><hard_limit> to raise"),
        }
    }
}

impl std::error::Error for RenderError {}

pub fn edits(input: &str, domain: &Domain, plan: &Plan) -> Result<Vec<Edit>, RenderError> {
    let mut edits = Vec::new();
    for change in &plan.changes {
        match *change {
            Change::Move { device, from, to } => {
                let dev = &domain.devices[device];
                // An unassigned `<address type='pci'/>` is filled in rather than joined by a
                // second one (libvirt would read only the first).
                let pci_span = dev.address_span.filter(|span| {
                    from.is_some()
                        || start_tag(input, span.start).is_some_and(|(attrs, _)| {
                            attrs
                                .iter()
                                .any(|a| a.name == "type" && &input[a.value.start..a.value.end] == "pci")
                        })
                });
                match pci_span {
                    Some(span) => edits.extend(
                        set_attributes(input, span.start, &address_attributes(to), same_number)
                            .ok_or_else(|| bad_tag(span.start))?,
                    ),
                    _ => edits.push(new_address(input, dev.span, to)?),
                }
            }
            Change::Retarget { device, to, .. } => {
                let span = match &domain.devices[device].kind {
                    crate::model::DeviceKind::PciController(c) => c.target_span,
                    _ => None,
                }
                .ok_or(RenderError::NoTarget { device })?;
                edits.extend(
                    set_attributes(input, span.start, &[("index", to.to_string())], same_number)
                        .ok_or_else(|| bad_tag(span.start))?,
                );
            }
            Change::SetPhbModel { device, .. } => {
                let span = match &domain.devices[device].kind {
                    crate::model::DeviceKind::PciController(c) => c.model_span,
                    _ => None,
                }
                .ok_or(RenderError::NoModel { device })?;
                edits.extend(
                    set_attributes(
                        input,
                        span.start,
                        &[("name", PHB_MODEL_NAME.to_string())],
                        |a, b| a == b,
                    )
                    .ok_or_else(|| bad_tag(span.start))?,
                );
            }
            Change::RemoveController { device, .. } => {
                edits.push(Edit::delete(line_removal(input, domain.devices[device].span)));
            }
            Change::AddPhb { index, target, node } | Change::AddSparePhb { index, target, node } => {
                edits.push(new_phb(input, domain, index, target, node)?)
            }
            Change::RaiseHardLimit { to_kib, .. } => {
                let limit = domain.memory.hard_limit.ok_or(RenderError::NoHardLimit)?;
                let q = quote_of(input, limit.span.start);
                edits.push(Edit::replace(
                    limit.span,
                    format!("<hard_limit unit={q}KiB{q}>{to_kib}</hard_limit>"),
                ));
            }
        }
    }
    Ok(edits)
}

fn bad_tag(at: usize) -> RenderError {
    RenderError::NoStartTag { at }
}

fn same_number(written: &str, wanted: &str) -> bool {
    // Every attribute the renderer writes (address fields, <target index>) is read in base 0.
    let read = |s| parse_uint(s, Base::Auto, u64::MAX);
    read(written).is_some() && read(written) == read(wanted)
}

/// libvirt's spelling of a guest address (`virPCIDeviceAddressFormat` in the domain XML).
fn address_attributes(to: PciAddr) -> [(&'static str, String); 4] {
    [
        ("domain", format!("0x{:04x}", to.domain)),
        ("bus", format!("0x{:02x}", to.bus)),
        ("slot", format!("0x{:02x}", to.slot)),
        ("function", format!("0x{:x}", to.function)),
    ]
}

/// The quote character the element at `start` uses, `'` (libvirt's) when it has none.
fn quote_of(input: &str, start: usize) -> char {
    start_tag(input, start)
        .and_then(|(attrs, _)| attrs.first().map(|a| a.quote))
        .unwrap_or('\'')
}

/// The document's line ending, from its first line: new lines in a CRLF file end in CRLF.
fn line_ending(input: &str) -> &'static str {
    match input.find('\n') {
        Some(at) if input[..at].ends_with('\r') => "\r\n",
        _ => "\n",
    }
}

/// One indentation step in the style of `indent`.
fn step(indent: &str) -> &'static str {
    if indent.contains('\t') { "\t" } else { "  " }
}

/// An `<address>` for a device that had none, as its last child.
fn new_address(input: &str, span: crate::model::Span, to: PciAddr) -> Result<Edit, RenderError> {
    let q = quote_of(input, span.start);
    let attrs: String = address_attributes(to)
        .iter()
        .map(|(name, value)| format!(" {name}={q}{value}{q}"))
        .collect();
    let element = format!("<address type={q}pci{q}{attrs}/>");
    let element_text = &input[span.start..span.end];
    let close = element_text
        .rfind("</")
        .map(|at| span.start + at)
        .ok_or(RenderError::NoClosingTag { at: span.start })?;
    Ok(match indent_before(input, close) {
        Some(indent) => {
            let line_start = close - indent.len();
            Edit::insert(
                line_start,
                format!("{indent}{}{element}{}", step(indent), line_ending(input)),
            )
        }
        None => Edit::insert(close, element),
    })
}

/// A new PHB controller, placed after the last PCI controller (else after the last device),
/// where `virsh dumpxml` would list it; in a `<devices>` with nothing in it, as its first child.
fn new_phb(
    input: &str,
    domain: &Domain,
    index: u32,
    target: u32,
    node: Option<u32>,
) -> Result<Edit, RenderError> {
    let anchor = domain
        .pci_controllers()
        .map(|(i, _)| i)
        .last()
        .or_else(|| domain.devices.len().checked_sub(1))
        .map(|i| domain.devices[i].span);
    let Some(anchor) = anchor else {
        return first_device(input, domain, index, target, node);
    };
    let q = quote_of(input, anchor.start);
    let indent = indent_before(input, anchor.start).unwrap_or("    ");
    Ok(Edit::insert(
        anchor.end,
        phb_text(input, indent, q, index, target, node),
    ))
}

/// A new PHB as the only child of an empty `<devices>`: on a line of its own before
/// `</devices>`, one step in from it, in libvirt's quotes.
fn first_device(
    input: &str,
    domain: &Domain,
    index: u32,
    target: u32,
    node: Option<u32>,
) -> Result<Edit, RenderError> {
    let close = domain.devices_close.ok_or(RenderError::NoDevices)?;
    let nl = line_ending(input);
    Ok(match indent_before(input, close) {
        Some(outer) => {
            let indent = format!("{outer}{}", step(outer));
            let text = phb_text(input, &indent, '\'', index, target, node);
            Edit::insert(close - outer.len(), format!("{}{nl}", &text[nl.len()..]))
        }
        // `<devices></devices>` on one line: in between, as it is.
        None => Edit::insert(
            close,
            phb_text(input, "", '\'', index, target, node)[nl.len()..].to_string(),
        ),
    })
}

/// A PHB's text, starting with a line ending, each line starting with `indent`.
fn phb_text(input: &str, indent: &str, q: char, index: u32, target: u32, node: Option<u32>) -> String {
    let s = step(indent);
    let nl = line_ending(input);
    let target = match node {
        Some(node) => format!(
            "{indent}{s}<target index={q}{target}{q}>{nl}{indent}{s}{s}<node>{node}</node>{nl}{indent}{s}</target>"
        ),
        None => format!("{indent}{s}<target index={q}{target}{q}/>"),
    };
    format!(
        "{nl}{indent}<controller type={q}pci{q} index={q}{index}{q} model={q}pci-root{q}>{nl}\
         {indent}{s}<model name={q}{PHB_MODEL_NAME}{q}/>{nl}{target}{nl}{indent}</controller>"
    )
}
