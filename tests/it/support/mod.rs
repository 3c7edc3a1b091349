//! What this crate's tests share: the built binary and the hosts the rule cases are judged
//! on, over the kit both integration-test crates share (phbguard-testkit), re-exported here.

use std::path::{Path, PathBuf};
use std::process::Output;

pub use phbguard_testkit::libvirtd::{assert_libvirtd_answers, libvirtd, virsh};
pub use phbguard_testkit::{FakeSysfs, Run, golden, output_text, repo, stderr, stdout};

pub mod fuzz_props;

/// The `phbguard` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_phbguard"))
}

/// Runs phbguard with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    Run::new(bin()).args(args).stdin(stdin).output()
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
            let driver = Some(cols[3]).filter(|d| *d != "-");
            let class = u32::from_str_radix(cols[4].trim_start_matches("0x"), 16).unwrap();
            sysfs
                .device(cols[0], group, node)
                .driver(cols[0], driver)
                .class(cols[0], class)
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

/// Every file under the repository but build output and git's own.
pub fn repo_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name();
            if matches!(name.to_str(), Some("target" | ".git")) {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(&path, out);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(repo(), &mut out);
    out.sort();
    out
}
