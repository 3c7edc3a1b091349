//! Shared by the integration tests: the built binary, fake sysfs trees, virsh on the sandbox
//! daemon. Tests that need libvirtd are `#[ignore = "needs libvirtd"]`: `cargo test` reports
//! them as ignored; scripts/test-all runs them with `--include-ignored`, and then a daemon
//! that does not answer fails them ([`libvirtd`]).
#![allow(dead_code)] // each test crate uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod fuzz_props;

/// The `phbguard` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_phbguard"))
}

/// Runs phbguard with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("phbguard starts");
    // A child that exits before reading all of stdin closes the pipe; that is its business.
    let _ = child.stdin.take().expect("piped").write_all(stdin);
    child.wait_with_output().expect("phbguard runs")
}

/// The names in `dir`, sorted: what a command left behind.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A sysfs tree in a temporary directory, laid out as Linux does:
/// `bus/pci/devices/DDDD:BB:SS.F/iommu_group -> ../../../../kernel/iommu_groups/N`
/// and `bus/pci/devices/DDDD:BB:SS.F/numa_node`.
pub struct FakeSysfs {
    dir: tempfile::TempDir,
}

impl FakeSysfs {
    pub fn new() -> Self {
        FakeSysfs {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Adds a device; `group: None` leaves out the iommu_group link.
    pub fn device(self, addr: &str, group: Option<u32>, numa_node: Option<i32>) -> Self {
        let dev = self.dir.path().join("bus/pci/devices").join(addr);
        std::fs::create_dir_all(&dev).unwrap();
        if let Some(g) = group {
            std::fs::create_dir_all(self.dir.path().join(format!("kernel/iommu_groups/{g}"))).unwrap();
            std::os::unix::fs::symlink(
                format!("../../../../kernel/iommu_groups/{g}"),
                dev.join("iommu_group"),
            )
            .unwrap();
        }
        if let Some(n) = numa_node {
            std::fs::write(dev.join("numa_node"), format!("{n}\n")).unwrap();
        }
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("temp paths are UTF-8")
    }
}

/// The host of the rule cases: a fake sysfs from the `address group node` table in
/// tests/cases/host.txt.
pub fn case_host() -> FakeSysfs {
    let table = std::fs::read_to_string(repo().join("tests/cases/host.txt")).unwrap();
    table
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .fold(FakeSysfs::new(), |sysfs, line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let group = cols[1].parse().ok();
            let node = cols[2].parse().ok();
            sysfs.device(cols[0], group, node)
        })
}

/// libvirt's test mock (its tests/virpcimock.c; tests/corpus/libvirt/virpcimock-devices.txt):
/// the devices the corpus files name, with today's groups.
pub fn virpcimock() -> FakeSysfs {
    let devices: &[(&str, u32)] = &[
        ("0000:00:00.0", 0),
        ("0000:00:01.0", 1),
        ("0000:00:02.0", 2),
        ("0000:00:03.0", 3),
        ("0001:00:00.0", 4),
        ("0001:01:00.0", 5),
        ("0001:01:00.1", 5),
        ("0005:80:00.0", 6),
        ("0005:90:01.0", 7),
        ("0005:90:01.1", 7),
        ("0005:90:01.2", 7),
        ("0005:90:01.3", 7),
    ];
    devices.iter().fold(FakeSysfs::new(), |s, &(addr, group)| {
        s.device(addr, Some(group), None)
    })
}

/// `phbguard check --format json` on one file: the process output and its parsed report.
pub fn check_json(sysfs: &str, file: &str) -> (Output, serde_json::Value) {
    let out = run(&["check", "--format", "json", "--sysfs-root", sysfs, file], b"");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{file}: no JSON report ({e}); stderr: {}", stderr(&out)));
    (out, json)
}

/// `severity rule device` for each finding of the first result of a JSON report.
pub fn finding_lines(json: &serde_json::Value) -> Vec<String> {
    json["results"][0]["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            let field = |k: &str| {
                f[k].as_str()
                    .unwrap_or_else(|| panic!("finding without {k}: {f}"))
            };
            format!("{} {} {}", field("severity"), field("rule"), field("device"))
        })
        .collect()
}

/// `virsh` on the sandbox daemon (qemu:///system), bounded so a stuck daemon fails the test
/// instead of hanging it.
pub fn virsh(args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["120", "virsh", "-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("virsh runs")
}

/// stdout then stderr of a command, as one text for messages and searches.
pub fn output_text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// The real libvirtd, for one test at a time. The tests of this crate run as threads of one
/// process, and the ones on the daemon share its guests, its hooks directory and the e2e state
/// directory, and restart it: each holds this guard for as long as it uses the daemon. Fails
/// the test when the daemon does not answer.
pub fn libvirtd() -> MutexGuard<'static, ()> {
    static DAEMON: Mutex<()> = Mutex::new(());
    // A test that failed while holding it leaves the daemon as its cleanup made it.
    let guard = DAEMON.lock().unwrap_or_else(PoisonError::into_inner);
    assert_libvirtd_answers();
    guard
}

/// Fails the test with how to start the daemon when libvirtd does not answer.
pub fn assert_libvirtd_answers() {
    let probe = virsh(&["list", "--all", "--name"]);
    assert!(
        probe.status.success(),
        "libvirtd does not answer on qemu:///system ({}); start it with \
         'tests/e2e/libvirtd-sandbox.sh start' (scripts/test-all does)",
        output_text(&probe).trim()
    );
}

/// The fake POWER9 sysfs the examples are judged against.
pub fn examples_sysfs() -> String {
    repo().join("examples/sysfs").to_str().unwrap().to_string()
}

/// `phbguard fix --sysfs-root <the examples' sysfs> ARGS...`, nothing on stdin.
pub fn fix_examples(args: &[&str]) -> Output {
    let sysfs = examples_sysfs();
    let mut all = vec!["fix", "--sysfs-root", sysfs.as_str()];
    all.extend(args);
    run(&all, b"")
}
