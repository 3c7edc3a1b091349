//! One streaming pass over domain XML into a [`Domain`]. Elements the rules do not need are
//! skipped without being stored; every device keeps its byte span for the rewriter. This module
//! walks the document; [`device`] reads a device element, `values` its attributes and numbers.

mod device;
mod values;

use quick_xml::Reader;
use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::QName;

use crate::error::ParseError;
use crate::model::{Domain, HardLimit, MemNode, Span};
use crate::number::{Base, SizeBound, parse_nodeset, parse_size_kib};

use device::{DeviceBuilder, assign_controller_indexes};
use values::{At, Attrs, number};

/// The namespace of `<phbguard:policy>` under `<metadata>`, as `virsh metadata --uri` takes it.
pub const METADATA_NS: &str = "urn:phbguard:policy:1";

/// Highest PCI controller index libvirt accepts (`virDomainControllerDefValidate`).
const MAX_CONTROLLER_INDEX: u64 = 255;
/// Highest host NUMA node number a nodeset may name; bounds the work a hostile one costs.
const MAX_HOST_NODE: u32 = 4095;

/// Parses a libvirt domain definition.
pub fn parse_domain(input: &[u8]) -> Result<Domain, ParseError> {
    parse(input).map_err(|e| e.located(input))
}

fn parse(input: &[u8]) -> Result<Domain, ParseError> {
    let text = std::str::from_utf8(input).map_err(|e| ParseError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    // NUL is no XML character: libvirt's parser (libxml2) refuses such a document, so it can
    // never be a domain definition. quick-xml does not check characters.
    if let Some(offset) = memchr::memchr(0, input) {
        return Err(ParseError::Malformed {
            line: None,
            offset: offset as u64,
            detail: "a NUL character, which XML does not allow".into(),
        });
    }
    // A UTF-8 byte order mark is allowed before the XML declaration. quick-xml skips it and
    // counts positions after it, so the parser reads the rest and adds the mark's length
    // back: device spans must be offsets into `input`, or `fix` edits the wrong bytes
    // (tests/fuzz/fix/utf8-bom.xml).
    let base = if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    Parser::new(text, base).run()
}

/// Where the reader is, as far as the rules care. Anything else is `Skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Domain,
    Name,
    Uuid,
    Os,
    Numatune,
    Cpu,
    /// The first `<cpu><numa>`, the one libvirt reads (`./cpu/numa[1]/cell`).
    CpuNuma,
    Metadata,
    Devices,
    Device,
    DeviceSource,
    DeviceTarget,
    TargetNode,
    /// `<memory>`, `<maxMemory>`, `<memtune><hard_limit>`: a size, read at its end tag.
    Size(SizeOf),
    Memtune,
    MemoryBacking,
    Skip,
}

/// Which memory size is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeOf {
    Memory,
    MaxMemory,
    HardLimit,
}

struct Parser<'a> {
    source: &'a str,
    /// A byte offset already reached and the line it is on, so lines are counted in one pass.
    counted: (usize, usize),
    reader: Reader<&'a [u8]>,
    stack: Vec<Tag>,
    domain: Domain,
    device: Option<DeviceBuilder>,
    text: String,
    seen_root: bool,
    /// A `<cpu><numa>` was read: libvirt reads only the first.
    seen_cpu_numa: bool,
    /// Bytes of `source` before `reader`'s text (a byte order mark), added to its positions.
    base: usize,
    /// The `unit` of the size being read, and where its element starts.
    size: Option<(Option<String>, usize)>,
    /// A `<memtune><hard_limit>` was read (libvirt reads the first one).
    hard_limit_read: bool,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, base: usize) -> Self {
        Parser {
            base,
            source: text,
            counted: (0, 1),
            reader: Reader::from_str(&text[base..]),
            stack: Vec::with_capacity(16),
            domain: Domain::default(),
            device: None,
            text: String::new(),
            seen_root: false,
            seen_cpu_numa: false,
            size: None,
            hard_limit_read: false,
        }
    }

    fn run(mut self) -> Result<Domain, ParseError> {
        loop {
            let start = self.position();
            let event = self.reader.read_event().map_err(|e| ParseError::Malformed {
                line: None,
                offset: self.reader.error_position() + self.base as u64,
                detail: e.to_string(),
            })?;
            let end = self.position();
            match event {
                Event::Start(e) => match self.open(&e, Span { start, end })? {
                    // Nothing under an element the rules do not read is looked at: quick-xml
                    // only checks it is well-formed on its way to the end tag.
                    Tag::Skip => self.skip_to_end(e.name())?,
                    tag => self.stack.push(tag),
                },
                Event::Empty(e) => {
                    let tag = self.open(&e, Span { start, end })?;
                    self.close(tag, Span { start, end })?;
                }
                Event::End(_) => {
                    let tag = self.stack.pop().expect("quick-xml checks end tags match");
                    self.close(tag, Span { start, end })?;
                }
                Event::Text(t) => {
                    if self.capturing() {
                        self.text.push_str(&t.xml10_content());
                    } else if self.stack.is_empty() && !t.xml10_content().trim().is_empty() {
                        return Err(self.malformed(start, "text outside the root element"));
                    }
                }
                Event::CData(t) if self.capturing() => {
                    self.text.push_str(&t.xml10_content());
                }
                Event::GeneralRef(r) if self.capturing() => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => quick_xml::escape::resolve_predefined_entity(&r)
                            .ok_or_else(|| self.malformed(start, "unknown entity reference"))?
                            .to_string(),
                    };
                    self.text.push_str(&resolved);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if let Some(open) = self.stack.first() {
            let open = if *open == Tag::Domain { "domain" } else { "root" };
            return Err(ParseError::Truncated { open: open.into() });
        }
        if !self.seen_root {
            return Err(ParseError::Empty);
        }
        assign_controller_indexes(&mut self.domain)?;
        Ok(self.domain)
    }

    /// Reads past the end tag that matches the start tag just read.
    fn skip_to_end(&mut self, name: QName<'_>) -> Result<(), ParseError> {
        self.reader.read_to_end(name).map(drop).map_err(|e| match e {
            XmlError::IllFormed(IllFormedError::MissingEndTag(_)) => ParseError::Truncated {
                open: "domain".into(),
            },
            e => ParseError::Malformed {
                line: None,
                offset: self.reader.error_position() + self.base as u64,
                detail: e.to_string(),
            },
        })
    }

    fn position(&self) -> usize {
        // The reader works on a &str held in memory, so positions fit in usize.
        self.base + self.reader.buffer_position() as usize
    }

    /// The line `offset` is on; offsets are asked for in document order.
    fn line_of(&mut self, offset: usize) -> usize {
        let (from, line) = self.counted;
        let newlines = memchr::memchr_iter(b'\n', &self.source.as_bytes()[from..offset]).count();
        self.counted = (offset, line + newlines);
        self.counted.1
    }

    fn malformed(&self, offset: usize, detail: &str) -> ParseError {
        ParseError::Malformed {
            line: None,
            offset: offset as u64,
            detail: detail.into(),
        }
    }

    fn capturing(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Tag::Name | Tag::Uuid | Tag::TargetNode | Tag::Size(_))
        )
    }

    /// Handles a start (or empty) tag and says what it is.
    fn open(&mut self, e: &BytesStart<'_>, span: Span) -> Result<Tag, ParseError> {
        let (name, prefix) = e.name().decompose();
        let name = name.into_inner();
        let parent = self.stack.last().copied();
        // An element in another namespace (`<x:hostdev xmlns:x=...>`, `<qemu:commandline>`) is
        // not libvirt's, whatever its local name: libvirt's XPath lookups match only elements
        // in no namespace. `<metadata>` is where our own namespaced element lives.
        if !self.stack.is_empty() && prefix.is_some() && parent != Some(Tag::Metadata) {
            return Ok(Tag::Skip);
        }
        let tag = match (self.stack.len(), parent) {
            (0, _) => {
                if self.seen_root {
                    return Err(self.malformed(span.start, "a second root element"));
                }
                self.seen_root = true;
                if name != "domain" {
                    return Err(ParseError::NotDomain {
                        root: e.name().as_ref().to_string(),
                    });
                }
                self.domain.virt_type = Attrs::of(self.source, span.start)?.owned("type");
                Tag::Domain
            }
            (1, _) => match name {
                "name" => Tag::Name,
                "uuid" => Tag::Uuid,
                "os" => Tag::Os,
                "numatune" => Tag::Numatune,
                "cpu" => Tag::Cpu,
                "metadata" => Tag::Metadata,
                "devices" => Tag::Devices,
                // libvirt reads the first of each (`./memory[1]`, `./maxMemory[1]`).
                "memory" if self.domain.memory.total_kib.is_none() => self.size(SizeOf::Memory, span)?,
                "maxMemory" if self.domain.memory.max_kib.is_none() => self.size(SizeOf::MaxMemory, span)?,
                "memtune" => Tag::Memtune,
                "memoryBacking" => Tag::MemoryBacking,
                _ => Tag::Skip,
            },
            (2, Some(Tag::Memtune)) if name == "hard_limit" && !self.hard_limit_read => {
                self.size(SizeOf::HardLimit, span)?
            }
            (2, Some(Tag::MemoryBacking)) => {
                if name == "locked" {
                    self.domain.memory.locked = true;
                }
                Tag::Skip
            }
            (2, Some(Tag::Os)) => {
                if name == "type" {
                    let attrs = Attrs::of(self.source, span.start)?;
                    self.domain.arch = attrs.owned("arch");
                    self.domain.machine = attrs.owned("machine");
                }
                Tag::Skip
            }
            (2, Some(Tag::Numatune)) => {
                if name == "memnode" {
                    self.memnode(span.start)?;
                }
                Tag::Skip
            }
            (2, Some(Tag::Cpu)) if name == "numa" && !self.seen_cpu_numa => {
                self.seen_cpu_numa = true;
                Tag::CpuNuma
            }
            (3, Some(Tag::CpuNuma)) => {
                if name == "cell" {
                    self.numa_cell(span.start)?;
                }
                Tag::Skip
            }
            (2, Some(Tag::Metadata)) => {
                if name == "policy" {
                    let attrs = Attrs::of(self.source, span.start)?;
                    if in_our_namespace(e, &attrs) {
                        self.domain.policy_mode = attrs.owned("mode");
                    }
                }
                Tag::Skip
            }
            (2, Some(Tag::Devices)) => {
                let line = self.line_of(span.start);
                self.device = Some(DeviceBuilder::new(self.source, name, span.start, line)?);
                Tag::Device
            }
            (3, Some(Tag::Device)) => self.device_child(name, span)?,
            (4, Some(Tag::DeviceSource)) => self.source_child(name, span)?,
            (4, Some(Tag::DeviceTarget)) if name == "node" => Tag::TargetNode,
            _ => Tag::Skip,
        };
        if matches!(tag, Tag::Name | Tag::Uuid | Tag::TargetNode | Tag::Size(_)) {
            self.text.clear();
        }
        Ok(tag)
    }

    /// Starts reading a memory size: its `unit` now, its text at the end tag.
    fn size(&mut self, which: SizeOf, span: Span) -> Result<Tag, ParseError> {
        let unit = Attrs::of(self.source, span.start)?.owned("unit");
        self.size = Some((unit, span.start));
        Ok(Tag::Size(which))
    }

    /// Handles the end of an element opened as `tag`; `end_tag` is its closing tag, or the
    /// whole element when it was empty.
    fn close(&mut self, tag: Tag, end_tag: Span) -> Result<(), ParseError> {
        match tag {
            Tag::Name => self.domain.name = Some(self.text.trim().to_string()),
            Tag::Uuid => self.domain.uuid = Some(self.text.trim().to_string()),
            Tag::TargetNode => {
                let dev = self.device.as_mut().expect("inside a device");
                let value = self.text.trim();
                let at = At::new(&dev.element, "><target><node");
                dev.numa_node = Some(number(at, "text", value, Base::Decimal, u64::from(u32::MAX))? as u32);
            }
            Tag::Size(which) => self.close_size(which, end_tag)?,
            // An end tag, not an empty `<devices/>`: where children can be added.
            Tag::Devices if self.source[end_tag.start..].starts_with("</") => {
                self.domain.devices_close = Some(end_tag.start)
            }
            Tag::Device => {
                let builder = self.device.take().expect("a device was opened");
                self.domain.devices.push(builder.build(end_tag.end)?);
            }
            _ => {}
        }
        Ok(())
    }

    /// `<cell id='N'>`: libvirt reads `id` in base 10 and numbers a cell without one by its
    /// position (`virDomainNumaDefParseXML`, src/conf/numa_conf.c).
    fn numa_cell(&mut self, tag_start: usize) -> Result<(), ParseError> {
        let attrs = Attrs::of(self.source, tag_start)?;
        let id = match attrs.get("id") {
            Some(v) => number(At::new("cell", ""), "id", &v, Base::Decimal, u64::from(u32::MAX))? as u32,
            None => self.domain.numa_cells.len() as u32,
        };
        self.domain.numa_cells.push(id);
        Ok(())
    }

    /// A memory size's end: read as libvirt reads it. An empty one is no size
    /// (`virXPathString` gives NULL for an empty string).
    fn close_size(&mut self, which: SizeOf, end_tag: Span) -> Result<(), ParseError> {
        let (unit, start) = self.size.take().expect("a size was opened");
        let (element, bound) = match which {
            SizeOf::Memory => ("memory", SizeBound::Memory),
            SizeOf::MaxMemory => ("maxMemory", SizeBound::Memory),
            SizeOf::HardLimit => ("memtune><hard_limit", SizeBound::Limit),
        };
        if which == SizeOf::HardLimit {
            self.hard_limit_read = true;
        }
        if self.text.is_empty() {
            return Ok(());
        }
        let kib = parse_size_kib(&self.text, unit.as_deref(), bound).map_err(|why| ParseError::BadSize {
            element: element.into(),
            value: self.text.clone(),
            unit: unit.clone(),
            why,
        })?;
        let memory = &mut self.domain.memory;
        match which {
            SizeOf::Memory => memory.total_kib = kib,
            SizeOf::MaxMemory => memory.max_kib = kib,
            SizeOf::HardLimit => {
                let line = self.line_of(start);
                self.domain.memory.hard_limit = kib.map(|kib| HardLimit {
                    kib,
                    span: Span {
                        start,
                        end: end_tag.end,
                    },
                    line,
                });
            }
        }
        Ok(())
    }

    fn memnode(&mut self, tag_start: usize) -> Result<(), ParseError> {
        let attrs = Attrs::of(self.source, tag_start)?;
        let cell = match attrs.get("cellid") {
            Some(v) => number(
                At::new("memnode", ""),
                "cellid",
                &v,
                Base::Decimal,
                u64::from(u32::MAX),
            )? as u32,
            None => return Ok(()),
        };
        let nodeset = attrs.owned("nodeset").unwrap_or_default();
        let host_nodes =
            parse_nodeset(&nodeset, MAX_HOST_NODE).ok_or(ParseError::BadNodeset { value: nodeset })?;
        self.domain.memnodes.push(MemNode { cell, host_nodes });
        Ok(())
    }
}

/// Whether `<prefix:policy>` is bound to [`METADATA_NS`] on the element itself, which is
/// how libvirt writes metadata it was given with `virsh metadata --uri`.
fn in_our_namespace(e: &BytesStart<'_>, attrs: &Attrs<'_>) -> bool {
    let qname = e.name();
    let xmlns = match qname.prefix() {
        Some(prefix) => format!("xmlns:{}", prefix.as_ref()),
        None => "xmlns".to_string(),
    };
    attrs.get(&xmlns).as_deref() == Some(METADATA_NS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Device, DeviceKind};

    const DOMAIN: &str = include_str!("../../../../tests/corpus/libvirt/pseries-hostdevs-1.out.xml");

    #[test]
    fn reads_what_the_rules_need() {
        let d = parse_domain(DOMAIN.as_bytes()).unwrap();
        assert_eq!(d.name.as_deref(), Some("guest"));
        assert!(d.is_pseries());
        let phbs: Vec<(u32, Option<u32>)> = d
            .pci_controllers()
            .map(|(_, c)| (c.index, c.target_index))
            .collect();
        assert_eq!(phbs, [(0, Some(0)), (1, Some(1)), (2, Some(2))]);
        let hostdevs: Vec<String> = d
            .devices
            .iter()
            .filter(|x| x.host_addr().is_some())
            .map(Device::describe)
            .collect();
        assert_eq!(
            hostdevs,
            [
                "interface hostdev 0005:90:01.0 at 0000:01:01.0",
                "hostdev 0001:01:00.0 at 0000:02:01.0",
                "hostdev 0001:01:00.1 at 0000:02:02.0"
            ]
        );
        // Spans cover each device element exactly, for the rewriter.
        for dev in &d.devices {
            let text = &DOMAIN[dev.span.start..dev.span.end];
            assert!(text.starts_with(&format!("<{}", dev.element)), "{text}");
            assert!(text.ends_with('>'), "{text}");
            if let Some(a) = dev.address_span {
                assert!(DOMAIN[a.start..a.end].starts_with("<address type='pci'"));
            }
        }
        assert!(DOMAIN[d.devices_close.unwrap()..].starts_with("</devices>"));
    }

    #[test]
    fn spans_are_offsets_into_the_input_after_a_byte_order_mark() {
        let input = format!("\u{feff}{DOMAIN}");
        let d = parse_domain(input.as_bytes()).unwrap();
        for dev in &d.devices {
            assert!(input[dev.span.start..].starts_with(&format!("<{}", dev.element)));
        }
        assert!(input[d.devices_close.unwrap()..].starts_with("</devices>"));
    }

    #[test]
    fn attributes_must_be_well_formed() {
        let doc = |address: &str| format!("<domain><devices><disk>{address}</disk></devices></domain>");
        for bad in [
            "<address type='pci' bus='0x01'=slot='0x02'/>",
            "<address type='pci' bus='0x01'slot='0x02'/>",
            "<address type='pci' bus='0x01' =slot='0x02'/>",
        ] {
            let e = parse_domain(doc(bad).as_bytes()).unwrap_err();
            assert!(matches!(e, ParseError::Malformed { .. }), "{bad}: {e}");
        }
        for good in [
            "<address type='pci' bus = '0x01'\n slot=\"0x02\"/>",
            "<address type='pci' x.y-z:w='1'/>",
        ] {
            parse_domain(doc(good).as_bytes()).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn index_less_pci_controllers_take_the_lowest_free_index() {
        let xml = "<domain><devices><controller type='pci' model='pci-root'/>\
                   <controller type='pci' index='0' model='pci-root'/>\
                   <controller type='pci' model='pci-root'/></devices></domain>";
        let d = parse_domain(xml.as_bytes()).unwrap();
        let indexes: Vec<u32> = d.pci_controllers().map(|(_, c)| c.index).collect();
        assert_eq!(indexes, [1, 0, 2]);
    }

    fn first_device(devices: &str) -> Result<Device, ParseError> {
        let xml = format!("<domain><devices>{devices}</devices></domain>");
        parse_domain(xml.as_bytes()).map(|mut d| d.devices.remove(0))
    }

    #[test]
    fn numbers_are_read_in_the_base_libvirt_reads_each_in() {
        // Measured on libvirt 9.0: bus='010' is bus 8; <target index='011'/> is 9;
        // controller index='010' is 10; <node>010</node> is node 10.
        let disk =
            first_device("<disk><address type='pci' bus='010' slot='0x1' function='0'/></disk>").unwrap();
        assert_eq!(disk.address.unwrap().to_string(), "0000:08:01.0");
        let phb = first_device(
            "<controller type='pci' index='010' model='pci-root'><target index='011'><node>010</node></target></controller>",
        )
        .unwrap();
        let DeviceKind::PciController(c) = phb.kind else {
            panic!()
        };
        assert_eq!((c.index, c.target_index, c.numa_node), (10, Some(9), Some(10)));
    }

    #[test]
    fn a_hex_controller_index_is_bad_input_naming_element_and_value() {
        // libvirt: "Invalid value for attribute 'index' in element 'controller': '0x0a'".
        let err = first_device("<controller type='pci' index='0x0a' model='pci-root'/>").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("<controller> index='0x0a'") && text.contains("decimal only"),
            "{text}"
        );
        // An octal-looking slot libvirt's strtoul stops at is refused too.
        let err = first_device("<disk><address type='pci' bus='0' slot='08'/></disk>").unwrap_err();
        assert!(err.to_string().contains("slot='08'"), "{err}");
    }

    #[test]
    fn the_first_address_child_is_the_device_address() {
        let disk = first_device(
            "<disk><address type='pci' bus='0' slot='5'/><address type='pci' bus='0' slot='6'/></disk>",
        )
        .unwrap();
        assert_eq!(disk.address.unwrap().slot, 5);
        let hostdev = first_device(
            "<hostdev mode='subsystem' type='pci'><source><address domain='1' bus='2' slot='0' function='0'/>\
             <address domain='9' bus='9' slot='0' function='0'/></source>\
             <address type='drive'/><address type='pci' bus='0' slot='7'/></hostdev>",
        )
        .unwrap();
        assert_eq!(hostdev.host_addr().unwrap().to_string(), "0001:02:00.0");
        // The first address is not a PCI one: libvirt never reads the second.
        assert_eq!(hostdev.address, None);
    }

    #[test]
    fn a_pci_domain_may_use_32_bits_as_in_libvirt() {
        // Measured on libvirt 9.0 (test driver): both addresses below are defined as written.
        let hostdev = first_device(
            "<hostdev mode='subsystem' type='pci'><source><address domain='0x10000' bus='1' slot='0' function='0'/></source>\
             <address type='pci' domain='0xffffffff' bus='0' slot='5'/></hostdev>",
        )
        .unwrap();
        assert_eq!(hostdev.host_addr().unwrap().to_string(), "10000:01:00.0");
        assert_eq!(hostdev.address.unwrap().domain, 0xffff_ffff);
        // Over 32 bits is refused, as virStrToLong_uip refuses it.
        let err = first_device("<disk><address type='pci' domain='0x100000000' bus='0' slot='5'/></disk>")
            .unwrap_err();
        assert!(err.to_string().contains("domain='0x100000000'"), "{err}");
    }

    #[test]
    fn an_address_without_domain_bus_or_slot_is_unassigned() {
        for address in [
            "<address type='pci'/>",
            "<address type='pci' domain='0' bus='0' slot='0' function='0'/>",
            // libvirt checks nothing else of an empty address (virPCIDeviceAddressIsEmpty).
            "<address type='pci' function='9'/>",
        ] {
            let disk = first_device(&format!("<disk>{address}</disk>")).unwrap();
            assert_eq!(disk.address, None, "{address}");
            assert!(disk.address_span.is_some(), "{address}");
        }
        let hostdev = first_device(
            "<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='0' slot='0' function='0'/></source></hostdev>",
        )
        .unwrap();
        assert_eq!(hostdev.host_addr().unwrap().to_string(), "0000:00:00.0");
    }

    #[test]
    fn metadata_policy_only_in_our_namespace() {
        let with = |ns: &str| {
            format!("<domain><metadata><p:policy xmlns:p='{ns}' mode='warn'/></metadata></domain>")
        };
        assert_eq!(
            parse_domain(with(METADATA_NS).as_bytes())
                .unwrap()
                .policy_mode
                .as_deref(),
            Some("warn")
        );
        assert_eq!(
            parse_domain(with("urn:someone:else").as_bytes())
                .unwrap()
                .policy_mode,
            None
        );
    }

    #[test]
    fn guest_numa_cells_and_aliases_are_read_as_libvirt_reads_them() {
        let numa = include_str!("../../../../tests/corpus/libvirt/pseries-phb-numa-node.in.xml");
        assert_eq!(parse_domain(numa.as_bytes()).unwrap().numa_cells, [0, 1]);
        // Only the first <numa> counts; a cell without an id is numbered by its position.
        let xml = "<domain><cpu><numa><cell cpus='0'/><cell id='010' cpus='1'/></numa>\
                   <numa><cell id='7'/></numa></cpu><devices>\
                   <interface type='network'><mac address='52:54:00:00:00:01'/><alias name='net1'/></interface>\
                   </devices></domain>";
        let d = parse_domain(xml.as_bytes()).unwrap();
        assert_eq!(d.numa_cells, [0, 10]);
        assert_eq!(d.devices[0].alias.as_deref(), Some("net1"));
        assert_eq!(d.devices[0].label.as_deref(), Some("52:54:00:00:00:01"));
        assert!(parse_domain(b"<domain><cpu><numa><cell id='0x1'/></numa></cpu></domain>").is_err());
        assert!(parse_domain(DOMAIN.as_bytes()).unwrap().numa_cells.is_empty());
    }

    #[test]
    fn every_prefix_and_every_corrupted_byte_parses_or_errors_without_panicking() {
        let bytes = DOMAIN.as_bytes();
        for end in 0..bytes.len() {
            // Only the whole document (up to trailing blanks) may parse.
            if parse_domain(&bytes[..end]).is_ok() {
                assert!(DOMAIN[end..].trim().is_empty(), "prefix of {end} bytes parsed");
            }
        }
        for i in 0..bytes.len() {
            for replacement in [b'<', b'>', b'\'', b'&', b'x', 0xff] {
                let mut corrupted = bytes.to_vec();
                corrupted[i] = replacement;
                let _ = parse_domain(&corrupted);
            }
        }
    }
}
