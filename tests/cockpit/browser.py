#!/usr/bin/python3
"""Drives phbguard's Cockpit page in headless Chromium (Debian's chromium + chromedriver, through
Debian's python3-selenium) against a real cockpit-ws and the real sandbox libvirtd. Run by
packaging/test-cockpit, which sets up the server side and passes the facts below as arguments;
each check prints `ok`, `FAIL` or `skip` and the last line counts them.

    browser.py --url URL --artifacts DIR --admin USER:PASSWORD --viewer USER:PASSWORD
               --good NAME --bad NAME --gone NAME --audit-json FILE --groups-json FILE
               --virsh CMD --redefine-meanwhile CMD --libvirtd-stop CMD --libvirtd-start CMD

The audit and groups JSON are what `phbguard audit|groups --format json` printed for the same
host just before: the page must show those figures.
"""

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 60  # seconds for anything the page fetches; the page is on localhost, libvirt under TCG

passed = failed = skipped = 0


def ok(what):
    global passed
    passed += 1
    print(f"  ok    {what}", flush=True)


def bad(what, detail=""):
    global failed
    failed += 1
    print(f"  FAIL  {what}", flush=True)
    for line in str(detail).splitlines():
        print(f"        {line}", flush=True)


def skip(what):
    global skipped
    skipped += 1
    print(f"  skip  {what}", flush=True)


class Browser:
    def __init__(self, args):
        self.args = args
        self.artifacts = Path(args.artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.profile = tempfile.TemporaryDirectory(prefix="phbguard-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        # The flags this sandbox needs (no network beyond localhost, root, no GPU).
        for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={self.profile.name}", "--window-size=1500,1100",
                     "--lang=en-US"]:
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        self.d.set_page_load_timeout(WAIT)

    def quit(self):
        self.d.quit()
        self.profile.cleanup()

    def shot(self, name):
        # The whole window, whichever frame the driver is in (it stays there).
        path = self.artifacts / f"{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def wait(self, cond, what, timeout=WAIT):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2).until(lambda d: cond())
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def login(self, user, password, superuser):
        d = self.d
        d.delete_all_cookies()
        d.get(self.args.url + "/")
        self.wait(lambda: d.find_elements(By.ID, "login-user-input"), "the login form")
        # Cockpit remembers per user whether administrative access was turned on; the login
        # sends it (X-Superuser). An admin who once turned it on logs in with it.
        d.execute_script("window.localStorage.clear();"
                         "if (arguments[1]) window.localStorage.setItem('superuser:' + arguments[0], 'any');",
                         user, superuser)
        d.find_element(By.ID, "login-user-input").send_keys(user)
        d.find_element(By.ID, "login-password-input").send_keys(password)
        d.find_element(By.ID, "login-button").click()
        self.wait(lambda: d.find_elements(By.CSS_SELECTOR, "#host-apps, nav"), "the shell after login")

    def logout(self):
        self.d.switch_to.default_content()
        self.d.delete_all_cookies()

    def open(self, route=""):
        """The page at `route` (its hash) inside the shell, as a bookmark or a reload opens it."""
        d = self.d
        d.switch_to.default_content()
        d.get(self.args.url + "/phbguard" + (("#/" + route) if route else ""))
        self.frame()

    def frame(self):
        d = self.d
        d.switch_to.default_content()
        frame = self.wait(lambda: d.find_elements(By.CSS_SELECTOR, "iframe[name='cockpit1:localhost/phbguard']"),
                          "the phbguard iframe")[0]
        self.wait(lambda: frame.is_displayed(), "the phbguard iframe shown")
        d.switch_to.frame(frame)

    def css(self, selector):
        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def wait_css(self, selector, what=None, timeout=WAIT):
        return self.wait(lambda: self.css(selector), what or selector, timeout)

    def text(self, selector):
        return " ".join(e.text for e in self.css(selector))


def run(cmd, codes=(0,)):
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if out.returncode not in codes:
        raise AssertionError(f"{cmd}: exit {out.returncode}: {out.stderr}")
    return out.stdout


def check(b, what, fn):
    try:
        fn()
        ok(what)
        return True
    except Exception as e:  # noqa: BLE001 - every failure is reported and counted
        path = None
        try:
            path = b.shot("FAIL-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
        except Exception:  # noqa: BLE001
            pass
        bad(what, f"{e}\n{traceback.format_exc(limit=2) if not isinstance(e, AssertionError) else ''}"
                  f"{'screenshot: ' + str(path) if path else ''}")
        return False


def rows_of(audit, names):
    return [r for r in audit["results"] if r["domain"] in names]


def figures(r):
    errors = sum(1 for f in r["findings"] if f["severity"] == "error")
    warnings = sum(1 for f in r["findings"] if f["severity"] == "warning")
    worst = next((f["rule"] for f in r["findings"] if f["severity"] == "error"),
                 next((f["rule"] for f in r["findings"] if f["severity"] == "warning"), ""))
    return {"state": r["state"], "errors": str(errors), "warnings": str(warnings), "worst": worst,
            "opted_out": str(r["opted_out"]).lower(), "start_refused": str(r["start_refused"]).lower()}


def main():
    p = argparse.ArgumentParser()
    for a in ["url", "artifacts", "admin", "viewer", "good", "bad", "gone", "audit_json", "groups_json",
              "libvirtd_stop", "libvirtd_start", "virsh", "redefine_meanwhile"]:
        p.add_argument("--" + a.replace("_", "-"), required=True)
    args = p.parse_args()
    admin, admin_pw = args.admin.split(":", 1)
    viewer, viewer_pw = args.viewer.split(":", 1)
    audit = json.loads(Path(args.audit_json).read_text())
    groups = json.loads(Path(args.groups_json).read_text())
    virsh = args.virsh

    b = Browser(args)
    try:
        admin_session(b, args, admin, admin_pw, audit, groups, virsh)
        viewer_session(b, args, viewer, viewer_pw)
        libvirtd_stopped(b, args, admin, admin_pw)
    finally:
        try:
            logs = b.d.get_log("browser")
            (Path(args.artifacts) / "browser-console.log").write_text(
                "\n".join(f"{e['level']} {e['message']}" for e in logs) + "\n")
        except Exception:  # noqa: BLE001
            pass
        b.quit()
    print(f"\nbrowser.py: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


def admin_session(b, args, admin, admin_pw, audit, groups, virsh):
    if not check(b, f"log in to cockpit-ws as {admin} (PAM) with administrative access", lambda: b.login(admin, admin_pw, True)):
        return

    def menu():
        b.d.switch_to.default_content()
        entry = b.wait(lambda: [a for a in b.d.find_elements(By.CSS_SELECTOR, "nav a") if a.text.strip() == "PHB isolation"],
                       "'PHB isolation' in the shell's menu")[0]
        entry.click()
        b.frame()
        b.wait_css("#guests", "the guests table")
    check(b, "the shell's menu has 'PHB isolation' (manifest.json) and opens the page", menu)
    check(b, "with administrative access the page says nothing about limited access",
          lambda: assert_(not b.css(".pf-c-alert.pf-m-info"), b.text("#alerts")))

    def listed():
        names = {args.good, args.bad}
        want = rows_of(audit, names)
        assert len(want) == 2, f"audit --format json lists {len(want)} of the two guests"
        for r in want:
            row = b.css(f"#guests tr[data-domain='{r['domain']}'][data-definition='{r['definition']}']")
            assert row, f"no row for {r['domain']} ({r['definition']})"
            row = row[0]
            cell = lambda attr: row.find_element(By.CSS_SELECTOR, f"td[{attr}]")  # noqa: E731
            got = {"state": row.find_elements(By.TAG_NAME, "td")[1].text,
                   "errors": cell("data-errors").get_attribute("data-errors"),
                   "warnings": cell("data-warnings").get_attribute("data-warnings"),
                   "worst": cell("data-worst").get_attribute("data-worst"),
                   "opted_out": cell("data-opted-out").get_attribute("data-opted-out"),
                   "start_refused": cell("data-start-refused").get_attribute("data-start-refused")}
            assert got == figures(r), f"{r['domain']}: page {got}, audit {figures(r)}"
            assert cell("data-errors").text == figures(r)["errors"], cell("data-errors").text
        bad_row = figures(rows_of(audit, {args.bad})[0])
        assert bad_row["errors"] == "2" and bad_row["start_refused"] == "true", bad_row
        total = len(audit["results"])
        assert len(b.css("#guests tbody tr")) == total, f"{len(b.css('#guests tbody tr'))} rows, audit has {total}"
    check(b, "the guests table shows each definition with the figures 'phbguard audit --format json' gives", listed)
    b.shot("overview")

    def groups_listed():
        want = sum(len(g["devices"]) for g in groups["groups"]) + len(groups["ungrouped"])
        got = len(b.css("#groups tbody tr"))
        assert got == want, f"{got} device rows, 'phbguard groups --format json' has {want}"
        for g in groups["groups"][:5]:
            for dev in g["devices"]:
                assert b.css(f"#groups tr[data-address='{dev['address']}'][data-group='{g['group']}']"), dev["address"]
    check(b, "the IOMMU groups table shows every device 'phbguard groups --format json' lists, in its group", groups_listed)

    bad_result = rows_of(audit, {args.bad})[0]
    good_result = rows_of(audit, {args.good})[0]

    def drawn(result):
        def f():
            b.open("guest/" + result["domain"])
            b.wait_css(f"article[data-definition='persistent'] svg.phbguard-topology", "the drawing")
            svg = b.css("article[data-definition='persistent'] svg.phbguard-topology")[0]
            topo = result["topology"]
            phbs = svg.find_elements(By.CSS_SELECTOR, "g.phbguard-phb")
            assert [g.get_attribute("data-index") for g in phbs] == [str(p["index"]) for p in topo["phbs"]], \
                [g.get_attribute("data-index") for g in phbs]
            hostdevs = [d for d in topo["devices"] if d["kind"] == "hostdev"]
            assert hostdevs, "no hostdev in the topology"
            for d in hostdevs:
                on = svg.find_elements(By.CSS_SELECTOR, f"g.phbguard-phb[data-index='{d['phb']}'] g.phbguard-device[data-host='{d['host']}']")
                assert on, f"hostdev {d['host']} not drawn on PHB {d['phb']}"
                assert on[0].get_attribute("data-group") == str(d["iommu_group"]), on[0].get_attribute("data-group")
                fill = on[0].find_element(By.TAG_NAME, "rect").get_attribute("fill")
                assert fill and fill != "#ffffff", f"{d['host']} not coloured by its group: {fill}"
            fills = {}
            for d in hostdevs:
                rect = svg.find_element(By.CSS_SELECTOR, f"g.phbguard-device[data-host='{d['host']}'] rect")
                fills.setdefault(d["iommu_group"], set()).add(rect.get_attribute("fill"))
            assert all(len(v) == 1 for v in fills.values()), fills
            assert len({next(iter(v)) for v in fills.values()}) == len(fills), f"two groups share a colour: {fills}"
            markers = svg.find_elements(By.CSS_SELECTOR, "a.phbguard-marker")
            marked = sorted(int(m.get_attribute("data-finding")) for m in markers)
            on_drawing = sorted(i for e in topo["phbs"] + topo["bridges"] + topo["devices"] for i in e["findings"])
            assert marked == on_drawing, f"markers {marked}, topology {on_drawing}"
            for i, f in enumerate(result["findings"]):
                li = b.css(f"article[data-definition='persistent'] li[data-finding='{i}']")
                assert li and f["message"] in li[0].text, f"finding {i} not listed: {f['message']}"
        return f
    check(b, f"{args.good}: each hostdev drawn on its PHB, coloured by its IOMMU group", drawn(good_result))
    b.shot("guest-compliant")
    check(b, f"{args.bad}: each hostdev drawn on the default PHB, each finding marked on it", drawn(bad_result))
    b.shot("guest-not-compliant")

    def explain_link():
        marker = b.css("article[data-definition='persistent'] a.phbguard-marker")[0]
        rule = marker.get_attribute("data-rule")
        b.d.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", marker)
        b.wait(lambda: "What:" in b.text("#explanation"), "the explanation")
        assert b.text("#title") == rule, b.text("#title")
        want = json.loads(run(f"phbguard explain --format json {shlex.quote(rule)}"))
        assert b.text("#explanation").split()[:5] == want["explanation"].split()[:5]
        b.shot("rule")
    check(b, "a finding's marker links to its rule's explanation ('phbguard explain --format json')", explain_link)

    def reload_keeps_view():
        b.open("guest/" + args.bad)
        b.wait_css("svg.phbguard-topology", "the drawing after a reload")
        assert b.text("#title") == args.bad
        b.d.switch_to.default_content()
        b.d.refresh()
        b.frame()
        b.wait_css("svg.phbguard-topology", "the drawing after the browser reloaded the page")
        assert b.text("#title") == args.bad
    check(b, "a reload of the guest's URL shows the same guest", reload_keeps_view)

    # The fix: review, someone else redefines the guest meanwhile, confirm: refused and the new
    # diff shown; confirm again: redefined, and the page shows the guest compliant.
    def review():
        b.open("guest/" + args.bad)
        b.wait_css("#fix-review", "the Review button")[0].click()
        diff = b.wait_css("#fix-diff", "the diff")[0].text
        assert "+    <controller type='pci' index='1' model='pci-root'>" in diff, diff
        assert len(b.css("#fix-changes li")) == 4, b.text("#fix-changes")
    if not check(b, "Review the fix shows 'fix --domain''s diff and changes", review):
        return
    b.shot("fix-review")

    def refused_when_changed_meanwhile():
        run(args.redefine_meanwhile)
        b.css("#fix-confirm")[0].click()
        b.wait_css("#fix-modal-confirm", "the confirmation dialog")[0].click()
        b.wait(lambda: "was not redefined" in b.text("#alerts"), "the refusal")
        assert "not the change with digest" in b.text("#alerts"), b.text("#alerts")
        b.wait_css("#fix-diff", "the new diff")
        xml = run(f"{virsh} dumpxml --inactive {args.bad}")
        assert "edited meanwhile" in xml and "bus='0x01'" not in xml, "redefined although it changed meanwhile"
    check(b, "a guest redefined after the diff was shown is not redefined on confirm; the new diff is shown", refused_when_changed_meanwhile)

    def redefined():
        b.css("#fix-confirm")[0].click()
        b.wait_css("#fix-modal-confirm", "the confirmation dialog")[0].click()
        b.wait(lambda: "was redefined" in b.text("#alerts"), "the success message")
        b.wait(lambda: b.css("#fix-none"), "the guest read again, compliant")
        card = b.css("article[data-definition='persistent']")[0]
        assert card.get_attribute("data-errors") == "0", card.get_attribute("data-errors")
        xml = run(f"{virsh} dumpxml --inactive --security-info {args.bad}")
        assert "passwd='c0ckp1t'" in xml, "the VNC password was lost"
        assert "bus='0x01'" in xml and "bus='0x02'" in xml, xml
        # Exit 1: another test guest still breaks a rule.
        audit_now = json.loads(run("phbguard audit --connect qemu:///system --format json", codes=(0, 1)))
        r = rows_of(audit_now, {args.bad})[0]
        assert not r["findings"] and not r["start_refused"], r
        svg = b.css("article[data-definition='persistent'] svg.phbguard-topology")[0]
        for d in r["topology"]["devices"]:
            if d["kind"] == "hostdev":
                assert svg.find_elements(By.CSS_SELECTOR, f"g.phbguard-phb[data-index='{d['phb']}'] g.phbguard-device[data-host='{d['host']}']"), d
                assert d["phb"] != 0, d
        assert not svg.find_elements(By.CSS_SELECTOR, "a.phbguard-marker")
    check(b, "confirmed: redefined (VNC password kept), and the page shows it compliant, each hostdev on a PHB of its own", redefined)
    b.shot("fix-done")

    def vanished():
        b.open("guest/" + args.gone)
        b.wait_css("svg.phbguard-topology", "the drawing")
        # Two IOMMU groups on PHB 1 (marked on the PHB), a hostdev on the default PHB.
        b.wait_css("g.phbguard-phb.phbguard-error[data-index='1'] a.phbguard-marker[data-rule='phb-mixes-iommu-groups']",
                   "phb-mixes-iommu-groups marked on PHB 1")
        b.shot("guest-two-groups-on-one-phb")
        run(f"{virsh} undefine {args.gone}")
        b.wait_css("#refresh:not([disabled])", "the Refresh button")[0].click()
        b.wait_css("#vanished", "the guest shown as gone")
        assert args.gone in b.text("#vanished")
    check(b, "a guest undefined while shown: the page says it is not defined any more", vanished)
    b.logout()


def viewer_session(b, args, viewer, viewer_pw):
    if not check(b, f"log in as {viewer}, a user without administrative access", lambda: b.login(viewer, viewer_pw, False)):
        return

    def read_only():
        b.open("guest/" + args.good)
        b.wait(lambda: "read-only" in b.text("#alerts"), "the limited-access notice")
        b.wait_css("svg.phbguard-topology", "the drawing, read through libvirt's read-only socket")
        b.open()
        b.wait_css(f"#guests tr[data-domain='{args.good}']", "the guests, as the user reads them")
        assert not b.css("#fix-review")
    check(b, "without administrative access: guests and drawings shown, the page says it is read-only", read_only)
    b.shot("read-only")
    b.logout()


def libvirtd_stopped(b, args, admin, admin_pw):
    if not check(b, "log in again", lambda: b.login(admin, admin_pw, True)):
        return

    def down():
        run(args.libvirtd_stop)
        try:
            b.open()
            b.wait(lambda: "Cannot reach libvirt" in b.text("#alerts"), "the libvirt message")
            b.shot("libvirtd-stopped")
        finally:
            run(args.libvirtd_start)
    check(b, "libvirtd stopped: the page says it cannot reach libvirt", down)
    b.logout()


def assert_(cond, msg=""):
    if not cond:
        raise AssertionError(msg)


if __name__ == "__main__":
    sys.exit(main())
