// The drawing of one guest definition: its PHBs side by side, each with the devices that hang
// under it, every passed-through device filled with the colour of its host IOMMU group, and
// each finding marked where it is (a numbered badge linking to the rule's explanation). It
// draws the `topology` of `phbguard audit --format json` as it is: no rule is worked out here.

const SVG = "http://www.w3.org/2000/svg";
const BOX = 300; // width of a PHB
const GAP = 18;
const COLUMNS = 3;
const HEADER = 46;
const ROW = 38;
const LABEL_CHARS = 34;

// PatternFly's chart palette (light shades, so black text stays readable), one per IOMMU group.
// No grey: emulated devices are grey.
const PALETTE = ["#8bc1f7", "#bde2b9", "#b2b0ea", "#a2d9d9", "#f9e0a2", "#f4b678", "#73c5c5",
    "#f6d173", "#a18fff", "#7cc674", "#f0ab00"];

export function groupColour(group) {
    return PALETTE[((group % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {}))
        if (v !== null && v !== undefined) el.setAttribute(k, v);
    for (const c of children.flat())
        if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
}

function short(text) {
    return text.length > LABEL_CHARS ? text.slice(0, LABEL_CHARS - 1) + "…" : text;
}

// The worst severity among `indexes` of `findings`.
function worst(findings, indexes) {
    if (indexes.some(i => findings[i].severity === "error")) return "error";
    return indexes.length ? "warning" : null;
}

// Numbered badges for the findings `indexes`, right-aligned at (x, y), each a link to its rule.
function badges(findings, indexes, x, y, opts) {
    return indexes.map((i, n) => {
        const f = findings[i];
        const cx = x - n * 24;
        return s("a", { href: opts.explainHref(f.rule), class: "phbguard-marker", "data-finding": String(i), "data-rule": f.rule },
                 s("title", {}, `${f.rule}: ${f.message}`),
                 s("circle", { cx, cy: y, r: 10, class: `phbguard-badge phbguard-badge-${f.severity}` }),
                 s("text", { x: cx, y: y + 4, "text-anchor": "middle", class: "phbguard-badge-text" }, String(i + 1)));
    });
}

function deviceRow(d, findings, x, y, opts) {
    const { _, fmt } = opts;
    const sev = worst(findings, d.findings);
    const behind = d.bus !== d.phb;
    const indent = behind ? 16 : 0;
    let fill = "#f0f0f0";
    let detail = d.address;
    if (d.kind === "hostdev") {
        fill = d.iommu_group === null ? "#ffffff" : groupColour(d.iommu_group);
        detail = d.iommu_group === null
            ? fmt(_("$0 · IOMMU group unknown"), d.address)
            : fmt(_("$0 · IOMMU group $1"), d.address, d.iommu_group);
    } else if (d.kind === "pool-interface") {
        fill = "#ffffff";
        detail = fmt(_("$0 · hostdev pool $1"), d.address, d.network);
    }
    if (behind) detail = fmt(_("$0 · behind bus $1"), detail, d.bus);
    const title = [d.device, detail, d.iommu_group_unknown ? fmt(_("group unknown: $0"), d.iommu_group_unknown) : null]
            .concat(d.findings.map(i => `${findings[i].rule}: ${findings[i].message}`)).filter(Boolean).join("\n");
    return s("g", {
        class: `phbguard-device phbguard-kind-${d.kind}${sev ? " phbguard-" + sev : ""}`,
        "data-address": d.address, "data-kind": d.kind, "data-phb": d.phb === null ? "" : String(d.phb),
        "data-bus": String(d.bus), "data-host": d.host, "data-group": d.iommu_group === null ? null : String(d.iommu_group),
    },
             s("title", {}, title),
             s("rect", {
                 x: x + 8 + indent, y, width: BOX - 16 - indent, height: ROW - 6, rx: 3, fill,
                 class: "phbguard-device-box", "stroke-dasharray": d.kind === "pool-interface" || (d.kind === "hostdev" && d.iommu_group === null) ? "4 3" : null,
             }),
             s("text", { x: x + 16 + indent, y: y + 14, class: "phbguard-device-name" }, short(d.device)),
             s("text", { x: x + 16 + indent, y: y + 27, class: "phbguard-device-detail" }, short(detail)),
             badges(findings, d.findings, x + BOX - 22, y + (ROW - 6) / 2, opts));
}

function phbBox(phb, devices, findings, x, y, opts) {
    const { _, fmt } = opts;
    const height = HEADER + Math.max(devices.length, 1) * ROW + 8;
    const sev = worst(findings, phb.findings);
    let title = phb.index === null
        ? _("Not under a PHB")
        : phb.target === null ? fmt(_("PHB $0"), phb.index) : fmt(_("PHB $0 · target $1"), phb.index, phb.target);
    let sub = phb.default ? _("default PHB: emulated devices") : "";
    if (phb.numa_node !== null && phb.numa_node !== undefined) sub = [sub, fmt(_("NUMA node $0"), phb.numa_node)].filter(Boolean).join(" · ");
    if (phb.written === false) sub = [sub, _("added by libvirt")].filter(Boolean).join(" · ");
    const rows = devices.map((d, i) => deviceRow(d, findings, x, y + HEADER + i * ROW, opts));
    if (!devices.length)
        rows.push(s("text", { x: x + 16, y: y + HEADER + 20, class: "phbguard-device-detail" }, _("nothing on it")));
    return [s("g", {
        class: `phbguard-phb${phb.default ? " phbguard-default" : ""}${sev ? " phbguard-" + sev : ""}`,
        "data-index": phb.index === null ? "" : String(phb.index), "data-target": phb.target === null ? "" : String(phb.target),
    },
              s("rect", { x, y, width: BOX, height, rx: 6, class: "phbguard-phb-box" }),
              s("text", { x: x + 12, y: y + 19, class: "phbguard-phb-title" }, title),
              s("text", { x: x + 12, y: y + 36, class: "phbguard-device-detail" }, sub),
              badges(findings, phb.findings || [], x + BOX - 18, y + 18, opts),
              rows), height];
}

export function drawTopology(topology, findings, opts) {
    const { _, fmt } = opts;
    const boxes = topology.phbs.map(p => ({
        phb: p,
        devices: topology.devices.filter(d => d.phb === p.index)
                .sort((a, b) => (a.bus !== p.index) - (b.bus !== p.index) || a.address.localeCompare(b.address)),
    }));
    const lost = topology.devices.filter(d => d.phb === null);
    if (lost.length) boxes.push({ phb: { index: null, target: null, findings: [] }, devices: lost });

    const parts = [];
    let y = 0;
    let width = 0;
    for (let row = 0; row < boxes.length; row += COLUMNS) {
        let tallest = 0;
        boxes.slice(row, row + COLUMNS).forEach((b, col) => {
            const x = col * (BOX + GAP);
            const [g, height] = phbBox(b.phb, b.devices, findings, x, y, opts);
            parts.push(g);
            tallest = Math.max(tallest, height);
            width = Math.max(width, x + BOX);
        });
        y += tallest + GAP;
    }
    const svg = s("svg", {
        class: "phbguard-topology", role: "img", viewBox: `-2 -2 ${width + 4} ${y - GAP + 4}`,
        width: width + 4, "aria-label": fmt(_("$0 PHBs and the devices on each"), topology.phbs.length),
    }, parts);

    const groups = [...new Set(topology.devices.filter(d => d.iommu_group !== null).map(d => d.iommu_group))].sort((a, b) => a - b);
    const legend = document.createElement("ul");
    legend.className = "phbguard-legend";
    for (const g of groups) {
        const li = document.createElement("li");
        const sw = document.createElement("span");
        sw.className = "phbguard-swatch";
        sw.style.backgroundColor = groupColour(g);
        li.append(sw, fmt(_("IOMMU group $0"), g));
        legend.append(li);
    }
    const wrap = document.createElement("div");
    wrap.className = "phbguard-topology-wrap";
    wrap.append(svg, legend);
    // Inside an SVG, <a href> would leave the page; go through cockpit's location instead.
    svg.addEventListener("click", ev => {
        const a = ev.target.closest("a");
        if (!a) return;
        ev.preventDefault();
        opts.go(["rule", a.getAttribute("data-rule")]);
    });
    return wrap;
}
