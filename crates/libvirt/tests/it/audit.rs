//! `phbguard audit` and `phbguard groups` through libvirt's test driver
//! (`test:///ABS/PATH/node.xml`: in-process, no daemon): guests, node devices with IOMMU groups
//! and networks come from the file, so every host fact must come through the API.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use phbguard_testkit::{audit_row, stderr, stdout};
use serde_json::Value;

use crate::{data, phbguard};

fn fleet() -> PathBuf {
    data("fleet.xml")
}

fn uri(node: &Path) -> String {
    format!("test://{}", node.display())
}

fn run(args: &[&str]) -> Output {
    phbguard(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        // The hook's policy as audit reads it: the defaults, whatever this machine has in /etc.
        .env("PHBGUARD_CONFIG", data("policy-defaults.toml"))
        .output()
}

/// `domain/definition: severity rule device` for every finding of an audit JSON report.
pub(crate) fn finding_lines(json: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for r in json["results"].as_array().expect("results") {
        for f in r["findings"].as_array().expect("findings") {
            lines.push(format!(
                "{}/{}: {} {} {}",
                r["domain"].as_str().unwrap(),
                r["definition"].as_str().unwrap(),
                f["severity"].as_str().unwrap(),
                f["rule"].as_str().unwrap(),
                f["device"].as_str().unwrap()
            ));
        }
    }
    lines
}

fn audit_json(node: &Path, extra: &[&str]) -> (Output, Value) {
    let u = uri(node);
    let mut args = vec!["audit", "-c", &u, "--format", "json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout(&out), stderr(&out)));
    (out, json)
}

#[test]
fn fleet_findings_shared_device_pool_network_and_opt_out() {
    let (out, json) = audit_json(&fleet(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        finding_lines(&json),
        [
            "legacy/persistent: error hostdev-on-default-phb hostdev 0003:03:00.0 at 0000:00:05.0",
            "legacy/live: error hostdev-on-default-phb hostdev 0003:03:00.0 at 0000:00:05.0",
            "pool-bad/persistent: error hostdev-network-not-isolated interface 52:54:00:00:00:04 at 0000:00:06.0",
            "standby/persistent: warning hostdev-shared-between-guests hostdev 0002:02:00.0 at 0000:01:01.0",
            "web/persistent: warning hostdev-shared-between-guests hostdev 0002:02:00.0 at 0000:01:01.0",
        ]
    );
    // Every guest, defined and running: a running one also with its live definition.
    let rows: Vec<String> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} pseries={} opted_out={} start_refused={}",
                r["domain"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
                r["definition"].as_str().unwrap(),
                r["pseries"],
                r["opted_out"],
                r["start_refused"]
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "legacy running persistent pseries=true opted_out=true start_refused=false",
            "legacy running live pseries=true opted_out=true start_refused=false",
            "pool-bad shut off persistent pseries=true opted_out=false start_refused=true",
            "pool-good shut off persistent pseries=true opted_out=false start_refused=false",
            "standby running persistent pseries=true opted_out=false start_refused=false",
            "standby running live pseries=true opted_out=false start_refused=false",
            "web shut off persistent pseries=true opted_out=false start_refused=false",
            "x86 shut off persistent pseries=false opted_out=false start_refused=false",
        ]
    );
    assert_eq!(json["results"][0]["uuid"], "7e57f1ee-0000-4000-8000-000000000003");
    assert_eq!(json["results"][0]["policy"], "off");
    let shared = &json["results"][4]["findings"][0]["message"];
    assert!(
        shared.as_str().unwrap().contains("also given to 'web'"),
        "{shared}"
    );
}

/// Each definition's `topology` (its PHBs, bridges and devices with host device, IOMMU group
/// and the findings about each), pinned in `tests/data/fleet.topology` as `check`'s are beside
/// each rule case; `PHBGUARD_BLESS=1` rewrites it for review (and fails: phbguard-testkit's golden).
#[test]
fn json_topology_shows_each_guest_as_the_rules_saw_it() {
    let (_, json) = audit_json(&fleet(), &[]);
    let mut got = serde_json::Map::new();
    for r in json["results"].as_array().unwrap() {
        let key = format!(
            "{}/{}",
            r["domain"].as_str().unwrap(),
            r["definition"].as_str().unwrap()
        );
        got.insert(key, r["topology"].clone());
    }
    let got = format!("{}\n", serde_json::to_string_pretty(&Value::Object(got)).unwrap());
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fleet.topology");
    phbguard_testkit::golden::assert_golden(&file, &got);

    // What the drawing relies on, said once more in words: the shared device of 'web' on PHB 1
    // in IOMMU group 8, the finding about it marked on it; the x86 guest has no PHBs to draw.
    let web = &json["results"][6];
    assert_eq!(web["domain"], "web");
    let dev = &web["topology"]["devices"][0];
    assert_eq!(
        (
            &dev["kind"],
            &dev["host"],
            &dev["phb"],
            &dev["iommu_group"],
            &dev["findings"]
        ),
        (
            &Value::from("hostdev"),
            &Value::from("0002:02:00.0"),
            &Value::from(1),
            &Value::from(8),
            &serde_json::json!([0])
        )
    );
    assert_eq!(web["findings"][0]["rule"], "hostdev-shared-between-guests");
    assert_eq!(json["results"][7]["topology"], Value::Null);
}

#[test]
fn text_table_shows_state_counts_worst_rule_opt_out_and_refusal() {
    let out = run(&["audit", "-c", &uri(&fleet())]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let row = |name: &str, def: &str| audit_row(&text, name, def);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/policy-defaults.toml");
    assert!(
        text.starts_with(&format!(
            "policy {}: valid; the hook applies mode = \"enforce\" (guests with error findings are \
             refused)\n\nNAME ",
            policy.display()
        )),
        "{text}"
    );
    assert_eq!(
        row("legacy", "persistent"),
        [
            "legacy",
            "running",
            "persistent",
            "yes",
            "1",
            "0",
            "hostdev-on-default-phb",
            "0",
            "yes (off)",
            "no"
        ]
    );
    assert_eq!(
        row("pool-bad", "persistent"),
        [
            "pool-bad",
            "shut off",
            "persistent",
            "yes",
            "1",
            "0",
            "hostdev-network-not-isolated",
            "0",
            "no",
            "yes"
        ]
    );
    assert_eq!(
        row("x86", "persistent"),
        [
            "x86",
            "shut off",
            "persistent",
            "no",
            "0",
            "0",
            "-",
            "-",
            "no",
            "no"
        ]
    );
    assert!(
        text.contains(
            "6 guests, 8 definitions judged: 3 with errors, 1 the hook would refuse to start, 2 opted out\n"
        ),
        "{text}"
    );
}

/// Spare PHBs, the PHBs a running guest can take hostdevs of new IOMMU groups on without a
/// restart: a column, a JSON field and a metric for every pSeries definition, none for others.
#[test]
fn spare_phbs_are_counted_per_definition_in_text_json_and_prometheus() {
    let node = data("spares.xml");
    let out = run(&["audit", "-c", &uri(&node)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let table: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("NAME "))
        .take_while(|l| !l.is_empty())
        .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect())
        .collect();
    let column = table[0]
        .iter()
        .position(|&h| h == "SPARE PHBS")
        .expect("a SPARE PHBS column");
    let spares: Vec<String> = table[1..]
        .iter()
        .map(|r| format!("{} {} {}", r[0], r[2], r[column]))
        .collect();
    assert_eq!(
        spares,
        [
            "full persistent 0",
            "full live 0",
            "ready persistent 2",
            "ready live 2",
            "x86 persistent -"
        ],
        "{text}"
    );

    let (_, json) = audit_json(&node, &[]);
    let fields: Vec<String> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["domain"].as_str().unwrap(),
                r["definition"].as_str().unwrap(),
                r["spare_phbs"]
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            "full persistent 0",
            "full live 0",
            "ready persistent 2",
            "ready live 2",
            "x86 persistent null"
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let (out, samples) = audit_prometheus(&node, &dir.path().join("phbguard.prom"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let samples: Vec<String> = samples
        .into_iter()
        .filter(|s| s.contains(" phbguard_domain_spare_phbs{"))
        .collect();
    assert_eq!(
        samples,
        [
            "gauge phbguard_domain_spare_phbs{definition=persistent,domain=full,uuid=7e57f1ee-0000-4000-8000-000000000102} 0.0",
            "gauge phbguard_domain_spare_phbs{definition=live,domain=full,uuid=7e57f1ee-0000-4000-8000-000000000102} 0.0",
            "gauge phbguard_domain_spare_phbs{definition=persistent,domain=ready,uuid=7e57f1ee-0000-4000-8000-000000000101} 2.0",
            "gauge phbguard_domain_spare_phbs{definition=live,domain=ready,uuid=7e57f1ee-0000-4000-8000-000000000101} 2.0",
        ]
    );
}

/// A one-guest host: the legacy guest of fleet.xml (errors, opted out) with its device.
fn opted_out_only(dir: &Path, mode: &str) -> PathBuf {
    let node = dir.join(format!("opted-{mode}.xml"));
    std::fs::write(
        &node,
        format!(
            "<node><domain type='kvm'><name>legacy</name>\
             <metadata><phbguard:policy xmlns:phbguard='urn:phbguard:policy:1' mode='{mode}'/></metadata>\
             <memory>1048576</memory><os><type arch='ppc64le' machine='pseries'>hvm</type></os><devices>\
             <hostdev mode='subsystem' type='pci'><source><address domain='0x0003' bus='0x03' slot='0x00' \
             function='0x0'/></source><address type='pci' domain='0x0000' bus='0x00' slot='0x05' \
             function='0x0'/></hostdev></devices></domain></node>"
        ),
    )
    .unwrap();
    node
}

/// A one-guest host whose guest's name holds a tab and a carriage return (libvirt refuses only
/// a newline in a name: virXMLCheckIllegalChars), its hostdev on the default PHB.
fn control_name_only(dir: &Path) -> PathBuf {
    let node = dir.join("control-name.xml");
    std::fs::write(
        &node,
        "<node><domain type='kvm'><name>evil&#x9;name&#xd;x</name>\
         <memory>1048576</memory><os><type arch='ppc64le' machine='pseries'>hvm</type></os><devices>\
         <hostdev mode='subsystem' type='pci'><source><address domain='0x0002' bus='0x02' slot='0x00' \
         function='0x0'/></source><address type='pci' domain='0x0000' bus='0x00' slot='0x05' \
         function='0x0'/></hostdev></devices></domain>\
         <device><name>pci_0002_02_00_0</name><parent>computer</parent><capability type='pci'>\
         <domain>2</domain><bus>2</bus><slot>0</slot><function>0</function>\
         <product id='0x1017'/><vendor id='0x15b3'/><iommuGroup number='8'><address domain='0x0002' \
         bus='0x02' slot='0x00' function='0x0'/></iommuGroup></capability></device></node>",
    )
    .unwrap();
    node
}

#[test]
fn control_characters_in_a_domain_name_are_escaped_in_text_reports() {
    let dir = tempfile::tempdir().unwrap();
    let node = control_name_only(dir.path());
    let out = run(&["audit", "-c", &uri(&node)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains(['\t', '\r']), "{text:?}");
    let row = text.lines().find(|l| l.starts_with("evil")).unwrap();
    let cells: Vec<&str> = row.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        cells[..4],
        ["evil\\tname\\rx", "running", "persistent", "yes"],
        "{text}"
    );
    assert!(text.contains("\nevil\\tname\\rx (persistent):\n"), "{text}");
    // JSON carries the name as it is (JSON escapes it itself).
    let (_, json) = audit_json(&node, &[]);
    assert_eq!(json["results"][0]["domain"], "evil\tname\rx");

    let out = run(&["groups", "-c", &uri(&node)]);
    let text = stdout(&out);
    assert!(!text.contains(['\t', '\r']), "{text:?}");
    assert!(
        text.contains("used by guest 'evil\\tname\\rx' at 0000:00:05.0"),
        "{text}"
    );

    // fix --domain's stderr lines name the guest too.
    let out = run(&["fix", "--domain", "evil\tname\rx", "-c", &uri(&node)]);
    let err = stderr(&out);
    assert!(!err.contains(['\t', '\r']), "{err:?}");
    assert!(
        err.contains("phbguard: evil\\tname\\rx: hostdev 0002:02:00.0: 0000:00:05.0 -> "),
        "{err}"
    );
}

#[test]
fn every_opt_out_shows_and_keeps_the_audit_clean() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["off", "warn"] {
        let node = opted_out_only(dir.path(), mode);
        let (out, json) = audit_json(&node, &[]);
        // The hook lets it start: nothing for enforce to refuse.
        assert_eq!(out.status.code(), Some(0), "{mode}: {json}");
        let r = &json["results"][0];
        assert_eq!(r["findings"][0]["rule"], "hostdev-on-default-phb", "{mode}");
        assert_eq!(
            (&r["opted_out"], &r["opt_out"]),
            (&Value::Bool(true), &Value::from(mode))
        );
        assert_eq!(r["mode"], mode);
        assert_eq!(r["start_refused"], false);
        assert_eq!(r["refused_under_enforce"], false);
        let text = stdout(&run(&["audit", "-c", &uri(&node)]));
        let row = audit_row(&text, "legacy", "persistent");
        assert_eq!(row[8..], [format!("yes ({mode})"), "no".into()], "{text}");
    }
    // Listed in the policy's exempt: the third opt-out.
    let node = opted_out_only(dir.path(), "enforce");
    let policy = dir.path().join("exempt.toml");
    std::fs::write(&policy, "exempt = [\"legacy\"]\n").unwrap();
    let (out, json) = audit_json(&node, &["--config", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["results"][0]["opt_out"], "exempt");
    // Its own mode='enforce' and no exempt: refused.
    let (out, json) = audit_json(&node, &[]);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["results"][0]["opt_out"], Value::Null);
    assert_eq!(json["results"][0]["start_refused"], true);
}

#[test]
fn a_bad_metadata_mode_is_shown_as_the_hook_treats_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = opted_out_only(dir.path(), "bogus");
    let (out, json) = audit_json(&node, &[]);
    // The hook ignores the metadata (a metadata-error warning) and enforces: the guest is refused.
    assert_eq!(out.status.code(), Some(1), "{json}");
    let r = &json["results"][0];
    assert_eq!(r["policy"], "bogus");
    assert_eq!(r["mode"], "enforce");
    assert_eq!(r["opted_out"], false);
    assert_eq!(r["start_refused"], true);
    let problem = r["metadata_error"].as_str().expect("metadata_error");
    assert!(
        problem.starts_with("<metadata><phbguard:policy mode='bogus'> is not enforce, warn or off"),
        "{problem}"
    );
    // A valid mode has none.
    let (_, json) = audit_json(&opted_out_only(dir.path(), "warn"), &[]);
    assert_eq!(json["results"][0]["metadata_error"], Value::Null);

    let out = run(&["audit", "-c", &uri(&node)]);
    let text = stdout(&out);
    assert_eq!(
        audit_row(&text, "legacy", "persistent")[8..],
        ["no (bad mode 'bogus')", "yes"],
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\nlegacy (persistent):\n  warning metadata-error: {problem}\n"
        )),
        "{text}"
    );
    let (out, samples) = audit_prometheus(&node, &dir.path().join("bad.prom"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        samples.iter().any(|l| l
            .starts_with("gauge phbguard_domain_bad_metadata{definition=persistent,domain=legacy,")
            && l.ends_with("} 1.0")),
        "{}",
        samples.join("\n")
    );
    assert!(
        text.contains(
            "2 definitions judged: 2 with errors, 2 the hook would refuse to start, 2 with a bad policy mode"
        ),
        "{text}"
    );
}

#[test]
fn host_facts_come_from_node_devices_and_sysfs_root_overrides_them() {
    // None of fleet.xml's devices exist here: judged from node devices, web is fine...
    let (_, json) = audit_json(&fleet(), &[]);
    let web = |json: &Value| -> Vec<String> {
        finding_lines(json)
            .into_iter()
            .filter(|l| l.starts_with("web/"))
            .collect()
    };
    assert_eq!(
        web(&json),
        ["web/persistent: warning hostdev-shared-between-guests hostdev 0002:02:00.0 at 0000:01:01.0"]
    );
    // ... judged from an (empty) sysfs tree, the device is unknown.
    let empty = tempfile::tempdir().unwrap();
    let (_, json) = audit_json(&fleet(), &["--sysfs-root", empty.path().to_str().unwrap()]);
    assert!(
        web(&json).contains(
            &"web/persistent: warning iommu-group-unknown hostdev 0002:02:00.0 at 0000:01:01.0".to_string()
        ),
        "{:?}",
        web(&json)
    );
    // ... and so from the tree the hook's policy file names (the hook judges from it), unless
    // --sysfs-root says otherwise; a policy tree that is not a directory is named as such.
    let policy = empty.path().join("policy.toml");
    std::fs::write(&policy, format!("sysfs_root = \"{}\"\n", empty.path().display())).unwrap();
    let (_, from_policy) = audit_json(&fleet(), &["--config", policy.to_str().unwrap()]);
    assert_eq!(web(&from_policy), web(&json));
    let tree = tempfile::tempdir().unwrap();
    let dev = tree.path().join("bus/pci/devices/0002:02:00.0");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::create_dir_all(tree.path().join("kernel/iommu_groups/8")).unwrap();
    std::os::unix::fs::symlink("../../../../kernel/iommu_groups/8", dev.join("iommu_group")).unwrap();
    let (_, flag_wins) = audit_json(
        &fleet(),
        &[
            "--config",
            policy.to_str().unwrap(),
            "--sysfs-root",
            tree.path().to_str().unwrap(),
        ],
    );
    assert_eq!(
        web(&flag_wins),
        ["web/persistent: warning hostdev-shared-between-guests hostdev 0002:02:00.0 at 0000:01:01.0"]
    );
    // A policy tree that is not a directory is a problem of the policy file, which the report
    // shows (the hook judges in warn mode then); facts come from node devices meanwhile.
    std::fs::write(&policy, "sysfs_root = \"/nonexistent/sys\"\n").unwrap();
    let out = run(&[
        "audit",
        "-c",
        &uri(&fleet()),
        "--config",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "\n  {}:1: sysfs_root = \"/nonexistent/sys\": No such file or directory",
            policy.display()
        )),
        "{}",
        stdout(&out)
    );
    // fix --domain would fix from made-up facts: it refuses, naming the policy's tree.
    let out = phbguard(&["fix", "--domain", "web", "-c", &uri(&fleet())])
        .env("PHBGUARD_CONFIG", &policy)
        .output();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("phbguard: the policy file's sysfs_root: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_sysfs_root_that_is_not_a_directory_is_exit_2_with_one_line() {
    // A typo must not pass for a host whose devices are all "not on this host".
    let file = tempfile::NamedTempFile::new().unwrap();
    let file = file.path().to_str().unwrap();
    for (command, root) in [
        ("audit", "/nonexistent/phbguard-sys"),
        ("audit", file),
        ("groups", "/nonexistent/phbguard-sys"),
        ("groups", file),
    ] {
        let out = run(&[command, "-c", &uri(&fleet()), "--sysfs-root", root]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stdout(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("phbguard: --sysfs-root: sysfs root {root}")),
            "{err}"
        );
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
}

#[test]
fn libvirt_default_uri_is_honoured() {
    let out = phbguard(&["audit", "--format", "json"])
        .env("LIBVIRT_DEFAULT_URI", uri(&fleet()))
        .output();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 8);
}

#[test]
fn a_connection_that_fails_is_exit_2_with_one_line() {
    let out = run(&["audit", "-c", "test:///no/such/node.xml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    // libxml2 may add its own 'I/O warning' line; phbguard says it once.
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("phbguard:")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(
        ours[0].starts_with("phbguard: cannot connect to libvirt at 'test:///no/such/node.xml': "),
        "{err}"
    );
    assert!(!err.contains("libvirt: Test Driver error"), "{err}");
    assert!(stdout(&out).is_empty());
}

/// Samples as the Python client library's parser reads them: `name{labels} value`, labels
/// sorted.
fn parse_prometheus(path: &Path) -> Vec<String> {
    // Debian's python3-prometheus-client, installed by scripts/test-all.
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for fam in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n\
        \x20       print(f'{fam.type} {s.name}{{{labels}}} {s.value}')\n";
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, path.to_str().unwrap()])
        .output()
        .expect("/usr/bin/python3 runs");
    assert!(
        out.status.success(),
        "the Prometheus parser refused the file (is python3-prometheus-client installed?): {}",
        stderr(&out)
    );
    stdout(&out).lines().map(String::from).collect()
}

/// `audit --format prometheus --output FILE` on `node`: the run and FILE's samples.
fn audit_prometheus(node: &Path, file: &Path) -> (Output, Vec<String>) {
    let u = uri(node);
    let out = run(&[
        "audit",
        "-c",
        &u,
        "--format",
        "prometheus",
        "--output",
        file.to_str().unwrap(),
    ]);
    let samples = parse_prometheus(file);
    (out, samples)
}

#[test]
fn prometheus_textfile_parses_and_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("phbguard.prom");
    std::fs::write(&prom, "stale").unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = run(&[
        "audit",
        "-c",
        &uri(&fleet()),
        "--format",
        "prometheus",
        "--output",
        prom.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let samples = parse_prometheus(&prom);
    let has = |s: &str| {
        assert!(
            samples.iter().any(|l| l == s),
            "no '{s}' in\n{}",
            samples.join("\n")
        )
    };
    has(
        "gauge phbguard_domain_violations{definition=persistent,domain=pool-bad,rule=hostdev-network-not-isolated,severity=error,uuid=7e57f1ee-0000-4000-8000-000000000004} 1.0",
    );
    has(
        "gauge phbguard_domain_findings{definition=persistent,domain=pool-good,severity=error,uuid=7e57f1ee-0000-4000-8000-000000000005} 0.0",
    );
    has(
        "gauge phbguard_domain_opted_out{definition=persistent,domain=legacy,opt_out=off,uuid=7e57f1ee-0000-4000-8000-000000000003} 1.0",
    );
    // What to alert on: a guest the hook would refuse to start.
    has(
        "gauge phbguard_domain_start_refused{definition=persistent,domain=pool-bad,uuid=7e57f1ee-0000-4000-8000-000000000004} 1.0",
    );
    has(
        "gauge phbguard_domain_start_refused{definition=persistent,domain=pool-good,uuid=7e57f1ee-0000-4000-8000-000000000005} 0.0",
    );
    has(
        "gauge phbguard_domain_start_refused{definition=persistent,domain=legacy,uuid=7e57f1ee-0000-4000-8000-000000000003} 0.0",
    );
    assert!(
        !samples
            .iter()
            .any(|l| l.contains("phbguard_domain_bad_metadata{"))
    );
    has("gauge phbguard_audit_domains{} 6.0");
    // Opted-out guests are not counted as violations.
    assert!(
        !samples
            .iter()
            .any(|l| l.contains("violations") && l.contains("domain=legacy"))
    );
    let stamp = samples
        .iter()
        .find_map(|l| l.strip_prefix("gauge phbguard_audit_last_run_timestamp_seconds{} "))
        .expect("a timestamp");
    let stamp: f64 = stamp.parse().unwrap();
    assert!(
        stamp >= before.floor() && stamp < before + 600.0,
        "{stamp} vs {before}"
    );

    // Readable by node_exporter, and nothing but the file is left in the directory.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["phbguard.prom"]);
}

#[test]
fn a_label_value_with_quotes_and_backslashes_still_parses() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("odd.xml");
    std::fs::write(
        &node,
        "<node><domain type='kvm'><name>odd\"name\\x</name><memory>1048576</memory>\
         <os><type arch='ppc64le' machine='pseries'>hvm</type></os><devices>\
         <hostdev mode='subsystem' type='pci'><source><address domain='0x0003' bus='0x03' slot='0x00' \
         function='0x0'/></source><address type='pci' domain='0x0000' bus='0x00' slot='0x05' \
         function='0x0'/></hostdev></devices></domain></node>",
    )
    .unwrap();
    let prom = dir.path().join("out.prom");
    run(&[
        "audit",
        "-c",
        &uri(&node),
        "--format",
        "prometheus",
        "-o",
        prom.to_str().unwrap(),
    ]);
    let samples = parse_prometheus(&prom);
    assert!(
        samples
            .iter()
            .any(|l| l.contains("domain=odd\"name\\x,rule=iommu-group-unknown")),
        "{samples:?}"
    );
}

#[test]
fn groups_lists_devices_by_group_with_their_users() {
    let out = run(&["groups", "-c", &uri(&fleet())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "IOMMU group 8 (NUMA node 1)\n  0002:02:00.0  15b3:1017",
        "used by guest 'standby' at 0000:01:01.0 on PHB index 1 target 1\n      used by guest 'web' at 0000:01:01.0 on PHB index 1 target 1",
        "used by guest 'legacy' at 0000:00:05.0 on PHB index 0 target 0",
        "IOMMU group 21 (NUMA node 1)\n  0002:03:00.2  15b3:1018",
        "used by network 'vfpool' (hostdev pool)",
        "No IOMMU group (cannot be assigned to a guest)\n  0030:01:00.0  8086:1583",
        "7 IOMMU groups, 7 PCI devices in them",
    ] {
        assert!(text.contains(needle), "no '{needle}' in\n{text}");
    }

    let out = run(&["groups", "-c", &uri(&fleet()), "--format", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let groups: Vec<u64> = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_u64().unwrap())
        .collect();
    assert_eq!(groups, [8, 9, 21, 22, 30, 31, 32]);
    let dev = &json["groups"][0]["devices"][0];
    assert_eq!(dev["address"], "0002:02:00.0");
    assert_eq!(dev["numa_node"], 1);
    assert_eq!(dev["used_by"][1]["domain"], "web");
    assert_eq!(dev["used_by"][1]["phb_index"], 1);
    assert_eq!(dev["used_by"][1]["phb_target"], 1);
    assert_eq!(json["ungrouped"][0]["address"], "0030:01:00.0");
}

/// The network names of every device's `used_by`, `ADDRESS: NETWORK,...`, from groups' JSON.
fn pool_users(json: &Value) -> Vec<String> {
    let mut rows = Vec::new();
    for g in json["groups"].as_array().expect("groups") {
        for d in g["devices"].as_array().expect("devices") {
            let networks: Vec<&str> = d["used_by"]
                .as_array()
                .expect("used_by")
                .iter()
                .filter_map(|u| u["network"].as_str())
                .collect();
            rows.push(format!(
                "group {} {}: {}",
                g["group"],
                d["address"].as_str().unwrap(),
                networks.join(",")
            ));
        }
    }
    rows
}

#[test]
fn a_pool_that_names_its_pf_uses_the_pfs_vfs() {
    // Network 'sriov' is <pf dev='enP2p4s0f0'/>: node device net_enP2p4s0f0_… has that
    // <interface>, its parent pci_0002_04_00_0 lists VFs 0002:04:00.2 and .3.
    let out = run(&["groups", "-c", &uri(&fleet())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "every pool of fleet.xml resolves");
    let text = stdout(&out);
    for needle in [
        "IOMMU group 31 (NUMA node 1)\n  0002:04:00.2  15b3:1018  -           Mellanox Technologies \
         MT27800 Family [ConnectX-5 Virtual Function]\n      used by network 'sriov' (hostdev pool)\n",
        "IOMMU group 32 (NUMA node 1)\n  0002:04:00.3  15b3:1018  -           Mellanox Technologies \
         MT27800 Family [ConnectX-5 Virtual Function]\n      used by network 'sriov' (hostdev pool)\n",
        // The PF itself is not in the pool.
        "IOMMU group 30 (NUMA node 1)\n  0002:04:00.0  15b3:1017  -           Mellanox Technologies \
         MT27800 Family [ConnectX-5]\n  VFIO: every device is free for a guest (on vfio-pci, no \
         driver, or one that shares)\nIOMMU group 31",
    ] {
        assert!(text.contains(needle), "no '{needle}' in\n{text}");
    }

    let out = run(&["groups", "-c", &uri(&fleet()), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        pool_users(&json),
        [
            "group 8 0002:02:00.0: ",
            "group 9 0003:03:00.0: ",
            "group 21 0002:03:00.2: vfpool",
            "group 22 0002:03:00.3: vfpool",
            "group 30 0002:04:00.0: ",
            "group 31 0002:04:00.2: sriov",
            "group 32 0002:04:00.3: sriov",
        ]
    );
}

/// A host with one PCI NIC (PF 0002:05:00.0, VF 0002:05:00.1) and pools on PFs that lead to no
/// VFs: an interface no node device has, a virtual interface (parent `computer`) and a PF
/// with no VFs; and one pool on the NIC's PF, which still resolves.
fn unresolvable_pools(dir: &Path) -> PathBuf {
    let node = dir.join("unresolvable-pools.xml");
    let pool = |name: &str, pf: &str| {
        format!("<network><name>{name}</name><forward mode='hostdev'><pf dev='{pf}'/></forward></network>")
    };
    let pci = |f: u8, vfs: &str| {
        format!(
            "<device><name>pci_0002_05_00_{f}</name><parent>computer</parent><capability type='pci'>\
             <domain>2</domain><bus>5</bus><slot>0</slot><function>{f}</function>\
             <product id='0x1017'/><vendor id='0x15b3'/>{vfs}<iommuGroup number='4{f}'>\
             <address domain='0x0002' bus='0x05' slot='0x00' function='{f}'/></iommuGroup>\
             </capability></device>"
        )
    };
    let port = |name: &str, ifname: &str, parent: &str| {
        format!(
            "<device><name>{name}</name><parent>{parent}</parent><capability type='net'>\
             <interface>{ifname}</interface><capability type='80203'/></capability></device>"
        )
    };
    let xml = [
        pool("ghost", "enP9p9s0f0"),
        pool("virtual", "ifb0"),
        pool("novfs", "enP2p5s0f1"),
        pool("good", "enP2p5s0f0"),
        pci(
            0,
            "<capability type='virt_functions'><address domain='0x0002' bus='0x05' slot='0x00' \
             function='0x2'/></capability>",
        ),
        pci(1, ""),
        pci(2, ""),
        port(
            "net_enP2p5s0f0_00_00_00_00_00_50",
            "enP2p5s0f0",
            "pci_0002_05_00_0",
        ),
        port(
            "net_enP2p5s0f1_00_00_00_00_00_51",
            "enP2p5s0f1",
            "pci_0002_05_00_1",
        ),
        port("net_ifb0_00_00_00_00_00_52", "ifb0", "computer"),
    ]
    .concat();
    std::fs::write(&node, format!("<node>{xml}</node>")).unwrap();
    node
}

#[test]
fn a_pf_that_leads_to_no_vfs_is_a_warning_naming_the_network_and_the_pf() {
    let dir = tempfile::tempdir().unwrap();
    let node = unresolvable_pools(dir.path());
    for format in ["text", "json"] {
        let out = run(&["groups", "-c", &uri(&node), "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().collect::<Vec<_>>(),
            [
                "phbguard: warning: network 'ghost': its PF 'enP9p9s0f0' is no network interface \
                 of this host (no node device has <interface>enP9p9s0f0</interface>); no VF is \
                 shown as the network's",
                "phbguard: warning: network 'novfs': its PF 'enP2p5s0f1' has no VFs (its PCI \
                 device 0002:05:00.1 lists no virt_functions); no VF is shown as the network's",
                "phbguard: warning: network 'virtual': its PF 'ifb0' is no PCI function's \
                 interface (its node device net_ifb0_00_00_00_00_00_52 has parent 'computer'); \
                 no VF is shown as the network's",
            ]
        );
    }
    let out = run(&["groups", "-c", &uri(&node), "--format", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        pool_users(&json),
        [
            "group 40 0002:05:00.0: ",
            "group 41 0002:05:00.1: ",
            "group 42 0002:05:00.2: good",
        ]
    );
    // The warnings are in the JSON too, one object each.
    let unresolved: Vec<String> = json["unresolved_pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("{} {}", u["network"].as_str().unwrap(), u["pf"].as_str().unwrap()))
        .collect();
    assert_eq!(
        unresolved,
        ["ghost enP9p9s0f0", "novfs enP2p5s0f1", "virtual ifb0"]
    );
    let why = json["unresolved_pools"][1]["why"].as_str().unwrap();
    assert!(why.starts_with("has no VFs"), "{why}");
}

#[test]
fn the_hooks_policy_file_decides_which_starts_audit_says_are_refused() {
    let result = |json: &Value, name: &str| {
        json["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["domain"] == name && r["definition"] == "persistent")
            .unwrap_or_else(|| panic!("{name} in {json}"))
            .clone()
    };
    let (_, json) = audit_json(&fleet(), &[]);
    assert_eq!(result(&json, "pool-bad")["start_refused"], true, "{json}");

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("phbguard.toml");
    let policy_arg = policy.to_str().unwrap();
    // Exempt: an opt-out, as the hook honours it: not refused, not a failure.
    std::fs::write(&policy, "exempt = [\"pool-bad\"]\n").unwrap();
    let (out, json) = audit_json(&fleet(), &["--config", policy_arg]);
    let pool_bad = result(&json, "pool-bad");
    assert_eq!(
        (&pool_bad["start_refused"], &pool_bad["refused_under_enforce"]),
        (&Value::Bool(false), &Value::Bool(false)),
        "{json}"
    );
    assert_eq!(pool_bad["opt_out"], "exempt");
    assert_eq!(pool_bad["opted_out"], true);
    assert_eq!(stderr(&out), "");
    // legacy is opted out by its metadata (off): nothing left that enforce would refuse.
    assert_eq!(out.status.code(), Some(0), "{json}");

    // Warn mode: the hook refuses nothing now, but enforce would: exit 1 (what to fix first).
    std::fs::write(&policy, "mode = \"warn\"\n").unwrap();
    let (out, json) = audit_json(&fleet(), &["--config", policy_arg]);
    let pool_bad = result(&json, "pool-bad");
    assert_eq!(pool_bad["start_refused"], false, "{json}");
    assert_eq!(pool_bad["refused_under_enforce"], true, "{json}");
    assert_eq!(pool_bad["opt_out"], Value::Null);
    assert_eq!(json["policy_file"]["mode"], "warn");
    assert_eq!(json["policy_file"]["applied_mode"], "warn");
    assert_eq!(json["policy_file"]["valid"], true);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["audit", "-c", &uri(&fleet()), "--config", policy_arg]);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "policy {policy_arg}: valid; the hook applies mode = \"warn\" (findings are logged, no guest \
             is refused)\n\nNAME "
        )),
        "{text}"
    );
    assert_eq!(
        audit_row(&text, "pool-bad", "persistent")[9],
        "no (mode warn)",
        "{text}"
    );
    assert!(
        text.contains(
            "3 with errors, 0 the hook would refuse to start (1 under mode = \"enforce\"), 2 opted out"
        ),
        "{text}"
    );

    // A mistake in the policy: the hook judges in warn mode, audit says so and why.
    std::fs::write(&policy, "\nmode = \"warning\"\n").unwrap();
    let (out, json) = audit_json(&fleet(), &["--config", policy_arg]);
    assert_eq!(result(&json, "pool-bad")["start_refused"], false, "{json}");
    assert_eq!(result(&json, "pool-bad")["mode"], "warn", "{json}");
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("phbguard: warning: policy file {policy_arg}:2: ")),
        "{err}"
    );
    assert!(
        err.contains("until it is fixed the hook judges every guest in warn mode"),
        "{err}"
    );
    assert_eq!(json["policy_file"]["valid"], false);
    assert_eq!(json["policy_file"]["applied_mode"], "warn");
    assert_eq!(json["policy_file"]["mode"], "enforce");
    assert_eq!(json["policy_file"]["problems"][0]["line"], 2);
}

/// A policy file with a `[watch]` table and `mode` added below it, in `dir`: TOML reads that
/// `mode` as the table's, so the file is broken and the hook only warns.
fn policy_with_mode_below_its_table(dir: &Path) -> PathBuf {
    let policy = dir.join("phbguard.toml");
    std::fs::write(
        &policy,
        "exempt = []\n[watch]\naction = \"fix\"\nmode = \"enforce\"\n",
    )
    .unwrap();
    policy
}

/// Every report of audit says when the policy file is broken and that the hook only warns.
#[test]
fn a_broken_policy_is_in_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with_mode_below_its_table(dir.path());
    let policy_arg = policy.to_str().unwrap();
    let problem = format!(
        "{policy_arg}:4: 'mode' is inside [watch] (line 2); top-level keys go before the first [table]"
    );

    let out = run(&["audit", "-c", &uri(&fleet()), "--config", policy_arg]);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "policy {policy_arg}: 1 problem; until it is fixed the hook judges every guest in warn \
             mode, its fail-safe (findings are logged, no guest is refused):\n  {problem}\n\nNAME "
        )),
        "{text}"
    );
    // The text report says it: not again on stderr.
    assert_eq!(stderr(&out), "");
    assert_eq!(
        audit_row(&text, "pool-bad", "persistent")[9],
        "no (policy has problems)"
    );

    let (_, json) = audit_json(&fleet(), &["--config", policy_arg]);
    assert_eq!(
        json["policy_file"]["problems"][0]["message"],
        "'mode' is inside [watch] (line 2); top-level keys go before the first [table]"
    );

    // The textfile of a timer's run with this policy, and its samples as Prometheus reads them.
    let prom = dir.path().join("phbguard.prom");
    let metrics = || {
        let out = run(&[
            "audit",
            "-c",
            &uri(&fleet()),
            "--config",
            policy_arg,
            "--format",
            "prometheus",
            "-o",
            prom.to_str().unwrap(),
        ]);
        (stderr(&out), parse_prometheus(&prom))
    };
    let has_all = |samples: &[String], wanted: &[&str]| {
        for sample in wanted {
            assert!(
                samples.iter().any(|l| l == sample),
                "no '{sample}' in\n{}",
                samples.join("\n")
            );
        }
    };
    let (err, samples) = metrics();
    assert!(err.contains(&problem), "{err}");
    has_all(
        &samples,
        &[
            "gauge phbguard_policy_ok{} 0.0",
            "gauge phbguard_policy_problems{} 1.0",
            "gauge phbguard_hook_mode{mode=warn} 1.0",
            "gauge phbguard_hook_mode{mode=enforce} 0.0",
            "gauge phbguard_domain_refused_under_enforce{definition=persistent,domain=pool-bad,uuid=7e57f1ee-0000-4000-8000-000000000004} 1.0",
            "gauge phbguard_domain_start_refused{definition=persistent,domain=pool-bad,uuid=7e57f1ee-0000-4000-8000-000000000004} 0.0",
        ],
    );

    // Fixed: the same metrics say so.
    std::fs::write(
        &policy,
        "mode = \"enforce\"\nexempt = []\n[watch]\naction = \"fix\"\n",
    )
    .unwrap();
    let (err, samples) = metrics();
    assert_eq!(err, "");
    has_all(
        &samples,
        &[
            "gauge phbguard_policy_ok{} 1.0",
            "gauge phbguard_policy_problems{} 0.0",
            "gauge phbguard_hook_mode{mode=enforce} 1.0",
            "gauge phbguard_domain_start_refused{definition=persistent,domain=pool-bad,uuid=7e57f1ee-0000-4000-8000-000000000004} 1.0",
        ],
    );
}

/// The policy's sysfs_root is where the hook reads host facts: audit reads them there too,
/// unless --sysfs-root says otherwise.
#[test]
fn the_policys_sysfs_root_is_read_as_the_hook_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    // web's device, 0002:02:00.0, in IOMMU group 8 here; not in node devices' groups.
    let sys = dir.path().join("sys");
    let dev = sys.join("bus/pci/devices/0002:02:00.0");
    std::fs::create_dir_all(&dev).unwrap();
    std::os::unix::fs::symlink("../../../kernel/iommu_groups/8", dev.join("iommu_group")).unwrap();
    let policy = dir.path().join("phbguard.toml");
    std::fs::write(&policy, format!("sysfs_root = \"{}\"\n", sys.display())).unwrap();
    let policy_arg = policy.to_str().unwrap();
    let rules = |json: &Value, name: &str| -> Vec<String> {
        finding_lines(json)
            .into_iter()
            .filter(|l| l.starts_with(&format!("{name}/persistent: ")))
            .collect()
    };
    let (_, json) = audit_json(&fleet(), &["--config", policy_arg]);
    assert_eq!(
        json["host_facts"]["sysfs_root"].as_str(),
        Some(sys.to_str().unwrap()),
        "{json}"
    );
    // legacy's device is in node devices (group 9) but not in this tree: unknown, as the hook
    // reading this tree says; web's is in both.
    assert!(
        rules(&json, "legacy")
            .iter()
            .any(|l| l.contains("iommu-group-unknown hostdev 0003:03:00.0")),
        "{json}"
    );
    assert!(
        !rules(&json, "web")
            .iter()
            .any(|l| l.contains("iommu-group-unknown")),
        "{json}"
    );
    let (_, node_devices) = audit_json(&fleet(), &[]);
    assert!(
        !rules(&node_devices, "legacy")
            .iter()
            .any(|l| l.contains("iommu-group-unknown"))
    );
    let out = run(&["audit", "-c", &uri(&fleet()), "--config", policy_arg]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "\nhost facts from the policy's sysfs_root {}, as the hook reads them\n",
            sys.display()
        )),
        "{text}"
    );
    // --sysfs-root wins.
    let empty = tempfile::tempdir().unwrap();
    let (_, json) = audit_json(
        &fleet(),
        &[
            "--config",
            policy_arg,
            "--sysfs-root",
            empty.path().to_str().unwrap(),
        ],
    );
    assert_eq!(json["host_facts"]["sysfs_root"].as_str(), empty.path().to_str());
    // A sysfs_root that is not a directory: a policy problem; facts from node devices instead.
    std::fs::write(&policy, "sysfs_root = \"/nonexistent/phbguard-sys\"\n").unwrap();
    let (out, json) = audit_json(&fleet(), &["--config", policy_arg]);
    assert_eq!(json["host_facts"]["sysfs_root"], Value::Null);
    assert_eq!(
        json["host_facts"]["note"],
        "host facts from libvirt's node devices, not the policy's sysfs_root \
         /nonexistent/phbguard-sys: it is not a directory"
    );
    assert_eq!(json["policy_file"]["valid"], false);
    assert!(
        stderr(&out).contains(&format!(
            "{policy_arg}:1: sysfs_root = \"/nonexistent/phbguard-sys\": No such file or directory"
        )),
        "{}",
        stderr(&out)
    );
}

/// groups reads the devices from a sysfs tree as audit does with --sysfs-root (their drivers
/// and classes judge VFIO's viability); who uses them still comes from libvirt.
#[test]
fn groups_reads_a_sysfs_tree_with_sysfs_root() {
    let root = tempfile::tempdir().unwrap();
    let members = root.path().join("kernel/iommu_groups/40/devices");
    std::fs::create_dir_all(&members).unwrap();
    // The guests' device on vfio-pci, and its other function still on the host's driver.
    for (function, driver) in [("0", "vfio-pci"), ("1", "mlx5_core")] {
        let name = format!("0002:02:00.{function}");
        let dev = root.path().join("bus/pci/devices").join(&name);
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vendor"), "0x15b3\n").unwrap();
        std::fs::write(dev.join("device"), "0x1017\n").unwrap();
        std::fs::write(dev.join("class"), "0x020000\n").unwrap();
        std::fs::write(dev.join("numa_node"), "0\n").unwrap();
        std::os::unix::fs::symlink("../../../kernel/iommu_groups/40", dev.join("iommu_group")).unwrap();
        std::os::unix::fs::symlink(format!("../../../bus/pci/drivers/{driver}"), dev.join("driver")).unwrap();
        std::os::unix::fs::symlink(format!("../../../../bus/pci/devices/{name}"), members.join(&name))
            .unwrap();
    }
    let root_arg = root.path().to_str().unwrap();
    let out = run(&["groups", "-c", &uri(&fleet()), "--sysfs-root", root_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "IOMMU group 40 (NUMA node 0)\n  0002:02:00.0  15b3:1017  vfio-pci\n      \
         used by guest 'standby' at 0000:01:01.0 on PHB index 1 target 1\n      \
         used by guest 'web' at 0000:01:01.0 on PHB index 1 target 1\n  \
         0002:02:00.1  15b3:1017  mlx5_core\n  \
         VFIO: not viable for guest 'standby': 0002:02:00.1 is bound to mlx5_core\n  \
         VFIO: not viable for guest 'web': 0002:02:00.1 is bound to mlx5_core\n\
         1 IOMMU group, 2 PCI devices in them; a guest needs one PHB per group it uses\n"
    );
}

/// The `$ phbguard audit` samples of README.md are this build's output: the policy line, the
/// table and the summary of the fleet (elided lines aside), and the report of a policy file
/// with a key below its table.
#[test]
fn readmes_audit_samples_are_real_runs() {
    let sample = readme_block("$ phbguard audit -c test:///…/fleet.xml\n");
    let defaults = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/policy-defaults.toml");
    let out = run(&["audit", "-c", &uri(&fleet())]);
    let real = stdout(&out).replace(&defaults.display().to_string(), "/etc/phbguard/phbguard.toml");
    let real: Vec<&str> = real.lines().collect();
    // Up to the first elision, line for line; then the summary.
    let shown: Vec<&String> = sample[1..].iter().take_while(|l| *l != "…").collect();
    assert!(shown.len() > 10, "{sample:#?}");
    for (i, line) in shown.iter().enumerate() {
        assert_eq!(real[i], line.as_str(), "README line {i} of the audit sample");
    }
    assert_eq!(real.last().copied(), sample.last().map(String::as_str));

    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with_mode_below_its_table(dir.path());
    let out = run(&[
        "audit",
        "-c",
        &uri(&fleet()),
        "--config",
        policy.to_str().unwrap(),
    ]);
    let real = stdout(&out).replace(&policy.display().to_string(), "/etc/phbguard/phbguard.toml");
    let sample = readme_block("policy /etc/phbguard/phbguard.toml: 1 problem;");
    assert_eq!(real.lines().take(2).collect::<Vec<_>>(), sample);
}

/// README.md's `$ phbguard groups` sample is this build's output, whole.
#[test]
fn readmes_groups_sample_is_a_real_run() {
    let sample = readme_block("$ phbguard groups -c test:///…/fleet.xml\n");
    let out = run(&["groups", "-c", &uri(&fleet())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), sample[1..].join("\n") + "\n");
}

/// The lines of README.md from the one that starts with `start` to the end of its code block.
fn readme_block(start: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let from = readme
        .find(start)
        .unwrap_or_else(|| panic!("README has no '{start}'"));
    readme[from..]
        .lines()
        .take_while(|l| *l != "```")
        .map(String::from)
        .collect()
}
