//! The reports for scripts: `check`'s in the shape rules.md fixes (`{"results": [...]}`), and
//! `fix`'s (docs/fix.md).

use serde_json::{Map, Value, json};

use super::Judged;
use crate::fix::{Change, Fixed};
use crate::host::Facts;
use crate::model::{DeviceKind, Domain, Subject};
use crate::rules::Finding;
use crate::topology::{Bus, Topology};

/// One file named on the command line: judged, or the reason it could not be. A file that
/// could not be read still gets an entry, so a script sees every file it asked about.
pub enum Entry<'a> {
    /// A document that was read and judged.
    Judged(&'a Judged),
    /// A file that could not be read or parsed.
    Unreadable {
        /// The file as named on the command line.
        file: &'a str,
        /// Why, as its stderr line says it.
        error: String,
    },
}

/// `check --format json`: one entry per file, in command-line order.
pub fn results(all: &[Entry]) -> Value {
    let results: Vec<Value> = all
        .iter()
        .map(|entry| match entry {
            Entry::Judged(j) => result(j),
            Entry::Unreadable { file, error } => unreadable(file, error),
        })
        .collect();
    json!({ "results": results })
}

/// The entry of a file that could not be read or parsed: `{"file", "error"}`.
pub fn unreadable(file: &str, error: &str) -> Value {
    json!({ "file": file, "error": error })
}

/// One finding, as every JSON report writes it.
pub fn finding(f: &Finding) -> Value {
    json!({
        "rule": f.rule.id.as_str(),
        "severity": f.severity().as_str(),
        "device": f.device,
        "message": f.message,
        "line": f.line,
    })
}

fn result(j: &Judged) -> Value {
    let findings: Vec<Value> = j.findings.iter().map(finding).collect();
    json!({
        "file": j.file,
        "domain": j.domain,
        "uuid": j.uuid,
        "pseries": j.pseries,
        "findings": findings,
        "topology": j.topology,
    })
}

/// `topology`: the guest's PCI buses as the rules saw them, from the one model they judge
/// ([`Topology`]) on the same host facts: every PHB (written or implied by libvirt), every
/// bridge, and every device with a guest PCI address, with the PHB it hangs under and, for a
/// hostdev, its host device and IOMMU group. Each entry lists the positions in `findings` of the
/// findings about it, so a drawing can mark them. `null` for a guest that is not pSeries (only
/// `multiple-pci-roots` applies; it has no PHBs to show).
pub fn topology(domain: &Domain, facts: &Facts, findings: &[Finding]) -> Value {
    if !domain.is_pseries() {
        return Value::Null;
    }
    let t = Topology::new(domain, facts);
    let about = |wanted: &dyn Fn(Subject) -> bool| -> Vec<usize> {
        (0..findings.len())
            .filter(|&k| wanted(findings[k].subject))
            .collect()
    };
    let mut phbs = Vec::new();
    let mut bridges = Vec::new();
    for (bus, kind) in t.buses() {
        let index = u32::from(bus);
        let controller = t.controller(bus);
        let position = match kind {
            Bus::Phb(p) => p,
            Bus::Bridge(p) => Some(p),
            Bus::Unused => continue,
        };
        let on_it =
            about(&|s| s == Subject::Controller(index) || position.is_some_and(|p| s == Subject::Device(p)));
        let line = position.map(|p| t.device(p).line);
        match kind {
            Bus::Phb(_) => phbs.push(json!({
                "index": index,
                // libvirt gives the default PHB target 0 when it adds it.
                "target": controller.map_or((bus == 0).then_some(0), |c| c.target_index),
                "default": bus == 0,
                "written": controller.is_some(),
                "model_name": controller.and_then(|c| c.model_name.as_deref()),
                "numa_node": controller.and_then(|c| c.numa_node),
                "line": line,
                "findings": on_it,
            })),
            _ => bridges.push(json!({
                "index": index,
                "model": controller.and_then(|c| c.model.as_deref()),
                "address": position.and_then(|p| t.device(p).address).map(|a| a.to_string()),
                "phb": t.root_phb(bus),
                "line": line,
                "findings": on_it,
            })),
        }
    }
    let devices: Vec<Value> = t
        .addressed()
        .map(|(i, address)| {
            let device = t.device(i);
            let kind = if matches!(device.kind, DeviceKind::Hostdev { .. }) {
                "hostdev"
            } else if t.is_pool_interface(i) {
                "pool-interface"
            } else {
                "emulated"
            };
            let group = t.group(i);
            json!({
                "device": device.name(),
                "element": device.element,
                "kind": kind,
                "address": address.to_string(),
                "bus": address.bus,
                "phb": t.root_phb(address.bus),
                "host": device.host_addr().map(|a| a.to_string()),
                "iommu_group": group.and_then(Result::ok),
                "iommu_group_unknown": group.and_then(|g| g.err()).map(ToString::to_string),
                "network": device.network,
                "line": device.line,
                // A bridge is a device on its bus too: findings about the controller are its.
                "findings": about(&|s| {
                    s == Subject::Device(i)
                        || matches!(&device.kind, DeviceKind::PciController(c) if s == Subject::Controller(c.index))
                }),
            })
        })
        .collect();
    json!({ "phbs": phbs, "bridges": bridges, "devices": devices })
}

/// `fix --format json`: what the rewrite of `file` (parsed into `domain`) changes, and what it
/// leaves broken. `changed` says whether the output differs from the input.
pub fn fixed(file: &str, domain: &Domain, fixed: &Fixed, changed: bool) -> Value {
    let mut report = fix_report(domain, fixed, changed);
    report.insert("file".into(), json!(file));
    Value::Object(report)
}

/// What every fix report says, whatever was fixed (a file, or a libvirt domain for `fix
/// --domain`, which adds its own fields): `domain`, `uuid`, `pseries`, `fixed`, `changed`,
/// `changes` (one object each, [`change`]), `problems` and `host_notes` (what the host, not the
/// definition, must change: a group VFIO cannot open).
pub fn fix_report(domain: &Domain, fixed: &Fixed, changed: bool) -> Map<String, Value> {
    let changes: Vec<Value> = fixed.plan.changes.iter().map(|c| change(c, domain)).collect();
    let report = json!({
        "domain": domain.name,
        "uuid": domain.uuid,
        "pseries": domain.is_pseries(),
        "fixed": fixed.is_clean(),
        "changed": changed,
        "changes": changes,
        "problems": fixed.problems().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "host_notes": fixed.host_notes().iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    let mut map = match report {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    };
    // Only when asked for: a rewrite without spares reports what it always did.
    let spares = &fixed.plan.spares;
    if spares.wanted > 0 {
        map.insert(
            "spare_phbs".into(),
            json!({"wanted": spares.wanted, "kept": spares.kept, "short": spares.shortfall()}),
        );
    }
    map
}

/// One change of a fix plan on `domain`: its `kind`, its fields and `summary`, the line the
/// text output prints.
pub fn change(change: &Change, domain: &Domain) -> Value {
    let summary = change.describe(domain);
    match *change {
        Change::Move { device, from, to } => json!({
            "kind": "move",
            "device": domain.devices[device].name(),
            "from": from.map(|a| a.to_string()),
            "to": to.to_string(),
            "summary": summary,
        }),
        Change::AddPhb { index, target, node } => json!({
            "kind": "add-phb", "index": index, "target": target, "node": node,
            "summary": summary,
        }),
        Change::AddSparePhb { index, target, node } => json!({
            "kind": "add-spare-phb", "index": index, "target": target, "node": node,
            "summary": summary,
        }),
        Change::Retarget { index, from, to, .. } => json!({
            "kind": "retarget", "index": index, "from": from, "to": to,
            "summary": summary,
        }),
        Change::SetPhbModel { index, ref from, .. } => json!({
            "kind": "set-phb-model", "index": index, "from": from, "summary": summary,
        }),
        Change::RemoveController { index, .. } => json!({
            "kind": "remove-controller", "index": index, "summary": summary,
        }),
        Change::RaiseHardLimit { from_kib, to_kib } => json!({
            "kind": "raise-hard-limit", "from_kib": from_kib, "to_kib": to_kib,
            "summary": summary,
        }),
    }
}
