//! The `phbguard` binary libvirtd runs as a hook never links libvirt; the commands that talk to
//! libvirt reach `phbguard-libvirt` with the same arguments.

use crate::support;

use std::process::Command;

use support::{Run, bin, stderr, stdout};

/// The shared libraries an ELF file names in its dynamic section (`readelf -d`, binutils).
fn needed(path: &std::path::Path) -> Vec<String> {
    let out = Command::new("readelf")
        .args(["-d", "-W"])
        .arg(path)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).and_then(|s| s.split(']').next()))
        .map(String::from)
        .collect()
}

#[test]
fn the_hook_binary_does_not_link_libvirt() {
    let libs = needed(&bin());
    // The check reads something real: every Rust binary here needs the C library.
    assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
    assert!(!libs.iter().any(|l| l.contains("libvirt")), "{libs:?}");

    // And the other half does link it.
    let libs = needed(&libvirt_half());
    assert!(libs.iter().any(|l| l.starts_with("libvirt.so")), "{libs:?}");
}

/// `phbguard-libvirt`, built beside `phbguard` by `cargo test --workspace`.
fn libvirt_half() -> std::path::PathBuf {
    let path = bin().with_file_name("phbguard-libvirt");
    assert!(
        path.is_file(),
        "{} is not built: run the tests with --workspace (scripts/test-all does)",
        path.display()
    );
    path
}

#[test]
fn phbguard_audit_reaches_the_real_phbguard_libvirt() {
    let _ = libvirt_half();
    let fleet = support::repo().join("crates/libvirt/tests/data/fleet.xml");
    let out = Run::new(bin())
        .args(["audit", "-c", &format!("test://{}", fleet.display())])
        .env_remove("PHBGUARD_LIBVIRT")
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("policy "), "{text}");
    assert!(text.contains("\n\nNAME "), "{text}");
    assert!(text.contains("6 guests, 8 definitions judged"), "{text}");
}

fn via_echo(args: &[&str]) -> std::process::Output {
    // /bin/echo stands in for phbguard-libvirt: it prints the arguments it was given.
    Run::new(bin())
        .args(args)
        .env("PHBGUARD_LIBVIRT", "/bin/echo")
        .output()
}

#[test]
fn libvirt_commands_exec_phbguard_libvirt_with_the_same_arguments() {
    for args in [
        &[
            "audit",
            "-c",
            "test:///x.xml",
            "--format",
            "prometheus",
            "-o",
            "/tmp/p.prom",
        ][..],
        &["groups", "--format", "json"],
        &["fix", "--domain", "db01", "-c", "qemu:///system", "--yes"],
    ] {
        let out = via_echo(args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("{}\n", args.join(" ")));
    }
}

#[test]
fn fix_of_a_file_stays_in_this_binary() {
    let out = via_echo(&["fix", "--domain", "x", "some.xml"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--domain and FILE together are a usage error"
    );
    let out = via_echo(&["fix", "/no/such/file.xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("phbguard: /no/such/file.xml:"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn a_missing_phbguard_libvirt_is_a_clear_error() {
    let out = Run::new(bin())
        .args(["audit"])
        .env("PHBGUARD_LIBVIRT", "/nonexistent/phbguard-libvirt")
        .output();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot run /nonexistent/phbguard-libvirt"),
        "{}",
        stderr(&out)
    );
}
