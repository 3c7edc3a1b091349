//! Reading, fixing and redefining a guest (the module `fix --domain` and `watch` share), and
//! the `fix --domain` command, on libvirt's test driver. The test driver keeps each
//! connection's changes in that connection, so what a redefine left is read back in-process.

use std::path::{Path, PathBuf};
use std::process::Output;

use phbguard_core::fix::Options;
use phbguard_core::parse_domain;
use phbguard_core::rules::{Severity, judge};
use phbguard_libvirt::nodedev::NodeDevices;
use phbguard_libvirt::redefine::{self, Error, Outcome, READ_FLAGS};
use virt::connect::Connect;

use crate::phbguard;

const GUEST: &str = "<domain type='kvm'>
  <name>fixme</name>
  <uuid>7e57f1ee-0000-4000-8000-0000000000f1</uuid>
  <memory unit='GiB'>4</memory>
  <os><type arch='ppc64le' machine='pseries'>hvm</type></os>
  <devices>
    <controller type='pci' index='0' model='pci-root'><model name='spapr-pci-host-bridge'/><target index='0'/></controller>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0002' bus='0x02' slot='0x00' function='0x0'/></source>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
    </hostdev>
    <graphics type='vnc' port='-1' autoport='yes' passwd='s3cret-vnc'/>
  </devices>
</domain>";

const DEVICE: &str = "<device><name>pci_0002_02_00_0</name><parent>computer</parent>
  <capability type='pci'><domain>2</domain><bus>2</bus><slot>0</slot><function>0</function>
  <product id='0x1017'/><vendor id='0x15b3'/>
  <iommuGroup number='8'><address domain='0x0002' bus='0x02' slot='0x00' function='0x0'/></iommuGroup>
  <numa node='1'/></capability></device>";

fn host_file(dir: &Path) -> PathBuf {
    let node = dir.join("node.xml");
    std::fs::write(&node, format!("<node>{GUEST}{DEVICE}</node>")).unwrap();
    node
}

fn open(node: &Path) -> Connect {
    phbguard_libvirt::connect::open(Some(&format!("test://{}", node.display()))).unwrap()
}

#[test]
fn redefine_fixes_the_guest_and_keeps_its_vnc_password() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&host_file(dir.path()));
    let dom = conn.lookup_domain_by_name("fixme").unwrap();
    let host = NodeDevices::new(&conn);

    let proposal = redefine::propose(&dom, &host, Options::default()).unwrap();
    assert!(
        proposal.before.contains("passwd='s3cret-vnc'"),
        "read without SECURE"
    );
    assert!(proposal.is_clean() && proposal.changes_definition());
    assert_eq!(
        proposal.changes(),
        [
            "added PHB index 1 target 1",
            "hostdev 0002:02:00.0: 0000:00:05.0 -> 0000:01:01.0"
        ]
    );
    let diff = proposal.diff();
    assert!(
        diff.starts_with("--- fixme (persistent definition)\n+++ fixme (persistent definition)\n"),
        "{diff}"
    );
    assert!(
        diff.contains("-      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>"),
        "{diff}"
    );

    let Outcome::Redefined { after } = redefine::redefine(&conn, &dom, &proposal).unwrap() else {
        panic!("not redefined");
    };
    // What libvirt holds now: the password is still there and the guest keeps the rules.
    let now = conn
        .lookup_domain_by_name("fixme")
        .unwrap()
        .xml_desc(READ_FLAGS)
        .unwrap();
    assert_eq!(now, after);
    assert!(now.contains("passwd='s3cret-vnc'"), "{now}");
    let findings = judge(&parse_domain(now.as_bytes()).unwrap(), &host);
    assert!(
        findings.iter().all(|f| f.severity() != Severity::Error),
        "{findings:?}"
    );

    // A second run finds nothing to do.
    let again = redefine::propose(&dom, &host, Options::default()).unwrap();
    assert!(!again.changes_definition());
    assert_eq!(
        redefine::redefine(&conn, &dom, &again).unwrap(),
        Outcome::Unchanged
    );
}

#[test]
fn an_interface_on_a_hostdev_pool_network_is_given_a_phb_of_its_own() {
    // Only a libvirt connection knows the network is a pool: `fix --domain` (and watch) fix
    // what `fix FILE` cannot see.
    let guest = "<domain type='kvm'><name>poolguest</name><uuid>7e57f1ee-0000-4000-8000-0000000000f2</uuid>
  <memory unit='GiB'>4</memory><os><type arch='ppc64le' machine='pseries'>hvm</type></os>
  <devices>
    <interface type='network'><mac address='52:54:00:00:00:09'/><source network='vfpool'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></interface>
  </devices>
</domain>";
    let network = "<network><name>vfpool</name><forward mode='hostdev' managed='yes'>\
                   <address type='pci' domain='0x0002' bus='0x02' slot='0x00' function='0x1'/></forward></network>";
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.xml");
    std::fs::write(&node, format!("<node>{guest}{network}</node>")).unwrap();
    let conn = open(&node);
    let dom = conn.lookup_domain_by_name("poolguest").unwrap();
    let host = phbguard_libvirt::host::Host::new(&conn, None).unwrap();
    let proposal = redefine::propose(&dom, &host, Options::default()).unwrap();
    assert!(proposal.is_clean(), "{:?}", proposal.fixed.problems());
    assert_eq!(
        proposal.changes(),
        [
            "added PHB index 1 target 1",
            "interface 52:54:00:00:00:09: 0000:00:04.0 -> 0000:01:01.0"
        ]
    );
}

#[test]
fn a_definition_changed_meanwhile_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&host_file(dir.path()));
    let dom = conn.lookup_domain_by_name("fixme").unwrap();
    let host = NodeDevices::new(&conn);
    let proposal = redefine::propose(&dom, &host, Options::default()).unwrap();

    // Someone else edits the guest between the read and the redefine.
    let edited = proposal
        .before
        .replacen("<memory", "<description>edited meanwhile</description><memory", 1);
    conn.define_domain_xml(&edited).unwrap();

    let err = redefine::redefine(&conn, &dom, &proposal).unwrap_err();
    assert!(
        matches!(err, Error::ChangedMeanwhile(ref n) if n == "fixme"),
        "{err}"
    );
    let now = dom.xml_desc(READ_FLAGS).unwrap();
    assert!(now.contains("edited meanwhile"));
    assert!(
        now.contains("bus='0x00' slot='0x05'"),
        "the other edit was overwritten: {now}"
    );
}

fn fix_domain(node: &Path, extra: &[&str]) -> Output {
    let uri = format!("test://{}", node.display());
    // No terminal, and stdin at its end at once: nobody can confirm.
    phbguard(&["fix", "--domain", "fixme", "-c", &uri])
        .args(extra)
        .output()
}

#[test]
fn fix_domain_shows_the_diff_and_redefines_only_with_yes() {
    let dir = tempfile::tempdir().unwrap();
    let node = host_file(dir.path());
    let out = fix_domain(&node, &[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.starts_with("--- fixme (persistent definition)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+      <address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/>")
    );
    assert!(stderr.contains("phbguard: fixme: hostdev 0002:02:00.0: 0000:00:05.0 -> 0000:01:01.0"));
    assert!(
        stderr.contains("not redefined (no terminal to confirm on); run with --yes"),
        "{stderr}"
    );

    let out = fix_domain(&node, &["--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("phbguard: fixme: redefined"), "{stderr}");

    let out = fix_domain(&node, &["--yes", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["redefined"], true);
    assert_eq!(json["fixed"], true);
    // The change objects of `fix FILE --format json` (docs/fix.md), not lines of text.
    assert_eq!(
        json["changes"],
        serde_json::json!([
            {"kind": "add-phb", "index": 1, "target": 1, "node": null,
             "summary": "added PHB index 1 target 1"},
            {"kind": "move", "device": "hostdev 0002:02:00.0", "from": "0000:00:05.0",
             "to": "0000:01:01.0", "summary": "hostdev 0002:02:00.0: 0000:00:05.0 -> 0000:01:01.0"},
        ]),
        "{json}"
    );
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "changed",
            "changes",
            "diff",
            "digest",
            "domain",
            "fixed",
            "host_notes",
            "problems",
            "pseries",
            "redefined",
            "uuid"
        ]
    );
    assert_eq!(json["domain"], "fixme");
    assert_eq!(json["uuid"], "7e57f1ee-0000-4000-8000-0000000000f1");
    assert_eq!(json["changed"], true);
    assert_eq!(json["problems"], serde_json::json!([]));
    assert!(
        json["diff"]
            .as_str()
            .unwrap()
            .starts_with("--- fixme (persistent definition)")
    );
}

/// `fix --domain` keeps the policy's `[fix] spare_phbs` unless `--spare-phbs` says otherwise,
/// also for a guest that keeps every rule (an admin asked for this one guest, and nothing is
/// redefined unconfirmed); a guest with its spares already is left as it is.
#[test]
fn fix_domain_proposes_the_policys_spare_phbs_and_the_option_wins() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("phbguard.toml");
    std::fs::write(&policy, "[fix]\nspare_phbs = 2\n").unwrap();
    let uri = format!("test://{}", crate::data("spares.xml").display());
    // Not confirmed: the proposal's changes and the exit status.
    let proposed = |domain: &str, extra: &[&str]| -> (Option<i32>, Vec<String>) {
        let out = phbguard(&["fix", "--domain", domain, "-c", &uri, "--format", "json"])
            .args(extra)
            .env("PHBGUARD_CONFIG", &policy)
            .output();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(json["redefined"], false, "{json}");
        let changes = json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["kind"].as_str().unwrap(),
                    c["summary"].as_str().unwrap()
                )
            })
            .collect();
        (out.status.code(), changes)
    };
    // 'full' keeps every rule with no empty PHB; 'ready' has two spares.
    assert_eq!(
        proposed("full", &[]),
        (
            Some(1),
            vec![
                "add-spare-phb added spare PHB index 2 target 2".to_string(),
                "add-spare-phb added spare PHB index 3 target 3".to_string()
            ]
        )
    );
    assert_eq!(
        proposed("full", &["--spare-phbs", "1"]),
        (
            Some(1),
            vec!["add-spare-phb added spare PHB index 2 target 2".to_string()]
        )
    );
    assert_eq!(proposed("full", &["--spare-phbs", "0"]), (Some(0), vec![]));
    assert_eq!(proposed("ready", &[]), (Some(0), vec![]));
}

#[test]
fn fix_domain_of_a_missing_guest_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("test://{}", host_file(dir.path()).display());
    let out = phbguard(&["fix", "--domain", "nosuch", "-c", &uri, "--yes"]).output();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("phbguard: no domain 'nosuch'"));
}

#[test]
fn fix_domain_with_a_sysfs_root_that_is_not_a_directory_is_exit_2_and_defines_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = host_file(dir.path());
    let out = fix_domain(&node, &["--yes", "--sysfs-root", "/nonexistent/phbguard-sys"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("phbguard: --sysfs-root: sysfs root /nonexistent/phbguard-sys: "),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_read_only_connection_reads_but_cannot_define() {
    let dir = tempfile::tempdir().unwrap();
    let node = host_file(dir.path());
    let uri = format!("test://{}", node.display());
    let ro = phbguard_libvirt::connect::open_read_only(Some(&uri)).unwrap();
    let dom = ro.lookup_domain_by_name("fixme").unwrap();
    assert!(dom.xml_desc(0).unwrap().contains("<name>fixme</name>"));
    assert!(ro.define_domain_xml(GUEST).is_err());
    // The read-write one (fix --domain, watch) can.
    assert!(open(&node).define_domain_xml(GUEST).is_ok());
}
