//! A device element, from its start tag to its end: its attributes, the children the rules and
//! the rewriter read, and what it is (hostdev, PCI controller, other). Then, once the whole
//! definition is read, the indexes libvirt gives PCI controllers written without one.

use crate::error::ParseError;
use crate::model::{Device, DeviceKind, Domain, HostdevForm, PciAddr, PciController, Span};
use crate::number::Base;

use super::values::{At, Attrs, guest_pci_addr, number, pci_fields, valid_pci_addr};
use super::{MAX_CONTROLLER_INDEX, Parser, Tag};

/// A device under construction, between its start and end tags.
pub(super) struct DeviceBuilder {
    pub(super) element: String,
    line: usize,
    type_attr: Option<String>,
    model_attr: Option<String>,
    mode_attr: Option<String>,
    managed: bool,
    index_attr: Option<u32>,
    start: usize,
    address: Option<PciAddr>,
    address_span: Option<Span>,
    host: Option<PciAddr>,
    model_name: Option<String>,
    model_span: Option<Span>,
    target_index: Option<u32>,
    target_span: Option<Span>,
    pub(super) numa_node: Option<u32>,
    target_dev: Option<String>,
    mac: Option<String>,
    alias: Option<String>,
    network: Option<String>,
}

impl Parser<'_> {
    /// A child of a device's `<source>`: a hostdev's host address.
    pub(super) fn source_child(&mut self, name: &str, span: Span) -> Result<Tag, ParseError> {
        let dev = self.device.as_mut().expect("inside a device");
        // The first <address> is the one libvirt reads (virXPathNode).
        if name == "address" && dev.host.is_none() {
            let at = At::new(&dev.element, "><source><address");
            let attrs = Attrs::of(self.source, span.start)?;
            // A host address names a real device: 0000:00:00.0 is one, not "unset".
            dev.host = Some(valid_pci_addr(pci_fields(&attrs, at)?, at)?);
        }
        Ok(Tag::Skip)
    }

    /// A child of a device element: what of it the rules and the rewriter need.
    pub(super) fn device_child(&mut self, name: &str, span: Span) -> Result<Tag, ParseError> {
        let dev = self.device.as_mut().expect("inside a device");
        let interesting = matches!(name, "address" | "model" | "target" | "mac" | "alias")
            || (name == "source" && dev.element == "interface");
        let attrs = if interesting {
            Attrs::of(self.source, span.start)?
        } else {
            Attrs::none(self.source)
        };
        Ok(match name {
            // libvirt reads a device's first <address> child and ignores the others
            // (virDomainDeviceInfoParseXML takes the first element named address).
            "address" if dev.address_span.is_none() => {
                dev.address_span = Some(span);
                if attrs.get("type").as_deref() == Some("pci") {
                    dev.address = guest_pci_addr(&attrs, At::new(&dev.element, "><address"))?;
                }
                Tag::Skip
            }
            "source" => {
                if dev.type_attr.as_deref() == Some("network") {
                    dev.network = attrs.owned("network");
                }
                Tag::DeviceSource
            }
            // The first <model> is the one libvirt reads.
            "model" if dev.model_span.is_none() => {
                dev.model_name = attrs.owned("name");
                dev.model_span = Some(span);
                Tag::Skip
            }
            "target" => {
                dev.target_dev = attrs.owned("dev");
                dev.target_span = Some(span);
                // Only a controller's target has an index (a PHB's number in the guest).
                if dev.element == "controller"
                    && let Some(v) = attrs.get("index")
                {
                    let at = At::new(&dev.element, "><target");
                    dev.target_index = Some(number(at, "index", &v, Base::Auto, u64::from(u32::MAX))? as u32);
                }
                Tag::DeviceTarget
            }
            "mac" => {
                dev.mac = attrs.owned("address");
                Tag::Skip
            }
            "alias" => {
                dev.alias = attrs.owned("name");
                Tag::Skip
            }
            _ => Tag::Skip,
        })
    }
}

impl DeviceBuilder {
    pub(super) fn new(source: &str, element: &str, start: usize, line: usize) -> Result<Self, ParseError> {
        let element = element.to_string();
        let attrs = Attrs::of(source, start)?;
        // Only a controller's index is a number libvirt reads (base 10, virXMLPropInt).
        let index_attr = match attrs.get("index").filter(|_| element == "controller") {
            Some(v) => {
                let max = if attrs.get("type").as_deref() == Some("pci") {
                    MAX_CONTROLLER_INDEX
                } else {
                    u64::from(u32::MAX)
                };
                Some(number(At::new(&element, ""), "index", &v, Base::Decimal, max)? as u32)
            }
            None => None,
        };
        // virXMLPropTristateBool: yes or no, anything else is refused; absent is no.
        let managed = match attrs.get("managed").as_deref() {
            None | Some("no") => false,
            Some("yes") => true,
            Some(other) => {
                return Err(ParseError::BadValue {
                    element: element.clone(),
                    attribute: "managed".into(),
                    value: other.to_string(),
                    expected: "yes or no",
                });
            }
        };
        Ok(DeviceBuilder {
            type_attr: attrs.owned("type"),
            model_attr: attrs.owned("model"),
            mode_attr: attrs.owned("mode"),
            managed,
            index_attr,
            element,
            start,
            line,
            address: None,
            address_span: None,
            host: None,
            model_name: None,
            model_span: None,
            target_index: None,
            target_span: None,
            numa_node: None,
            target_dev: None,
            mac: None,
            alias: None,
            network: None,
        })
    }

    pub(super) fn build(self, end: usize) -> Result<Device, ParseError> {
        let ty = self.type_attr.as_deref();
        let is_hostdev = match self.element.as_str() {
            // libvirt's default hostdev mode is 'subsystem'.
            "hostdev" => ty == Some("pci") && matches!(self.mode_attr.as_deref(), None | Some("subsystem")),
            "interface" => ty == Some("hostdev"),
            _ => false,
        };
        let kind = if is_hostdev {
            let host = self.host.ok_or_else(|| ParseError::MissingHostAddress {
                element: format!("{} type='{}'", self.element, ty.unwrap_or_default()),
            })?;
            let form = if self.element == "hostdev" {
                HostdevForm::Hostdev
            } else {
                HostdevForm::Interface
            };
            DeviceKind::Hostdev {
                host,
                form,
                managed: self.managed,
            }
        } else if self.element == "controller" && ty == Some("pci") {
            if let Some(index) = self.index_attr
                && u64::from(index) > MAX_CONTROLLER_INDEX
            {
                return Err(ParseError::BadNumber {
                    element: "controller type='pci'".into(),
                    attribute: "index".into(),
                    value: index.to_string(),
                    base: Base::Decimal,
                    max: MAX_CONTROLLER_INDEX,
                });
            }
            DeviceKind::PciController(PciController {
                index: self.index_attr.unwrap_or(0),
                index_implied: self.index_attr.is_none(),
                model: self.model_attr.clone(),
                model_name: self.model_name,
                model_span: self.model_span,
                target_index: self.target_index,
                target_span: self.target_span,
                numa_node: self.numa_node,
            })
        } else if self.element == "controller" {
            DeviceKind::Controller {
                index: self.index_attr,
            }
        } else {
            DeviceKind::Other
        };
        let label = match self.element.as_str() {
            "disk" => self.target_dev,
            "interface" => self.mac,
            _ => None,
        }
        .or_else(|| self.alias.clone());
        Ok(Device {
            element: self.element,
            type_attr: self.type_attr,
            model_attr: self.model_attr,
            label,
            alias: self.alias,
            network: self.network,
            kind,
            address: self.address,
            address_span: self.address_span,
            span: Span {
                start: self.start,
                end,
            },
            line: self.line,
        })
    }
}

/// libvirt gives an index-less PCI controller the lowest index no other one uses,
/// after the whole definition is read (`virDomainControllerFindUnusedIndex`).
pub(super) fn assign_controller_indexes(domain: &mut Domain) -> Result<(), ParseError> {
    let mut used = [false; MAX_CONTROLLER_INDEX as usize + 1];
    for (_, c) in domain.pci_controllers() {
        if !c.index_implied {
            let slot = &mut used[c.index as usize];
            if *slot {
                return Err(ParseError::DuplicateController { index: c.index });
            }
            *slot = true;
        }
    }
    for dev in &mut domain.devices {
        if let DeviceKind::PciController(c) = &mut dev.kind
            && c.index_implied
        {
            let free = used.iter().position(|u| !u).ok_or(ParseError::BadNumber {
                element: "controller type='pci'".into(),
                attribute: "index".into(),
                value: "(none free)".into(),
                base: Base::Decimal,
                max: MAX_CONTROLLER_INDEX,
            })?;
            used[free] = true;
            c.index = free as u32;
        }
    }
    Ok(())
}
