// phbguard's page in Cockpit. It holds no rules and reads no domain XML: everything it shows
// is what `phbguard audit`, `groups`, `explain` and `fix --domain` print as JSON (docs/rules.md,
// the contract), run through cockpit.spawn. Routes (the URL's hash, so a reload keeps the view):
// '' the guests and the host's IOMMU groups, 'guest/NAME' one guest drawn, 'rule/ID' a rule's
// explanation.

import { drawTopology, groupColour } from "./topology.js";

const cockpit = window.cockpit;
// The system's libvirt, as cockpit-machines uses it: a user without administrative access
// reaches it through libvirt's read-only socket (libvirt's default for such a user would be
// their own qemu:///session, which has none of the host's guests).
const URI = "qemu:///system";
const _ = cockpit.gettext;
const fmt = cockpit.format;

// ---------------------------------------------------------------------------------------------
// DOM helpers: every value from the JSON goes in as text, never as markup.

function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === null || v === undefined || v === false) continue;
        if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
        if (c === null || c === undefined || c === false) continue;
        el.append(c instanceof Node ? c : String(c));
    }
    return el;
}

function clear(el, ...children) {
    el.replaceChildren(...children.flat().filter(c => c !== null && c !== undefined && c !== false));
}

function label(text, colour) {
    return h("span", { class: `pf-c-label pf-m-${colour || "grey"}` },
             h("span", { class: "pf-c-label__content" }, text));
}

function alert(kind, title, body) {
    return h("div", { class: `pf-c-alert pf-m-inline pf-m-${kind}`, role: kind === "danger" ? "alert" : "status" },
             h("p", { class: "pf-c-alert__title" }, title),
             body ? h("div", { class: "pf-c-alert__description" }, body) : null);
}

function card(title, ...body) {
    return h("article", { class: "pf-c-card" },
             h("div", { class: "pf-c-card__title" }, h("h2", { class: "pf-c-title pf-m-lg" }, title)),
             h("div", { class: "pf-c-card__body" }, ...body));
}

function button(text, kind, onclick, attrs) {
    return h("button", { class: `pf-c-button pf-m-${kind}`, type: "button", onclick, ...attrs }, text);
}

function link(text, path, attrs) {
    return h("a", {
        href: "#/" + path.map(encodeURIComponent).join("/"),
        onclick: ev => { ev.preventDefault(); cockpit.location.go(path) },
        ...attrs,
    }, text);
}

function table(caption, head, rows, attrs) {
    return h("table", { class: "pf-c-table pf-m-compact pf-m-grid-md", role: "grid", "aria-label": caption, ...attrs },
             h("thead", {}, h("tr", {}, head.map(c => h("th", { scope: "col" }, c)))),
             h("tbody", {}, rows));
}

// ---------------------------------------------------------------------------------------------
// Running phbguard.

// What a failed run says: its stderr (phbguard's one-line errors), else cockpit's reason.
function failure(ex) {
    const text = (ex && ex.message) || cockpit.message(ex);
    return text.replace(/^phbguard: /gm, "").trim();
}

// Runs phbguard with `args`; resolves with its parsed JSON when it printed one (exit 1 is a
// verdict, not a failure: audit exits 1 when a guest breaks a rule), rejects with the error.
function phbguard(args, superuser) {
    return new Promise((resolve, reject) => {
        cockpit.spawn(["phbguard", ...args], { superuser, err: "message" })
                .then((out, stderr) => resolve({ json: JSON.parse(out), exit: 0, stderr: stderr || "" }),
                      (ex, out) => {
                          if (ex.exit_status === 1 && out) {
                              try {
                                  resolve({ json: JSON.parse(out), exit: 1, stderr: ex.message || "" });
                                  return;
                              } catch (e) { /* not JSON: a failure as any other */ }
                          }
                          reject(ex);
                      });
    });
}

// ---------------------------------------------------------------------------------------------
// State

const state = {
    admin: null, // superuser available: may fix
    audit: null, // `audit --format json`
    groups: null,
    error: null, // why audit could not run (libvirt down, phbguard missing)
    groupsError: null,
    loading: false,
    notice: null, // the outcome of the last fix, shown once
    fix: null, // { name, proposal, busy, error } while a fix is reviewed
    explain: {}, // rule id -> `explain --format json`
};

const permission = cockpit.permission({ admin: true });
permission.addEventListener("changed", () => { state.admin = permission.allowed; render() });

async function load() {
    state.loading = true;
    render();
    // Read-only: audit and groups connect to libvirt's read-only socket, which any user may use;
    // as root when the user has administrative access (the policy file, every guest).
    const [audit, groups] = await Promise.allSettled([
        phbguard(["audit", "--connect", URI, "--format", "json"], "try"),
        phbguard(["groups", "--connect", URI, "--format", "json"], "try"),
    ]);
    state.loading = false;
    if (audit.status === "fulfilled") {
        state.audit = audit.value.json;
        state.error = null;
    } else {
        state.audit = null;
        state.error = failure(audit.reason);
    }
    state.groups = groups.status === "fulfilled" ? groups.value.json : null;
    state.groupsError = groups.status === "fulfilled" ? null : failure(groups.reason);
    render();
}

// ---------------------------------------------------------------------------------------------
// Views

const content = () => document.getElementById("content");

function render() {
    const path = cockpit.location.path;
    renderAlerts();
    if (path[0] === "guest" && path[1]) renderGuest(path[1]);
    else if (path[0] === "rule" && path[1]) renderRule(path[1]);
    else renderOverview();
}

function renderAlerts() {
    const alerts = [];
    if (state.admin === false)
        alerts.push(alert("info", _("Limited access: this page is read-only"),
                          _("Guests, their PHBs and the host's IOMMU groups are shown as a user without administrative access can read them. Turn on administrative access to fix a guest.")));
    if (state.error) {
        const down = /cannot (connect|open)|Failed to connect|libvirt-sock|no connection/i.test(state.error);
        alerts.push(alert("danger",
                          down ? _("Cannot reach libvirt: is libvirtd (or virtqemud) running?") : _("phbguard audit failed"),
                          h("pre", { class: "phbguard-error-text" }, state.error)));
    }
    if (state.notice) alerts.push(alert(state.notice.kind, state.notice.title, state.notice.body));
    clear(document.getElementById("alerts"), alerts);
    document.getElementById("alerts").hidden = alerts.length === 0;
}

function breadcrumb(items) {
    const nav = document.getElementById("breadcrumb");
    if (!items) { clear(nav); return }
    clear(nav, h("ol", { class: "pf-c-breadcrumb__list" },
                 items.map((it, i) => h("li", { class: "pf-c-breadcrumb__item" },
                                        i > 0 ? h("span", { class: "pf-c-breadcrumb__item-divider" }, "›") : null,
                                        it.path ? link(it.text, it.path, { class: "pf-c-breadcrumb__link" })
                                            : h("span", { class: "pf-c-breadcrumb__link pf-m-current", "aria-current": "page" }, it.text)))));
}

function setTitle(text) {
    document.getElementById("title").textContent = text;
}

function refreshButton() {
    return button(state.loading ? _("Reading…") : _("Refresh"), "secondary", () => load(),
                  { id: "refresh", disabled: state.loading });
}

function spinner() {
    return h("div", { class: "pf-c-empty-state" }, h("div", { class: "pf-c-empty-state__content" },
             h("span", { class: "pf-c-spinner", role: "progressbar", "aria-label": _("Loading") },
               h("span", { class: "pf-c-spinner__clipper" }), h("span", { class: "pf-c-spinner__lead-ball" }),
               h("span", { class: "pf-c-spinner__tail-ball" }))));
}

function counts(r) {
    const n = sev => r.findings.filter(f => f.severity === sev).length;
    return { errors: n("error"), warnings: n("warning") };
}

function worstRule(r) {
    const f = r.findings.find(f => f.severity === "error") || r.findings.find(f => f.severity === "warning");
    return f ? f.rule : null;
}

function renderOverview() {
    setTitle(_("PHB isolation"));
    breadcrumb(null);
    if (!state.audit && !state.error) { clear(content(), spinner()); return }
    const parts = [h("div", { class: "phbguard-toolbar" }, refreshButton())];
    if (state.audit) parts.push(guestsCard(state.audit));
    parts.push(groupsCard());
    clear(content(), h("div", { class: "pf-l-stack pf-m-gutter" }, parts.map(p => h("div", { class: "pf-l-stack__item" }, p))));
}

function guestsCard(audit) {
    const rows = audit.results.map(r => {
        const c = counts(r);
        const worst = worstRule(r);
        return h("tr", { "data-domain": r.domain, "data-definition": r.definition },
                 h("td", { "data-label": _("Name") }, link(r.domain, ["guest", r.domain], { class: "phbguard-guest-link" })),
                 h("td", { "data-label": _("State") }, r.state),
                 h("td", { "data-label": _("Definition") }, r.definition === "live" ? _("live") : _("persistent")),
                 h("td", { "data-label": _("pSeries") }, r.pseries ? _("yes") : _("no")),
                 h("td", { "data-label": _("Errors"), "data-errors": c.errors }, c.errors ? label(String(c.errors), "red") : "0"),
                 h("td", { "data-label": _("Warnings"), "data-warnings": c.warnings }, c.warnings ? label(String(c.warnings), "orange") : "0"),
                 h("td", { "data-label": _("Worst rule"), "data-worst": worst || "" }, worst ? link(worst, ["rule", worst]) : "-"),
                 h("td", { "data-label": _("Opted out"), "data-opted-out": String(r.opted_out) },
                   r.opted_out ? fmt(_("yes ($0)"), r.opt_out) : r.metadata_error ? label(_("bad mode"), "orange") : _("no")),
                 h("td", { "data-label": _("Start refused"), "data-start-refused": String(r.start_refused) },
                   r.start_refused ? label(_("refused"), "red") : _("no")));
    });
    const unreadable = (audit.unreadable || []).map(u => alert("warning", fmt(_("Guest $0 could not be read"), u.domain), u.error));
    const body = audit.results.length
        ? table(_("Guests"), [_("Name"), _("State"), _("Definition"), _("pSeries"), _("Errors"), _("Warnings"),
            _("Worst rule"), _("Opted out"), _("Start refused")], rows, { id: "guests" })
        : h("p", { id: "guests-empty" }, _("libvirt has no guests on this host."));
    return card(_("Guests"), unreadable, body);
}

function groupsCard() {
    if (state.groupsError)
        return card(_("Host IOMMU groups"), alert("danger", _("phbguard groups failed"), h("pre", { class: "phbguard-error-text" }, state.groupsError)));
    if (!state.groups) return card(_("Host IOMMU groups"), spinner());
    const device = (d, group) => h("tr", { "data-address": d.address, "data-group": group === null ? "" : String(group) },
                                   h("td", { "data-label": _("Group") }, group === null ? _("none") : groupSwatch(group)),
                                   h("td", { "data-label": _("Device") }, h("code", {}, d.address)),
                                   h("td", { "data-label": _("Ids") }, d.vendor_id && d.product_id ? `${d.vendor_id.replace(/^0x/, "")}:${d.product_id.replace(/^0x/, "")}` : "-"),
                                   h("td", { "data-label": _("Name") }, [d.vendor, d.product].filter(Boolean).join(" ") || "-"),
                                   h("td", { "data-label": _("Driver") }, d.driver || "-"),
                                   h("td", { "data-label": _("NUMA node") }, d.numa_node ?? "-"),
                                   h("td", { "data-label": _("Used by") }, d.used_by.length ? h("ul", { class: "phbguard-users" }, d.used_by.map(user)) : "-"));
    const rows = [];
    for (const g of state.groups.groups) for (const d of g.devices) rows.push(device(d, g.group));
    for (const d of state.groups.ungrouped) rows.push(device(d, null));
    const warnings = (state.groups.unresolved_pools || []).map(p =>
        alert("warning", fmt(_("Network $0: its PF $1 gives no VFs"), p.network, p.pf), p.why));
    return card(_("Host IOMMU groups"),
                h("p", {}, fmt(_("$0 IOMMU groups; a guest needs one PHB per group it uses."), state.groups.groups.length)),
                warnings,
                table(_("Host IOMMU groups"), [_("Group"), _("Device"), _("Ids"), _("Name"), _("Driver"), _("NUMA node"), _("Used by")],
                      rows, { id: "groups" }));
}

function groupSwatch(group) {
    const sw = h("span", { class: "phbguard-swatch", "aria-hidden": "true" });
    sw.style.backgroundColor = groupColour(group);
    return h("span", { class: "phbguard-group" }, sw, String(group));
}

function user(u) {
    if (u.network) return h("li", {}, fmt(_("network $0 (hostdev pool)"), u.network));
    const where = u.address ? (u.phb_index !== null ? fmt(_(" at $0 on PHB $1"), u.address, u.phb_index) : fmt(_(" at $0"), u.address)) : "";
    return h("li", {}, link(u.domain, ["guest", u.domain]), where);
}

// One guest: each of its definitions drawn, its findings, and the fix.
function renderGuest(name) {
    setTitle(name);
    breadcrumb([{ text: _("PHB isolation"), path: [] }, { text: name }]);
    if (!state.audit) {
        clear(content(), state.error ? null : spinner());
        return;
    }
    const results = state.audit.results.filter(r => r.domain === name);
    if (!results.length) {
        clear(content(), h("div", { class: "pf-c-empty-state", id: "vanished" }, h("div", { class: "pf-c-empty-state__content" },
                 h("h2", { class: "pf-c-title pf-m-lg" }, fmt(_("Guest $0 is not defined (any more)"), name)),
                 h("div", { class: "pf-c-empty-state__body" }, _("libvirt does not know it now: it was undefined or renamed since it was shown.")),
                 h("div", { class: "pf-c-empty-state__primary" }, link(_("Back to all guests"), [], { class: "pf-c-button pf-m-primary" })))));
        return;
    }
    const parts = [h("div", { class: "phbguard-toolbar" }, refreshButton())];
    for (const r of results) parts.push(definitionCard(r));
    const persistent = results.find(r => r.definition === "persistent");
    if (persistent) parts.push(fixCard(persistent));
    clear(content(), h("div", { class: "pf-l-stack pf-m-gutter" }, parts.map(p => h("div", { class: "pf-l-stack__item" }, p))));
}

function definitionCard(r) {
    const c = counts(r);
    const summary = h("dl", { class: "pf-c-description-list pf-m-horizontal pf-m-compact phbguard-summary" },
                      term(_("State"), r.state),
                      term(_("Errors"), String(c.errors)),
                      term(_("Warnings"), String(c.warnings)),
                      term(_("Opted out"), r.opted_out ? fmt(_("yes ($0)"), r.opt_out) : _("no")),
                      term(_("The hook at the next start"), r.start_refused ? _("refuses it") : _("lets it start")),
                      r.metadata_error ? term(_("Policy metadata"), r.metadata_error) : null);
    const title = r.definition === "live" ? _("Live definition (what runs now)") : _("Persistent definition (what the next start uses)");
    const drawing = r.topology
        ? drawTopology(r.topology, r.findings, { _, fmt, explainHref: id => "#/rule/" + encodeURIComponent(id), go: p => cockpit.location.go(p) })
        : h("p", {}, _("Not a pSeries guest: it has no PHBs to draw (only multiple-pci-roots applies)."));
    const findings = r.findings.length
        ? h("ol", { class: "phbguard-findings" }, r.findings.map((f, i) =>
            h("li", { "data-rule": f.rule, "data-finding": i, class: `phbguard-finding pf-m-${f.severity}` },
              label(f.severity === "error" ? _("error") : _("warning"), f.severity === "error" ? "red" : "orange"), " ",
              link(f.rule, ["rule", f.rule], { class: "phbguard-rule-link" }), ": ", f.message)))
        : h("p", { class: "phbguard-clean" }, _("No finding: this definition keeps the rules."));
    return h("article", { class: "pf-c-card", "data-definition": r.definition, "data-errors": c.errors, "data-warnings": c.warnings },
             h("div", { class: "pf-c-card__title" }, h("h2", { class: "pf-c-title pf-m-lg" }, title)),
             h("div", { class: "pf-c-card__body" }, summary, h("div", { class: "phbguard-drawing" }, drawing),
               h("h3", { class: "pf-c-title pf-m-md" }, _("Findings")), findings));
}

function term(t, d) {
    return h("div", { class: "pf-c-description-list__group" },
             h("dt", { class: "pf-c-description-list__term" }, t),
             h("dd", { class: "pf-c-description-list__description" }, h("div", { class: "pf-c-description-list__text" }, d)));
}

// The fix: `fix --domain NAME --format json` shows the diff and names it with a digest; the admin's
// confirmation redefines with `--yes --if-digest DIGEST`, so only the change shown can be defined.
function fixCard(r) {
    const name = r.domain;
    const fix = state.fix && state.fix.name === name ? state.fix : null;
    const body = [];
    if (!r.pseries) {
        body.push(h("p", {}, _("Not a pSeries guest: there is nothing for phbguard to fix.")));
    } else if (counts(r).errors === 0 && !fix) {
        body.push(h("p", { id: "fix-none" }, _("The persistent definition keeps every error rule: nothing to fix.")));
    } else if (state.admin === false) {
        body.push(h("p", { id: "fix-readonly" }, _("Fixing a guest redefines it: that needs administrative access.")));
    } else if (!fix) {
        body.push(h("p", {}, _("phbguard can rewrite the persistent definition so that it keeps the rules, changing as little as possible. You will see the changes before anything is redefined; VNC and SPICE passwords are kept.")),
                  button(_("Review the fix"), "primary", () => proposeFix(name), { id: "fix-review" }));
    } else if (fix.busy) {
        body.push(spinner());
    } else if (fix.error) {
        body.push(alert("danger", _("phbguard fix failed"), h("pre", { class: "phbguard-error-text" }, fix.error)),
                  button(_("Try again"), "secondary", () => proposeFix(name)));
    } else {
        body.push(proposalView(fix.proposal));
    }
    return card(_("Fix"), body);
}

function proposalView(p) {
    const changes = h("ul", { id: "fix-changes" }, p.changes.map(c => h("li", { "data-kind": c.kind }, c.summary)));
    const problems = p.problems.length
        ? alert("danger", _("This guest cannot be fixed automatically"), h("ul", {}, p.problems.map(x => h("li", {}, x))))
        : null;
    if (!p.changed) {
        return h("div", {}, h("p", { id: "fix-nothing" }, _("Nothing to change: the definition already keeps the rules.")));
    }
    const actions = h("div", { class: "phbguard-actions" },
                      p.fixed ? button(fmt(_("Redefine $0"), p.domain), "danger", () => confirmFix(p), { id: "fix-confirm" }) : null,
                      button(_("Cancel"), "link", () => { state.fix = null; render() }, { id: "fix-cancel" }));
    return h("div", {},
             h("p", {}, _("These changes would be made to the persistent definition:")), changes, problems,
             h("pre", { class: "pf-c-code-block phbguard-diff", id: "fix-diff" }, diffLines(p.diff)),
             h("p", { class: "phbguard-digest" }, fmt(_("Change $0"), p.digest)),
             h("p", {}, _("A running guest keeps its current layout until it is shut down and started again.")),
             actions);
}

function diffLines(diff) {
    return diff.split("\n").map(line => {
        const kind = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "ctx";
        return h("span", { class: `phbguard-diff-${kind}` }, line + "\n");
    });
}

async function proposeFix(name) {
    state.fix = { name, busy: true };
    state.notice = null;
    render();
    try {
        const out = await phbguard(["fix", "--domain", name, "--connect", URI, "--format", "json"], "require");
        state.fix = { name, proposal: out.json };
    } catch (ex) {
        state.fix = { name, error: failure(ex) };
    }
    render();
}

function confirmFix(p) {
    const close = () => backdrop.remove();
    const backdrop = h("div", { class: "pf-c-backdrop" }, h("div", { class: "pf-l-bullseye" },
        h("div", { class: "pf-c-modal-box pf-m-sm", role: "dialog", "aria-modal": "true", "aria-labelledby": "fix-modal-title", id: "fix-modal" },
          h("header", { class: "pf-c-modal-box__header" }, h("h1", { class: "pf-c-modal-box__title", id: "fix-modal-title" }, fmt(_("Redefine $0?"), p.domain))),
          h("div", { class: "pf-c-modal-box__body" },
            fmt(_("libvirt will hold the definition shown, with $0 changes. phbguard redefines it only if nothing changed since this diff was made (the guest or the host); otherwise it shows the new diff."), p.changes.length)),
          h("footer", { class: "pf-c-modal-box__footer" },
            button(_("Redefine"), "danger", () => { close(); applyFix(p) }, { id: "fix-modal-confirm" }),
            button(_("Cancel"), "link", close)))));
    document.body.append(backdrop);
    backdrop.querySelector("#fix-modal-confirm").focus();
}

async function applyFix(p) {
    const name = p.domain;
    state.fix = { name, busy: true };
    render();
    try {
        const out = await phbguard(["fix", "--domain", name, "--connect", URI, "--yes", "--if-digest", p.digest, "--format", "json"], "require");
        if (out.json.redefined) {
            state.fix = null;
            state.notice = { kind: "success", title: fmt(_("$0 was redefined"), name), body: p.changes.map(c => c.summary).join("; ") };
        } else {
            // Not the change shown (redefined meanwhile, or the host changed): show what is proposed now.
            state.fix = { name, proposal: out.json };
            state.notice = { kind: "warning", title: fmt(_("$0 was not redefined"), name), body: failure({ message: out.stderr }) };
        }
    } catch (ex) {
        state.fix = { name, error: failure(ex) };
    }
    await load();
}

async function renderRule(id) {
    setTitle(id);
    breadcrumb([{ text: _("PHB isolation"), path: [] }, { text: fmt(_("Rule $0"), id) }]);
    if (!state.explain[id]) {
        clear(content(), spinner());
        try {
            state.explain[id] = (await phbguard(["explain", "--format", "json", id])).json;
        } catch (ex) {
            state.explain[id] = { error: failure(ex) };
        }
        if (cockpit.location.path[1] !== id) return;
    }
    const e = state.explain[id];
    if (e.error) { clear(content(), alert("danger", fmt(_("No explanation for $0"), id), e.error)); return }
    clear(content(), card(fmt(_("$0 ($1)"), e.id, e.severity),
                          h("p", { class: "phbguard-rule-summary" }, e.summary),
                          h("pre", { class: "phbguard-explanation", id: "explanation" }, e.explanation),
                          h("h3", { class: "pf-c-title pf-m-md" }, fmt(_("Flagged (on a host with $0)"),
                                                                       e.example_host.map(d => fmt(_("$0 in IOMMU group $1"), d.address, d.iommu_group)).join(", "))),
                          h("pre", { class: "pf-c-code-block" }, e.flagged),
                          h("h3", { class: "pf-c-title pf-m-md" }, _("Compliant")),
                          h("pre", { class: "pf-c-code-block" }, e.compliant)));
}

// ---------------------------------------------------------------------------------------------

cockpit.translate();
cockpit.addEventListener("locationchanged", () => { state.notice = null; render() });
// Read again when the page is shown again (a guest may have gone meanwhile), and every 30 s
// while it is visible.
cockpit.addEventListener("visibilitychange", () => { if (!cockpit.hidden) load() });
window.setInterval(() => { if (!cockpit.hidden && !state.loading && !(state.fix && state.fix.busy)) load() }, 30000);
load();
