//! libvirt networks that are hostdev pools (`<forward mode='hostdev'>`): an `<interface
//! type='network'>` on one becomes a VFIO hostdev of a VF picked from the pool at start
//! (src/conf/virnetworkobj.c, `networkAllocatePort`; libvirt-behaviour.md §2.2).

use std::collections::BTreeMap;

use phbguard_core::model::PciAddr;
use quick_xml::Reader;
use quick_xml::events::Event;
use virt::connect::Connect;

use crate::nodedev::address_attrs;

/// One hostdev-pool network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostdevPool {
    /// The VFs it lists (`<forward><address type='pci' .../>`).
    pub addresses: Vec<PciAddr>,
    /// The PFs it draws VFs from (`<forward><pf dev='enP2p2s0f0'/>`).
    pub pf_devs: Vec<String>,
}

/// Every hostdev-pool network of the connection, by name.
pub fn hostdev_pools(conn: &Connect) -> Result<BTreeMap<String, HostdevPool>, String> {
    let networks = conn
        .list_all_networks(0)
        .map_err(|e| format!("libvirt cannot list networks: {e}"))?;
    let mut pools = BTreeMap::new();
    for net in networks {
        let name = net.name().unwrap_or_default();
        let xml = net
            .xml_desc(0)
            .map_err(|e| format!("libvirt cannot describe network '{name}': {e}"))?;
        if let Some(pool) = parse_hostdev_pool(&xml).map_err(|e| format!("network '{name}': {e}"))? {
            pools.insert(name, pool);
        }
    }
    Ok(pools)
}

/// A `<network>` document's pool, or `None` when it does not forward in hostdev mode.
pub fn parse_hostdev_pool(xml: &str) -> Result<Option<HostdevPool>, String> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut in_forward = false;
    let mut pool: Option<HostdevPool> = None;
    loop {
        match reader.read_event().map_err(|e| format!("bad XML: {e}"))? {
            Event::Start(e) => {
                if depth == 1 && e.local_name().as_ref() == "forward" && is_hostdev(&e) {
                    pool = Some(HostdevPool::default());
                    in_forward = true;
                }
                depth += 1;
            }
            Event::Empty(e) => {
                if depth == 1 && e.local_name().as_ref() == "forward" && is_hostdev(&e) {
                    pool = Some(HostdevPool::default());
                } else if in_forward && depth == 2 {
                    let pool = pool.as_mut().expect("in a hostdev <forward>");
                    match e.local_name().as_ref() {
                        "address" if attr(&e, "type").as_deref() == Some("pci") => {
                            pool.addresses.push(address_attrs(&|k| attr(&e, k))?);
                        }
                        "pf" => pool.pf_devs.extend(attr(&e, "dev")),
                        _ => {}
                    }
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    in_forward = false;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(pool)
}

fn is_hostdev(forward: &quick_xml::events::BytesStart<'_>) -> bool {
    attr(forward, "mode").as_deref() == Some("hostdev")
}

fn attr(e: &quick_xml::events::BytesStart<'_>, key: &str) -> Option<String> {
    e.try_get_attribute(key).ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostdev_pools_and_other_networks() {
        let pool = "<network><name>vfpool</name><forward mode='hostdev' managed='yes'>\
            <address type='pci' domain='0x0002' bus='0x03' slot='0x00' function='0x1'/>\
            <address type='pci' domain='0x0002' bus='0x03' slot='0x00' function='0x2'/>\
            </forward></network>";
        let got = parse_hostdev_pool(pool).unwrap().unwrap();
        let addrs: Vec<String> = got.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["0002:03:00.1", "0002:03:00.2"]);
        let pf = "<network><name>p</name><forward mode='hostdev'><pf dev='enP2p3s0f0'/></forward></network>";
        assert_eq!(parse_hostdev_pool(pf).unwrap().unwrap().pf_devs, ["enP2p3s0f0"]);
        let nat = "<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/>\
            <ip address='192.168.122.1'/></network>";
        assert_eq!(parse_hostdev_pool(nat).unwrap(), None);
        let isolated = "<network><name>iso</name><bridge name='virbr1'/></network>";
        assert_eq!(parse_hostdev_pool(isolated).unwrap(), None);
        let empty_hostdev = "<network><name>e</name><forward mode='hostdev'/><x><address type='pci' \
            domain='0x0002' bus='0x03' slot='0x00' function='0x1'/></x></network>";
        assert_eq!(parse_hostdev_pool(empty_hostdev).unwrap().unwrap().addresses, []);
    }
}
