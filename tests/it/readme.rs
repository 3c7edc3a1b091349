//! What README.md promises about `check` and the package that no other test shows: where a
//! finding about a PHB libvirt implies points, files over 16 MiB refused without a byte read,
//! `/sys` as the default `--sysfs-root`, and the audit timer's interval as README states it.

use crate::support::{self, FakeSysfs, repo};

use std::path::Path;
use std::process::Command;

use phbguard_testkit::xml::hostdev;
use serde_json::Value;

fn check_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["check", "--format", "json"];
    all.extend(args);
    let out = support::run(&all, b"");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: no JSON ({e}): {}", support::stderr(&out)));
    (out.status.code().unwrap(), json)
}

/// README: each finding points at the line its device or controller starts on; `null` for a
/// PHB libvirt implies with nothing on it. docs/rules.md: a finding about an implied PHB points
/// at the first device directly on it; the topology's PHB entries have no line of their own.
#[test]
fn an_implied_phb_has_no_line_and_a_finding_about_it_points_at_its_first_device() {
    let host =
        FakeSysfs::new()
            .device("0002:01:00.0", Some(1), Some(0))
            .device("0002:02:00.0", Some(2), Some(0));
    // No PCI controller written: libvirt implies PHB 0 (nothing on it) and PHB 1 (two
    // hostdevs of different IOMMU groups on it).
    let xml = format!(
        "<domain type='kvm'>\n  <name>implied</name>\n  <os><type arch='ppc64le' machine='pseries'>hvm</type></os>\n  \
         <devices>\n    {}\n    {}\n  </devices>\n</domain>\n",
        hostdev("0002:01:00.0", 1, 1),
        hostdev("0002:02:00.0", 1, 2)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("implied.xml");
    std::fs::write(&file, &xml).unwrap();
    let (code, json) = check_json(&["--sysfs-root", host.path_str(), file.to_str().unwrap()]);
    assert_eq!(code, 1, "{json}");
    let result = &json["results"][0];
    let findings = result["findings"].as_array().unwrap();
    let mixes: Vec<&Value> = findings
        .iter()
        .filter(|f| f["rule"] == "phb-mixes-iommu-groups")
        .collect();
    assert_eq!(mixes.len(), 1, "{json}");
    assert_eq!(mixes[0]["device"], "controller pci index 1", "{json}");
    // The first hostdev on it starts on line 5.
    assert_eq!(
        xml.lines().nth(4).map(|l| l.trim_start().starts_with("<hostdev")),
        Some(true)
    );
    assert_eq!(mixes[0]["line"], 5, "{json}");
    let phbs = result["topology"]["phbs"].as_array().unwrap();
    let summary: Vec<(Value, Value, Value)> = phbs
        .iter()
        .map(|p| (p["index"].clone(), p["written"].clone(), p["line"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (Value::from(0), Value::Bool(false), Value::Null),
            (Value::from(1), Value::Bool(false), Value::Null)
        ],
        "{json}"
    );
}

/// Watches `path` for opens and reads (inotify) while `run` runs; returns (opened, read).
fn opened_and_read(path: &Path, run: impl FnOnce()) -> (bool, bool) {
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(&fd, path, WatchFlags::OPEN | WatchFlags::ACCESS).unwrap();
    run();
    // The kernel queues an event as the open or read happens: all are queued by now.
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    let mut events = inotify::Reader::new(&fd, &mut buf);
    let (mut opened, mut read) = (false, false);
    loop {
        match events.next() {
            Ok(e) => {
                opened |= e.events().contains(ReadFlags::OPEN);
                read |= e.events().contains(ReadFlags::ACCESS);
            }
            Err(e) if e == rustix::io::Errno::AGAIN => break,
            Err(e) => panic!("reading inotify events: {e}"),
        }
    }
    (opened, read)
}

/// README: "Files over 16 MiB are refused unread." Not a byte read: inotify sees the file
/// opened and never read (and, so that this means something, sees a smaller one read).
#[test]
fn a_file_over_16_mib_is_refused_without_reading_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.xml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len((16 << 20) + 1).unwrap();
    let mut out = None;
    let (opened, read) = opened_and_read(&big, || {
        out = Some(support::run(&["check", big.to_str().unwrap()], b""));
    });
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", support::stderr(&out));
    assert_eq!(
        support::stderr(&out),
        format!(
            "phbguard: {}: larger than 16 MiB, refusing to read it\n",
            big.display()
        )
    );
    assert!(opened, "the file was never opened: the watch saw nothing");
    assert!(!read, "phbguard read the file it refused");

    // The control: exactly 16 MiB is read (and then judged: it is no domain).
    file.set_len(16 << 20).unwrap();
    let (_, read) = opened_and_read(&big, || {
        let out = support::run(&["check", big.to_str().unwrap()], b"");
        assert_eq!(out.status.code(), Some(2), "{}", support::stderr(&out));
        assert!(
            !support::stderr(&out).contains("larger than"),
            "{}",
            support::stderr(&out)
        );
    });
    assert!(read, "a 16 MiB file was not read: the watch does not see reads");
}

/// README: IOMMU groups and NUMA nodes come from `<sysfs-root>/bus/pci/devices/...`
/// (`--sysfs-root`, default `/sys`). A hostdev naming a real PCI device of this machine is
/// judged by what /sys says of it without the option, exactly as with `--sysfs-root /sys`, and
/// not as with any other root.
#[test]
fn check_reads_the_host_under_sys_unless_told_otherwise() {
    let devices = Path::new("/sys/bus/pci/devices");
    let mut names: Vec<String> = std::fs::read_dir(devices)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: this test needs a machine with PCI devices",
                devices.display()
            )
        })
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let real = names.first().unwrap_or_else(|| {
        panic!(
            "{} is empty: this test needs a machine with PCI devices",
            devices.display()
        )
    });
    let xml = format!(
        "<domain type='kvm'>\n  <name>on-this-host</name>\n  <os><type arch='ppc64le' machine='pseries'>hvm</type></os>\n  \
         <devices>\n    {}\n  </devices>\n</domain>\n",
        hostdev(real, 0, 5)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guest.xml");
    std::fs::write(&file, xml).unwrap();
    let file = file.to_str().unwrap();

    let default = check_json(&[file]);
    assert_eq!(default, check_json(&["--sysfs-root", "/sys", file]));
    let elsewhere = FakeSysfs::new();
    assert_ne!(default, check_json(&["--sysfs-root", elsewhere.path_str(), file]));
    // What /sys says of the device, in the topology: its group, or why there is none.
    let device = &default.1["results"][0]["topology"]["devices"][0];
    assert_eq!(device["host"], real.as_str(), "{device}");
    match std::fs::read_link(devices.join(real).join("iommu_group")) {
        Ok(link) => {
            let group: u64 = link.file_name().unwrap().to_str().unwrap().parse().unwrap();
            assert_eq!(device["iommu_group"], group, "{device}");
        }
        Err(_) => assert_eq!(
            device["iommu_group_unknown"], "the host device has no iommu_group link",
            "{device}"
        ),
    }
}

/// A systemd time span (`5min`, `30s`) in seconds, as systemd itself reads it.
fn seconds(span: &str) -> u64 {
    let out = Command::new("systemd-analyze")
        .args(["timespan", span])
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success(),
        "systemd-analyze timespan {span}: {}",
        support::stderr(&out)
    );
    let text = support::stdout(&out);
    let micros: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("μs: "))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    micros / 1_000_000
}

/// README and the docs say how often the audit timer writes the metrics file; the timer says
/// it to systemd.
#[test]
fn the_audit_timer_runs_as_often_as_readme_and_the_docs_say() {
    let timer = std::fs::read_to_string(repo().join("packaging/phbguard-audit.timer")).unwrap();
    let key = |k: &str| {
        timer
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("phbguard-audit.timer has no {k}="))
            .trim()
            .to_owned()
    };
    let interval = seconds(&key("OnUnitActiveSec"));
    let jitter = seconds(&key("RandomizedDelaySec"));
    assert_eq!(interval % 60, 0, "{interval} s");
    for (doc, says) in [
        ("README.md", "`packaging/phbguard-audit.timer` does that every"),
        (
            "docs/admin.md",
            "the package ships a timer that runs the audit every",
        ),
        ("docs/rules.md", "`packaging/phbguard-audit.timer` runs it every"),
    ] {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let at = text
            .find(says)
            .unwrap_or_else(|| panic!("{doc} no longer says {says:?}"));
        let rest = &text[at + says.len()..];
        assert!(
            rest.starts_with(&format!(" {} minutes", interval / 60)),
            "{doc}: {says}{} (the timer: OnUnitActiveSec={interval} s)",
            &rest[..40.min(rest.len())]
        );
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        readme.contains(&format!("each run up to {jitter} s later")),
        "README does not say the timer's RandomizedDelaySec ({jitter} s)"
    );
}
