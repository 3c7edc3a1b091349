//! `phbguard groups`: the host's IOMMU groups from its node devices, each device with what
//! uses it (a guest and the guest PHB it sits on, or a hostdev-pool network): what an admin
//! needs before writing `<hostdev>`s, one PHB per group.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use phbguard_core::escape::controls;
use phbguard_core::model::{DeviceKind, Domain as Definition, PciAddr};
use phbguard_core::parse_domain;
use phbguard_core::vfio::{Binding, Blocker, Given, GroupState, judge_group};
use phbguard_io::sysfs::Sysfs;
use serde_json::{Value, json};
use virt::connect::Connect;
use virt::sys;

use crate::networks::{HostdevPool, UnresolvedPf};
use crate::nodedev::{NodeDevices, PciDevice};

/// Who uses a host device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// A guest's persistent definition (or a transient guest's live one) gives it to the guest
    /// at this guest address; `phb` is the PHB index the address's bus is, `target` its
    /// `<target index>` when written.
    Guest {
        domain: String,
        at: Option<PciAddr>,
        phb: Option<u32>,
        target: Option<u32>,
        /// `managed='yes'`: libvirt detaches it from its host driver at start.
        managed: bool,
    },
    /// A hostdev-pool network lists it.
    Network(String),
}

#[derive(Debug)]
pub struct Device {
    pub pci: PciDevice,
    pub users: Vec<User>,
}

#[derive(Debug)]
pub struct Groups {
    /// By group number.
    pub groups: BTreeMap<u32, Vec<Device>>,
    /// PCI devices without an IOMMU group (no IOMMU, or not assignable).
    pub ungrouped: Vec<Device>,
    /// Pools whose `<pf>` gives no VFs here: their VFs (if any) show no network.
    pub unresolved: Vec<UnresolvedPf>,
}

/// Reads the host's PCI devices (from `sysfs` when given, else the connection's node devices)
/// and every guest's definition through `conn`.
pub fn groups(
    conn: &Connect,
    pools: &BTreeMap<String, HostdevPool>,
    sysfs: Option<&Sysfs>,
) -> Result<Groups, String> {
    let nodes = NodeDevices::new(conn);
    let pci = match sysfs {
        Some(sysfs) => crate::sysfs_devices::all_pci(sysfs)?,
        None => nodes.all_pci()?,
    };
    let mut unresolved = Vec::new();
    let users = users(conn, pools, &nodes, &mut unresolved)?;
    let mut out = Groups {
        groups: BTreeMap::new(),
        ungrouped: Vec::new(),
        unresolved,
    };
    for dev in pci {
        let device = Device {
            users: users.get(&dev.addr).cloned().unwrap_or_default(),
            pci: dev,
        };
        match device.pci.iommu_group {
            Some(g) => out.groups.entry(g).or_default().push(device),
            None => out.ungrouped.push(device),
        }
    }
    Ok(out)
}

fn users(
    conn: &Connect,
    pools: &BTreeMap<String, HostdevPool>,
    nodes: &NodeDevices<'_>,
    unresolved: &mut Vec<UnresolvedPf>,
) -> Result<BTreeMap<PciAddr, Vec<User>>, String> {
    let mut users: BTreeMap<PciAddr, Vec<User>> = BTreeMap::new();
    for (name, pool) in pools {
        match pool.vfs(name, nodes)? {
            Ok(vfs) => {
                for addr in vfs {
                    users.entry(addr).or_default().push(User::Network(name.clone()));
                }
            }
            Err(pf) => unresolved.push(pf),
        }
    }
    let domains = conn
        .list_all_domains(0)
        .map_err(|e| format!("libvirt cannot list domains: {e}"))?;
    let mut guests = Vec::new();
    for dom in &domains {
        let name = dom.name().unwrap_or_default();
        // The definition the next start uses; a transient guest has only its live one.
        let flags = if dom.is_persistent().unwrap_or(false) {
            sys::VIR_DOMAIN_XML_INACTIVE
        } else {
            0
        };
        let xml = dom
            .xml_desc(flags)
            .map_err(|e| format!("cannot read the definition of '{name}': {e}"))?;
        let def = parse_domain(xml.as_bytes()).map_err(|e| format!("domain '{name}': {e}"))?;
        guests.push((name, def));
    }
    guests.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, def) in &guests {
        for dev in &def.devices {
            if let DeviceKind::Hostdev { host, managed, .. } = dev.kind {
                users
                    .entry(host)
                    .or_default()
                    .push(guest_user(name, def, dev.address, managed));
            }
        }
    }
    Ok(users)
}

fn guest_user(name: &str, def: &Definition, at: Option<PciAddr>, managed: bool) -> User {
    let bus = at.map(|a| u32::from(a.bus));
    let phb = bus.and_then(|bus| {
        def.pci_controllers()
            .map(|(_, c)| c)
            .find(|c| c.index == bus && c.is_phb())
    });
    let (phb, target) = match (phb, bus) {
        (Some(c), _) => (Some(c.index), c.target_index),
        // libvirt adds the default PHB of a pSeries guest when it is not written.
        (None, Some(0)) if def.is_pseries() => (Some(0), Some(0)),
        _ => (None, None),
    };
    User::Guest {
        domain: name.to_string(),
        at,
        phb: phb.filter(|_| def.is_pseries()),
        target: target.filter(|_| def.is_pseries()),
        managed,
    }
}

impl User {
    fn describe(&self) -> String {
        match self {
            User::Network(n) => format!("network '{n}' (hostdev pool)"),
            User::Guest { domain, at: None, .. } => {
                format!("guest '{domain}' (no guest address: libvirt places it)")
            }
            User::Guest {
                domain,
                at: Some(at),
                phb: Some(phb),
                target,
                ..
            } => {
                let target = target.map(|t| format!(" target {t}")).unwrap_or_default();
                format!("guest '{domain}' at {at} on PHB index {phb}{target}")
            }
            User::Guest {
                domain,
                at: Some(at),
                phb: None,
                ..
            } => format!("guest '{domain}' at {at}"),
        }
    }

    fn json(&self) -> Value {
        match self {
            User::Network(n) => json!({"network": n}),
            User::Guest {
                domain,
                at,
                phb,
                target,
                ..
            } => json!({
                "domain": domain,
                "address": at.map(|a| a.to_string()),
                "phb_index": phb,
                "phb_target": target,
            }),
        }
    }
}

fn device_line(d: &Device) -> String {
    let ids = match (&d.pci.vendor_id, &d.pci.product_id) {
        (Some(v), Some(p)) => format!("{}:{}", v.trim_start_matches("0x"), p.trim_start_matches("0x")),
        _ => "????:????".into(),
    };
    let name = match (&d.pci.vendor, &d.pci.product) {
        (Some(v), Some(p)) => format!("  {v} {p}"),
        (None, Some(p)) => format!("  {p}"),
        _ => String::new(),
    };
    let mut line = format!(
        "  {}  {}  {:<10}{}",
        d.pci.addr,
        controls(&ids),
        controls(d.pci.driver.as_deref().unwrap_or("-")),
        controls(&name)
    )
    // No names (a sysfs tree): no padding left at the end.
    .trim_end()
    .to_owned();
    // Guest and network names and the device's names are libvirt's text: a newline in one
    // must not forge a line.
    for u in &d.users {
        let _ = write!(line, "\n      used by {}", controls(&u.describe()));
    }
    line
}

/// A group as VFIO sees it: as the host holds it now (nothing detached), and for each guest
/// given some of its devices (its managed ones detached at its start).
pub struct Vfio {
    pub now: GroupState,
    pub guests: Vec<(String, GroupState)>,
}

/// Judges a group's devices as the node devices show them (crate core's vfio rules, the ones
/// `iommu-group-not-viable` applies).
pub fn vfio(devices: &[Device]) -> Vfio {
    let members: Vec<PciAddr> = devices.iter().map(|d| d.pci.addr).collect();
    let bindings: BTreeMap<PciAddr, Binding> = devices
        .iter()
        .map(|d| {
            let binding = Binding {
                driver: Ok(d.pci.driver.clone()),
                bridge: Some(Ok(d.pci.bridge)),
            };
            (d.pci.addr, binding)
        })
        .collect();
    let binding = |a: PciAddr| bindings.get(&a);
    let mut given: BTreeMap<&str, Vec<Given>> = BTreeMap::new();
    for d in devices {
        for u in &d.users {
            if let User::Guest { domain, managed, .. } = u {
                given.entry(domain).or_default().push(Given {
                    addr: d.pci.addr,
                    managed: *managed,
                });
            }
        }
    }
    Vfio {
        now: judge_group(Ok(&members), binding, &[]),
        guests: given
            .into_iter()
            .map(|(guest, given)| (guest.to_string(), judge_group(Ok(&members), binding, &given)))
            .collect(),
    }
}

/// The text lines of a group's VFIO state.
fn vfio_lines(v: &Vfio) -> Vec<String> {
    let blockers = |s: &GroupState| {
        s.blockers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if v.guests.is_empty() {
        return vec![if v.now.viable() {
            "  VFIO: every device is free for a guest (on vfio-pci, no driver, or one that shares)".into()
        } else {
            format!(
                "  VFIO: held by the host: {}; a guest given this group needs them detached or \
                 given to it managed",
                blockers(&v.now)
            )
        }];
    }
    v.guests
        .iter()
        .map(|(guest, s)| {
            if s.viable() {
                format!("  VFIO: viable for guest '{}'", controls(guest))
            } else {
                format!(
                    "  VFIO: not viable for guest '{}': {}",
                    controls(guest),
                    blockers(s)
                )
            }
        })
        .collect()
}

fn state_json(s: &GroupState) -> Value {
    json!({
        "viable": s.viable(),
        "blockers": s.blockers.iter().map(|b| json!({
            "address": b.addr().to_string(),
            "driver": b.driver(),
            "unmanaged_hostdev": matches!(b, Blocker::Unmanaged { .. }),
        })).collect::<Vec<_>>(),
        "unknown": s.unknown.iter().map(|(a, why)| json!({
            "address": a.map(|a| a.to_string()),
            "why": why,
        })).collect::<Vec<_>>(),
    })
}

fn vfio_json(v: &Vfio) -> Value {
    let mut now = state_json(&v.now);
    now["guests"] = Value::Array(
        v.guests
            .iter()
            .map(|(guest, s)| {
                let mut j = state_json(s);
                j["domain"] = json!(guest);
                j
            })
            .collect(),
    );
    now
}

pub fn text(g: &Groups) -> String {
    let mut out = String::new();
    for (group, devices) in &g.groups {
        let mut nodes: Vec<String> = devices
            .iter()
            .map(|d| d.pci.numa_node.map_or("-".into(), |n| n.to_string()))
            .collect();
        nodes.dedup();
        let _ = writeln!(out, "IOMMU group {group} (NUMA node {})", nodes.join(","));
        for d in devices {
            let _ = writeln!(out, "{}", device_line(d));
        }
        for line in vfio_lines(&vfio(devices)) {
            let _ = writeln!(out, "{line}");
        }
    }
    if !g.ungrouped.is_empty() {
        let _ = writeln!(out, "No IOMMU group (cannot be assigned to a guest)");
        for d in &g.ungrouped {
            let _ = writeln!(out, "{}", device_line(d));
        }
    }
    let devices: usize = g.groups.values().map(Vec::len).sum();
    let _ = writeln!(
        out,
        "{} IOMMU group{}, {devices} PCI device{} in them; a guest needs one PHB per group it uses",
        g.groups.len(),
        if g.groups.len() == 1 { "" } else { "s" },
        if devices == 1 { "" } else { "s" }
    );
    out
}

fn device_json(d: &Device) -> Value {
    json!({
        "address": d.pci.addr.to_string(),
        "vendor_id": d.pci.vendor_id,
        "product_id": d.pci.product_id,
        "vendor": d.pci.vendor,
        "product": d.pci.product,
        "driver": d.pci.driver,
        "numa_node": d.pci.numa_node,
        "used_by": d.users.iter().map(User::json).collect::<Vec<_>>(),
    })
}

pub fn json(g: &Groups) -> Value {
    let groups: Vec<Value> = g
        .groups
        .iter()
        .map(|(n, devices)| {
            json!({
                "group": n,
                "devices": devices.iter().map(device_json).collect::<Vec<_>>(),
                "vfio": vfio_json(&vfio(devices)),
            })
        })
        .collect();
    // The stderr warnings, for scripts that read only the JSON.
    let unresolved: Vec<Value> = g
        .unresolved
        .iter()
        .map(|u| json!({"network": u.network, "pf": u.pf, "why": u.why}))
        .collect();
    json!({
        "groups": groups,
        "ungrouped": g.ungrouped.iter().map(device_json).collect::<Vec<_>>(),
        "unresolved_pools": unresolved,
    })
}
