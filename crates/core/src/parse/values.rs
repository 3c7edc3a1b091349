//! The values the parser reads from attributes: an element's attributes, numbers in the base
//! libvirt reads each in, and PCI addresses with libvirt's range checks.

use std::borrow::Cow;

use quick_xml::XmlVersion;
use quick_xml::events::attributes::Attribute;
use quick_xml::name::QName;

use crate::error::ParseError;
use crate::model::PciAddr;
use crate::number::{Base, parse_uint};
use crate::start_tag::{self, Attr};

/// An element's attributes, located once by [`start_tag::read`]; a value is unescaped only
/// when asked for, and borrowed from the input unless it holds a reference or a line break.
pub(super) struct Attrs<'a> {
    source: &'a str,
    list: Vec<Attr<'a>>,
}

impl<'a> Attrs<'a> {
    /// No attributes: for an element nothing is read from.
    pub(super) fn none(source: &'a str) -> Self {
        Attrs {
            source,
            list: Vec::new(),
        }
    }

    /// The attributes of the start tag at `tag_start` in `source`.
    pub(super) fn of(source: &'a str, tag_start: usize) -> Result<Self, ParseError> {
        // One allocation: libvirt's elements carry a handful of attributes.
        let mut list = Vec::with_capacity(8);
        start_tag::read(source, tag_start, &mut list).map_err(|e| ParseError::Malformed {
            line: None,
            offset: e.offset as u64,
            detail: e.detail,
        })?;
        let attrs = Attrs { source, list };
        // libxml2 (so libvirt) refuses an unknown or broken reference in any attribute, read
        // by the rules or not.
        for a in attrs.list.iter().filter(|a| !a.plain) {
            if attrs.raw(a).as_bytes().contains(&b'&') {
                attrs.decode(a).map_err(|err| ParseError::Malformed {
                    line: None,
                    offset: a.value.start as u64,
                    detail: err.to_string(),
                })?;
            }
        }
        Ok(attrs)
    }

    fn raw(&self, a: &Attr<'a>) -> &'a str {
        &self.source[a.value.start..a.value.end]
    }

    fn decode(&self, a: &Attr<'a>) -> quick_xml::Result<Cow<'a, str>> {
        Attribute {
            key: QName(a.name),
            value: Cow::Borrowed(self.raw(a)),
        }
        .normalized_value(XmlVersion::Implicit1_0)
    }

    /// The value of attribute `name`, unescaped and normalized as XML says.
    pub(super) fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.value(self.list.iter().find(|a| a.name == name)?)
    }

    /// The value of `a`, one of this element's attributes.
    fn value(&self, a: &Attr<'a>) -> Option<Cow<'a, str>> {
        // Nearly every value has nothing to unescape or normalize: borrow it as it is.
        if a.plain {
            return Some(Cow::Borrowed(self.raw(a)));
        }
        // Cannot fail: `of` decoded every value that holds a reference.
        self.decode(a).ok()
    }

    pub(super) fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(Cow::into_owned)
    }
}

/// Where a number was read, spelled out only when it is bad.
#[derive(Clone, Copy)]
pub(super) struct At<'a> {
    element: &'a str,
    tail: &'static str,
}

impl<'a> At<'a> {
    pub(super) fn new(element: &'a str, tail: &'static str) -> Self {
        At { element, tail }
    }
}

pub(super) fn number(
    at: At<'_>,
    attribute: &str,
    value: &str,
    base: Base,
    max: u64,
) -> Result<u64, ParseError> {
    parse_uint(value, base, max).ok_or_else(|| ParseError::BadNumber {
        element: format!("{}{}", at.element, at.tail),
        attribute: attribute.into(),
        value: value.into(),
        base,
        max,
    })
}

/// The four numbers of an `<address>` element as libvirt reads them
/// (`virPCIDeviceAddressParseXML`: base 0, absent is 0), before their ranges are checked.
pub(super) struct PciFields<'v> {
    values: [(&'static str, Option<Cow<'v, str>>, u64); 4],
}

pub(super) fn pci_fields<'v>(attrs: &Attrs<'v>, at: At<'_>) -> Result<PciFields<'v>, ParseError> {
    let mut values = [
        ("domain", None, 0),
        ("bus", None, 0),
        ("slot", None, 0),
        ("function", None, 0),
    ];
    // Read as any 32-bit number (libvirt checks no range of an empty address, so
    // `function='9'` beside zeros is fine), but a value that is no number at all is reported
    // against its field's range: `bus='zz'` is "not a number from 0 to 0xff". One pass over
    // the attributes, not a lookup per field.
    for a in &attrs.list {
        let field = match a.name {
            "domain" => 0,
            "bus" => 1,
            "slot" => 2,
            "function" => 3,
            _ => continue,
        };
        let ((name, text, value), max) = (&mut values[field], PciAddr::FIELD_MAX[field]);
        if let Some(v) = attrs.value(a) {
            *value = number(at, name, &v, Base::Auto, u64::from(u32::MAX)).map_err(|e| match e {
                ParseError::BadNumber {
                    element,
                    attribute,
                    value,
                    base,
                    ..
                } => ParseError::BadNumber {
                    element,
                    attribute,
                    value,
                    base,
                    max,
                },
                other => other,
            })?;
            *text = Some(v);
        }
    }
    Ok(PciFields { values })
}

/// Checks the ranges of [`PciAddr::FIELD_MAX`].
pub(super) fn valid_pci_addr(fields: PciFields<'_>, at: At<'_>) -> Result<PciAddr, ParseError> {
    let values = fields.values.each_ref().map(|(_, _, value)| *value);
    PciAddr::from_fields(values).map_err(|i| {
        let (name, text, _) = &fields.values[i];
        ParseError::BadNumber {
            element: format!("{}{}", at.element, at.tail),
            attribute: (*name).into(),
            value: text.as_deref().unwrap_or_default().to_owned(),
            base: Base::Auto,
            max: PciAddr::FIELD_MAX[i],
        }
    })
}

/// A device's guest address. One whose domain, bus and slot are all 0 (`<address
/// type='pci'/>` among them) is no address: libvirt assigns the device a slot of its own
/// (`virPCIDeviceAddressIsEmpty`, `virDeviceInfoPCIAddressIsWanted`) and checks nothing else.
pub(super) fn guest_pci_addr(attrs: &Attrs<'_>, at: At<'_>) -> Result<Option<PciAddr>, ParseError> {
    let fields = pci_fields(attrs, at)?;
    if fields.values[..3].iter().all(|(_, _, v)| *v == 0) {
        return Ok(None);
    }
    valid_pci_addr(fields, at).map(Some)
}
