//! A PHB tied to a guest NUMA cell should sit near its host devices.

use super::{Finding, Rule, RuleId, Severity};

pub(super) const PHB_NUMA_MISMATCH: Rule = Rule {
    id: RuleId::PhbNumaMismatch,
    severity: Severity::Warning,
    summary: "a PHB's guest NUMA node (`<target><node>`) takes its memory (`<numatune><memnode>`) from host nodes that do not hold a hostdev directly on it",
    explanation: "\
What: a PHB has <target><node>G</node></target>, <numatune><memnode cellid='G' nodeset='...'>
backs guest cell G with some host NUMA nodes, and a hostdev on that PHB sits on a host node
that is not among them (/sys/bus/pci/devices/DDDD:BB:SS.F/numa_node).

Why: the guest kernel allocates DMA buffers for the device from cell G's memory, which the host
takes from the nodeset; with the device on another host node every DMA crosses the inter-node
link (the SMP/X-bus on POWER), costing bandwidth and latency. It works, so this is a warning.

Fix by hand: tie the PHB to the guest cell whose memnode includes the device's host node
(change <node>), or change that cell's nodeset, or drop <node> from the PHB.",
    bad: include_str!("examples/phb-numa-mismatch.bad.xml"),
    good: include_str!("examples/phb-numa-mismatch.good.xml"),
    check: |rule, t, out| {
        if !t.pseries {
            return;
        }
        for (_, c) in t.written_phbs() {
            let Some(cell) = c.numa_node else { continue };
            let Some(memnode) = t.domain.memnodes.iter().find(|m| m.cell == cell) else {
                continue;
            };
            let Ok(bus) = u8::try_from(c.index) else { continue };
            for h in t.hostdevs_on(bus) {
                let Some(node) = t.numa_node(h.device) else {
                    continue;
                };
                if memnode.host_nodes.contains(&node) {
                    continue;
                }
                let nodes: Vec<String> = memnode.host_nodes.iter().map(u32::to_string).collect();
                out.push(Finding::about_device(
                    rule,
                    t,
                    h.device,
                    &format!(
                        "is on host NUMA node {node}, but its PHB (controller pci index {}) is tied to \
                         guest cell {cell}, whose memory comes from host node(s) {}; tie the PHB to a \
                         cell backed by node {node}",
                        c.index,
                        nodes.join(",")
                    ),
                ));
            }
        }
    },
};
