//! Host PCI facts from the connection's node devices, the second [`HostFacts`]: through
//! `qemu+ssh://other/system` they describe the other host, where sysfs would describe this one.
//!
//! libvirt names a PCI device `pci_DDDD_BB_SS_F` (src/node_device/node_device_udev.c,
//! `udevGenerateDeviceName`: subsystem `_` sysname, other punctuation made `_`) and writes its
//! IOMMU group as `<iommuGroup number='N'>` (only with the group's member addresses) and its
//! NUMA node as `<numa node='N'/>` inside `<capability type='pci'>`
//! (src/conf/node_device_conf.c, `virNodeDeviceCapPCIDefFormat`). A host network interface is a
//! `<capability type='net'>` device named `net_IFNAME_MAC` whose `<parent>` is its PCI device
//! (`udevProcessNetworkInterface`, `virNodeDeviceCapNetDefFormat`).

use std::cell::RefCell;
use std::collections::HashMap;

use phbguard_core::host::{GroupUnknown, HostFacts};
use phbguard_core::model::PciAddr;
use phbguard_core::vfio::nodedev_name;
use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};
use virt::connect::Connect;
use virt::error::ErrorNumber;

/// One `<capability type='pci'>` node device, as far as phbguard cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// libvirt's name: `pci_0002_02_00_0`.
    pub name: String,
    pub addr: PciAddr,
    /// `<vendor id='0x15b3'>` and `<product id='0x1017'>`, as libvirt writes them.
    pub vendor_id: Option<String>,
    pub product_id: Option<String>,
    /// Their names, when libvirt knows them (from the PCI ids database).
    pub vendor: Option<String>,
    pub product: Option<String>,
    /// The kernel driver bound now (`vfio-pci`, `mlx5_core`), if any.
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    /// Every device of its IOMMU group, as `<iommuGroup>` lists them (itself included).
    pub iommu_members: Vec<PciAddr>,
    /// Its configuration header is a bridge's: `<capability type='pci-bridge'/>` or
    /// `'cardbus-bridge'` (libvirt writes the header type when it is not an endpoint's).
    pub bridge: bool,
    /// `None` when the platform does not say (libvirt omits `<numa>` for -1).
    pub numa_node: Option<u32>,
    /// `<capability type='virt_functions'>`: the SR-IOV VFs of a PF.
    pub virt_functions: Vec<PciAddr>,
}

/// One `<capability type='net'>` node device: a host network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    /// libvirt's name: `net_enP2p4s0f0_98_03_9b_00_00_40`.
    pub name: String,
    /// `<interface>`: the kernel's name of the interface (`enP2p4s0f0`).
    pub interface: String,
    /// `<parent>`: the device the interface belongs to, for a NIC's port its PCI function.
    pub parent: Option<String>,
}

/// Node devices of one connection, each looked up once.
pub struct NodeDevices<'c> {
    conn: &'c Connect,
    cache: RefCell<HashMap<PciAddr, Result<Option<PciDevice>, String>>>,
    /// Every network interface, read on the first question about one.
    net: RefCell<Option<Vec<NetDevice>>>,
}

impl<'c> NodeDevices<'c> {
    pub fn new(conn: &'c Connect) -> Self {
        NodeDevices {
            conn,
            cache: RefCell::new(HashMap::new()),
            net: RefCell::new(None),
        }
    }

    /// The PCI device at `addr`; `Ok(None)` when the host has none there.
    pub fn pci(&self, addr: PciAddr) -> Result<Option<PciDevice>, String> {
        if let Some(known) = self.cache.borrow().get(&addr) {
            return known.clone();
        }
        let found = self.lookup(addr);
        self.cache.borrow_mut().insert(addr, found.clone());
        found
    }

    fn lookup(&self, addr: PciAddr) -> Result<Option<PciDevice>, String> {
        self.pci_named(&nodedev_name(addr))
    }

    /// The node device libvirt calls `name`, when it is a PCI device; `Ok(None)` when there is
    /// no such device or it is not PCI.
    pub fn pci_named(&self, name: &str) -> Result<Option<PciDevice>, String> {
        let dev = match self.conn.lookup_node_device_by_name(name) {
            Ok(dev) => dev,
            Err(e) if e.code().is(ErrorNumber::NoNodeDevice) => return Ok(None),
            Err(e) => return Err(format!("libvirt cannot look up node device {name}: {e}")),
        };
        let xml = dev
            .xml_desc(0)
            .map_err(|e| format!("libvirt cannot describe node device {name}: {e}"))?;
        parse_pci_device(&xml).map_err(|e| format!("node device {name}: {e}"))
    }

    /// The node device of the host network interface `ifname`, `Ok(None)` when the host has
    /// none of that name.
    pub fn net_interface(&self, ifname: &str) -> Result<Option<NetDevice>, String> {
        if self.net.borrow().is_none() {
            let all = self.all_net()?;
            *self.net.borrow_mut() = Some(all);
        }
        Ok(self
            .net
            .borrow()
            .iter()
            .flatten()
            .find(|d| d.interface == ifname)
            .cloned())
    }

    fn all_net(&self) -> Result<Vec<NetDevice>, String> {
        // libvirt names an interface's device `net_IFNAME_MAC` (`udevProcessNetworkInterface` →
        // `udevGenerateDeviceName`), so the others are not read.
        let mut all = Vec::new();
        for (name, xml) in self.described("net_")? {
            all.extend(parse_net_device(&xml).map_err(|e| format!("node device {name}: {e}"))?);
        }
        Ok(all)
    }

    /// Every PCI node device of the host, by address.
    pub fn all_pci(&self) -> Result<Vec<PciDevice>, String> {
        let mut all = Vec::new();
        for (name, xml) in self.described("pci_")? {
            if let Some(pci) = parse_pci_device(&xml).map_err(|e| format!("node device {name}: {e}"))? {
                self.cache.borrow_mut().insert(pci.addr, Ok(Some(pci.clone())));
                all.push(pci);
            }
        }
        all.sort_by_key(|d| d.addr);
        Ok(all)
    }

    /// The name and XML of every node device whose name starts with `prefix`.
    fn described(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        // Flags 0 (all devices, filtered here): the test driver refuses capability filters.
        let devices = self
            .conn
            .list_all_node_devices(0)
            .map_err(|e| format!("libvirt cannot list node devices: {e}"))?;
        let mut out = Vec::new();
        for dev in devices {
            let name = dev.name().unwrap_or_default();
            if !name.starts_with(prefix) {
                continue;
            }
            let xml = dev
                .xml_desc(0)
                .map_err(|e| format!("libvirt cannot describe node device {name}: {e}"))?;
            out.push((name, xml));
        }
        Ok(out)
    }
}

impl HostFacts for NodeDevices<'_> {
    fn iommu_group(&self, addr: PciAddr) -> Result<u32, GroupUnknown> {
        match self.pci(addr) {
            Ok(Some(dev)) => dev.iommu_group.ok_or(GroupUnknown::NoLink),
            Ok(None) => Err(GroupUnknown::NoDevice),
            Err(e) => Err(GroupUnknown::Unavailable(e)),
        }
    }

    fn numa_node(&self, addr: PciAddr) -> Option<u32> {
        self.pci(addr).ok().flatten().and_then(|d| d.numa_node)
    }

    /// From `<iommuGroup>` of a member already read (the hostdevs' own node devices are,
    /// before their groups are asked about): libvirt lists every member there.
    fn group_members(&self, group: u32) -> Result<Vec<PciAddr>, String> {
        let cache = self.cache.borrow();
        let listed = cache.values().find_map(|d| match d {
            Ok(Some(d)) if d.iommu_group == Some(group) && !d.iommu_members.is_empty() => {
                Some(d.iommu_members.clone())
            }
            _ => None,
        });
        let mut members = listed.ok_or_else(|| format!("no node device lists IOMMU group {group}"))?;
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }

    fn driver(&self, addr: PciAddr) -> Result<Option<String>, String> {
        match self.pci(addr)? {
            Some(dev) => Ok(dev.driver),
            None => Err(format!("libvirt has no node device {}", nodedev_name(addr))),
        }
    }

    fn is_bridge(&self, addr: PciAddr) -> Result<bool, String> {
        match self.pci(addr)? {
            Some(dev) => Ok(dev.bridge),
            None => Err(format!("libvirt has no node device {}", nodedev_name(addr))),
        }
    }
}

/// Where the reader is in a node device's XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Name,
    Driver,
    DriverName,
    Pci,
    PciField(Field),
    VirtFunctions,
    IommuGroup,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Domain,
    Bus,
    Slot,
    Function,
    Vendor,
    Product,
}

/// Reads a `<device>` document; `Ok(None)` when it is not a PCI device.
pub fn parse_pci_device(xml: &str) -> Result<Option<PciDevice>, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<At> = Vec::new();
    let mut dev = PciDevice {
        name: String::new(),
        addr: PciAddr {
            domain: 0,
            bus: 0,
            slot: 0,
            function: 0,
        },
        vendor_id: None,
        product_id: None,
        vendor: None,
        product: None,
        driver: None,
        iommu_group: None,
        iommu_members: Vec::new(),
        bridge: false,
        numa_node: None,
        virt_functions: Vec::new(),
    };
    let mut fields: [Option<u64>; 4] = [None; 4];
    let mut is_pci = false;
    let mut text = String::new();
    loop {
        let event = reader.read_event().map_err(|e| format!("bad XML: {e}"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let at = open(&stack, e, &mut dev, &mut is_pci)?;
                text.clear();
                if !empty {
                    stack.push(at);
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => push_reference(&mut text, &r),
            Event::End(_) => {
                let value = text.trim();
                match stack.pop() {
                    Some(At::Name) => dev.name = value.to_string(),
                    Some(At::DriverName) => dev.driver = Some(value.to_string()),
                    Some(At::PciField(f)) => match f {
                        Field::Vendor => dev.vendor = non_empty(value),
                        Field::Product => dev.product = non_empty(value),
                        _ => {
                            let n = parse_int(value).ok_or_else(|| {
                                format!("'{value}' is not a number in <capability type='pci'>")
                            })?;
                            fields[f as usize] = Some(n);
                        }
                    },
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !is_pci {
        return Ok(None);
    }
    let [Some(domain), Some(bus), Some(slot), Some(function)] = fields else {
        return Err("<capability type='pci'> lacks its domain, bus, slot or function".into());
    };
    dev.addr = pci_addr(domain, bus, slot, function)?;
    Ok(Some(dev))
}

/// Entities in names ("Foo &amp; Bar"): keep the character they stand for.
fn push_reference(text: &mut String, r: &BytesRef<'_>) {
    match r.resolve_char_ref() {
        Ok(Some(c)) => text.push(c),
        _ => text.push_str(quick_xml::escape::resolve_predefined_entity(r).unwrap_or("")),
    }
}

/// Reads a `<device>` document; `Ok(None)` when it is not a network interface.
pub fn parse_net_device(xml: &str) -> Result<Option<NetDevice>, String> {
    let mut reader = Reader::from_str(xml);
    // The open elements, a `<capability>` as `capability:TYPE`.
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let (mut name, mut parent, mut interface) = (String::new(), None, None);
    let mut is_net = false;
    loop {
        let event = reader.read_event().map_err(|e| format!("bad XML: {e}"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name();
                let mut tag: String = local.as_ref().to_string();
                if tag == "capability" {
                    tag = format!("capability:{}", attr_of(e, "type").unwrap_or_default());
                }
                if path.len() == 1 && tag == "capability:net" {
                    is_net = true;
                }
                text.clear();
                if matches!(event, Event::Start(_)) {
                    path.push(tag);
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => push_reference(&mut text, &r),
            Event::End(_) => {
                let value = text.trim().to_string();
                match path.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                    [_, "name"] => name = value,
                    [_, "parent"] => parent = Some(value),
                    [_, "capability:net", "interface"] => interface = Some(value),
                    _ => {}
                }
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !is_net {
        return Ok(None);
    }
    let interface = interface.ok_or("<capability type='net'> lacks its <interface>")?;
    Ok(Some(NetDevice {
        name,
        interface,
        parent,
    }))
}

/// An attribute's value, references resolved; `None` when absent or unreadable.
pub(crate) fn attr_of(e: &BytesStart<'_>, key: &str) -> Option<String> {
    e.try_get_attribute(key).ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.into_owned())
    })
}

fn open(stack: &[At], e: &BytesStart<'_>, dev: &mut PciDevice, is_pci: &mut bool) -> Result<At, String> {
    let name = e.local_name();
    let name: &str = name.as_ref();
    let attr = |key: &str| attr_of(e, key);
    let parent = stack.last().copied();
    Ok(match (stack.len(), parent, name) {
        (1, _, "name") => At::Name,
        (1, _, "driver") => At::Driver,
        (2, Some(At::Driver), "name") => At::DriverName,
        (1, _, "capability") if attr("type").as_deref() == Some("pci") => {
            *is_pci = true;
            At::Pci
        }
        (2, Some(At::Pci), field) => match field {
            "domain" => At::PciField(Field::Domain),
            "bus" => At::PciField(Field::Bus),
            "slot" => At::PciField(Field::Slot),
            "function" => At::PciField(Field::Function),
            "vendor" => {
                dev.vendor_id = attr("id");
                At::PciField(Field::Vendor)
            }
            "product" => {
                dev.product_id = attr("id");
                At::PciField(Field::Product)
            }
            "iommuGroup" => {
                let number = attr("number").unwrap_or_default();
                let group = parse_int(&number)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("<iommuGroup number='{number}'> is not a group number"))?;
                dev.iommu_group = Some(group);
                At::IommuGroup
            }
            "numa" => {
                // libvirt writes no <numa> for node -1; anything unreadable is "unknown" too.
                dev.numa_node = attr("node")
                    .and_then(|n| parse_int(&n))
                    .and_then(|n| u32::try_from(n).ok());
                At::Other
            }
            "capability" if attr("type").as_deref() == Some("virt_functions") => At::VirtFunctions,
            "capability" if matches!(attr("type").as_deref(), Some("pci-bridge" | "cardbus-bridge")) => {
                dev.bridge = true;
                At::Other
            }
            _ => At::Other,
        },
        (3, Some(At::VirtFunctions), "address") => {
            dev.virt_functions.push(address_attrs(&attr)?);
            At::Other
        }
        (3, Some(At::IommuGroup), "address") => {
            dev.iommu_members.push(address_attrs(&attr)?);
            At::Other
        }
        _ => At::Other,
    })
}

/// An `<address domain= bus= slot= function=/>` element's attributes.
pub fn address_attrs(attr: &dyn Fn(&str) -> Option<String>) -> Result<PciAddr, String> {
    let get = |key: &str| -> Result<u64, String> {
        let v = attr(key).unwrap_or_else(|| "0".into());
        parse_int(&v).ok_or_else(|| format!("<address {key}='{v}'> is not a number"))
    };
    pci_addr(get("domain")?, get("bus")?, get("slot")?, get("function")?)
}

fn pci_addr(domain: u64, bus: u64, slot: u64, function: u64) -> Result<PciAddr, String> {
    let bad = || format!("PCI address {domain:x}:{bus:x}:{slot:x}.{function:x} is out of range");
    Ok(PciAddr {
        domain: u32::try_from(domain).map_err(|_| bad())?,
        bus: u8::try_from(bus).map_err(|_| bad())?,
        slot: u8::try_from(slot).ok().filter(|s| *s < 32).ok_or_else(bad)?,
        function: u8::try_from(function).ok().filter(|f| *f < 8).ok_or_else(bad)?,
    })
}

/// A number as libvirt writes one in these documents: `0x`-prefixed hex or decimal.
fn parse_int(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by libvirt 9.0's nodedev driver for a ConnectX-5 PF (fields trimmed).
    const PF: &str = "<device>
  <name>pci_0002_02_00_0</name>
  <path>/sys/devices/pci0002:00/0002:00:00.0/0002:02:00.0</path>
  <parent>pci_0002_00_00_0</parent>
  <driver>
    <name>mlx5_core</name>
  </driver>
  <capability type='pci'>
    <class>0x020000</class>
    <domain>2</domain>
    <bus>2</bus>
    <slot>0</slot>
    <function>0</function>
    <product id='0x1017'>MT27800 Family [ConnectX-5]</product>
    <vendor id='0x15b3'>Mellanox Technologies</vendor>
    <capability type='virt_functions' maxCount='8'>
      <address domain='0x0002' bus='0x02' slot='0x00' function='0x2'/>
      <address domain='0x0002' bus='0x02' slot='0x00' function='0x3'/>
    </capability>
    <iommuGroup number='7'>
      <address domain='0x0002' bus='0x02' slot='0x00' function='0x0'/>
    </iommuGroup>
    <numa node='1'/>
  </capability>
</device>";

    #[test]
    fn reads_what_phbguard_needs_from_a_pci_device() {
        let dev = parse_pci_device(PF).unwrap().unwrap();
        assert_eq!(dev.name, "pci_0002_02_00_0");
        assert_eq!(dev.addr.to_string(), "0002:02:00.0");
        assert_eq!(nodedev_name(dev.addr), dev.name);
        assert_eq!(dev.iommu_group, Some(7));
        assert_eq!(dev.numa_node, Some(1));
        assert_eq!(dev.driver.as_deref(), Some("mlx5_core"));
        assert_eq!(dev.vendor_id.as_deref(), Some("0x15b3"));
        assert_eq!(dev.product_id.as_deref(), Some("0x1017"));
        assert_eq!(dev.product.as_deref(), Some("MT27800 Family [ConnectX-5]"));
        let vfs: Vec<String> = dev.virt_functions.iter().map(|a| a.to_string()).collect();
        assert_eq!(vfs, ["0002:02:00.2", "0002:02:00.3"]);
    }

    // A PCIe switch's downstream port as libvirt 9.0's udev backend writes it: its driver,
    // its header type (not an endpoint's) and every member of its IOMMU group.
    const PORT: &str = "<device>
  <name>pci_0008_00_00_0</name>
  <path>/sys/devices/pci0008:00/0008:00:00.0</path>
  <parent>computer</parent>
  <driver>
    <name>pcieport</name>
  </driver>
  <capability type='pci'>
    <class>0x060400</class>
    <domain>8</domain>
    <bus>0</bus>
    <slot>0</slot>
    <function>0</function>
    <product id='0x04c1'/>
    <vendor id='0x1014'/>
    <capability type='pci-bridge'/>
    <iommuGroup number='22'>
      <address domain='0x0008' bus='0x00' slot='0x00' function='0x0'/>
      <address domain='0x0008' bus='0x01' slot='0x00' function='0x0'/>
      <address domain='0x0008' bus='0x01' slot='0x00' function='0x1'/>
    </iommuGroup>
    <numa node='0'/>
    <pci-express>
      <link validity='cap' port='0' speed='16' width='16'/>
    </pci-express>
  </capability>
</device>";

    #[test]
    fn reads_a_bridge_its_driver_and_its_groups_members() {
        let port = parse_pci_device(PORT).unwrap().unwrap();
        assert_eq!(port.driver.as_deref(), Some("pcieport"));
        assert!(port.bridge);
        assert_eq!(port.iommu_group, Some(22));
        let members: Vec<String> = port.iommu_members.iter().map(|a| a.to_string()).collect();
        assert_eq!(members, ["0008:00:00.0", "0008:01:00.0", "0008:01:00.1"]);
        // An endpoint: no header type written.
        let pf = parse_pci_device(PF).unwrap().unwrap();
        assert!(!pf.bridge);
        assert_eq!(pf.iommu_members, [pf.addr]);
        let cardbus = PORT.replace("'pci-bridge'", "'cardbus-bridge'");
        assert!(parse_pci_device(&cardbus).unwrap().unwrap().bridge);
    }

    #[test]
    fn no_group_no_numa_and_other_devices() {
        let bare = PF
            .replace("<numa node='1'/>", "")
            .replace("<iommuGroup number='7'>", "<x>")
            .replace("</iommuGroup>", "</x>");
        let dev = parse_pci_device(&bare).unwrap().unwrap();
        assert_eq!((dev.iommu_group, dev.numa_node), (None, None));
        let net = "<device><name>net_eth0_00_11</name><capability type='net'><interface>eth0</interface></capability></device>";
        assert_eq!(parse_pci_device(net).unwrap(), None);
        let bad = PF.replace("<iommuGroup number='7'>", "<iommuGroup number='x'>");
        assert!(parse_pci_device(&bad).unwrap_err().contains("number='x'"));
        let bad = PF.replace("<slot>0</slot>", "<slot>40</slot>");
        assert!(parse_pci_device(&bad).unwrap_err().contains("out of range"));
    }

    // As libvirt 9.0's nodedev driver writes a NIC's port (measured here on a virtio NIC, with
    // a PF's names and fewer <feature>s).
    const PF_PORT: &str = "<device>
  <name>net_enP2p2s0f0_98_03_9b_00_00_40</name>
  <path>/sys/devices/pci0002:00/0002:00:00.0/0002:02:00.0/net/enP2p2s0f0</path>
  <parent>pci_0002_02_00_0</parent>
  <capability type='net'>
    <interface>enP2p2s0f0</interface>
    <address>98:03:9b:00:00:40</address>
    <link speed='100000' state='up'/>
    <feature name='rx'/>
    <capability type='80203'/>
  </capability>
</device>";

    #[test]
    fn reads_a_network_interface_and_its_parent() {
        let port = parse_net_device(PF_PORT).unwrap().unwrap();
        assert_eq!(port.name, "net_enP2p2s0f0_98_03_9b_00_00_40");
        assert_eq!(port.interface, "enP2p2s0f0");
        assert_eq!(port.parent.as_deref(), Some("pci_0002_02_00_0"));
        // The PCI function is no interface, and an interface is no PCI device.
        assert_eq!(parse_net_device(PF).unwrap(), None);
        assert_eq!(parse_pci_device(PF_PORT).unwrap(), None);
        let nameless = PF_PORT.replace("<interface>enP2p2s0f0</interface>", "");
        assert!(parse_net_device(&nameless).unwrap_err().contains("<interface>"));
        let orphan = PF_PORT.replace("<parent>pci_0002_02_00_0</parent>", "");
        assert_eq!(parse_net_device(&orphan).unwrap().unwrap().parent, None);
    }
}
