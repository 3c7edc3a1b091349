//! libvirt networks that are hostdev pools (`<forward mode='hostdev'>`): an `<interface
//! type='network'>` on one becomes a VFIO hostdev of a VF picked from the pool at start
//! (src/conf/virnetworkobj.c, `networkAllocatePort`; docs/libvirt.md, "Isolation groups"), and
//! the VFs such a pool hands out.

use std::collections::BTreeMap;
use std::fmt;

use phbguard_core::model::PciAddr;
use quick_xml::Reader;
use quick_xml::events::Event;
use virt::connect::Connect;

use crate::nodedev::{NodeDevices, address_attrs, attr_of as attr};

/// One hostdev-pool network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostdevPool {
    /// The VFs it lists (`<forward><address type='pci' .../>`).
    pub addresses: Vec<PciAddr>,
    /// The PFs it draws VFs from (`<forward><pf dev='enP2p2s0f0'/>`).
    pub pf_devs: Vec<String>,
}

/// A pool whose `<pf>` leads to no VFs through the host's node devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedPf {
    pub network: String,
    pub pf: String,
    /// What the node devices say instead.
    pub why: String,
}

impl fmt::Display for UnresolvedPf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "network '{}': its PF '{}' {}; no VF is shown as the network's",
            self.network, self.pf, self.why
        )
    }
}

impl HostdevPool {
    /// The VFs the pool `network` hands out, as libvirt's network driver fills the pool when
    /// the network starts (src/network/bridge_driver.c, `networkCreateInterfacePool`): the
    /// `<address>`es when it lists any (a running pool lists those it drew from its PF too),
    /// else the virtual functions of its one `<pf>` netdev (`virNetDevGetVirtualFunctions`).
    /// Those are read from node devices, so a remote connection answers for its own host: the
    /// `net` device whose `<interface>` is the PF, its parent PCI device, and that device's
    /// `<capability type='virt_functions'>` (docs/libvirt.md, "A hostdev pool that names its PF").
    ///
    /// `Err`: libvirt failed; `Ok(Err)`: the PF leads to no VFs, which libvirt would refuse too
    /// when starting the network.
    pub fn vfs(
        &self,
        network: &str,
        nodes: &NodeDevices<'_>,
    ) -> Result<Result<Vec<PciAddr>, UnresolvedPf>, String> {
        // libvirt keeps one <pf> ("Only one <pf> element is allowed", virNetworkForwardDefParseXML).
        let Some(pf) = self.pf_devs.first().filter(|_| self.addresses.is_empty()) else {
            return Ok(Ok(self.addresses.clone()));
        };
        let unresolved = |why: String| {
            Ok(Err(UnresolvedPf {
                network: network.to_string(),
                pf: pf.clone(),
                why,
            }))
        };
        let Some(port) = nodes.net_interface(pf)? else {
            return unresolved(format!(
                "is no network interface of this host (no node device has <interface>{pf}</interface>)"
            ));
        };
        let pci = match &port.parent {
            Some(parent) => nodes.pci_named(parent)?,
            None => None,
        };
        let Some(pci) = pci else {
            let parent = port
                .parent
                .map_or("no parent".into(), |p| format!("parent '{p}'"));
            return unresolved(format!(
                "is no PCI function's interface (its node device {} has {parent})",
                port.name
            ));
        };
        if pci.virt_functions.is_empty() {
            return unresolved(format!(
                "has no VFs (its PCI device {} lists no virt_functions)",
                pci.addr
            ));
        }
        Ok(Ok(pci.virt_functions))
    }
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

    #[test]
    fn a_pool_that_lists_addresses_uses_them_and_not_its_pf() {
        // What a running pool started from a PF looks like: libvirt formats the <pf> and the
        // VFs it drew from it (virNetworkDefFormatBuf). The PF is not looked up, so it need
        // not exist on test:///default.
        let running = "<network><name>p</name><forward mode='hostdev'><pf dev='enP2p3s0f0'/>\
            <address type='pci' domain='0x0002' bus='0x03' slot='0x00' function='0x1'/>\
            </forward></network>";
        let pool = parse_hostdev_pool(running).unwrap().unwrap();
        virt::error::clear_error_callback();
        let conn = Connect::open(Some("test:///default")).unwrap();
        let nodes = NodeDevices::new(&conn);
        let vfs: Vec<String> = pool
            .vfs("p", &nodes)
            .unwrap()
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(vfs, ["0002:03:00.1"]);
        // Defined but not running: only the PF, which this host lacks.
        let defined = HostdevPool {
            addresses: Vec::new(),
            ..pool
        };
        let unresolved = defined.vfs("p", &nodes).unwrap().unwrap_err();
        assert_eq!(
            (unresolved.network.as_str(), unresolved.pf.as_str()),
            ("p", "enP2p3s0f0")
        );
    }
}
