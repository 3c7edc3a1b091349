//! README: `audit --format prometheus --output FILE` replaces FILE through a temporary file
//! renamed over it, so a reader (node_exporter's textfile collector, at any moment) never sees
//! half a file. On libvirt's test driver with a fleet large enough that writing it in place
//! would take many writes: a reader that reads the file over and over while audits rewrite it
//! sees only whole reports, and a descriptor opened before a run still reads the whole old
//! report after it (the file was replaced, not rewritten).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use phbguard_testkit::{output_text, stderr};

/// A test-driver host with `n` guests, shut off (test:runstate 5: one definition each), each
/// breaking a rule (a hostdev on the default PHB of a host device the node devices do not
/// know), so that each adds lines to the report.
fn fleet(n: usize) -> String {
    let mut xml = String::from("<node>\n");
    for g in 0..n {
        xml.push_str(&format!(
            "<domain type='kvm' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\
             <name>guest{g:04}</name><memory>1048576</memory>\
             <os><type arch='ppc64le' machine='pseries'>hvm</type></os><devices>\
             <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x{g:04x}' \
             bus='0x01' slot='0x00' function='0x0'/></source><address type='pci' domain='0x0000' \
             bus='0x00' slot='0x05' function='0x0'/></hostdev></devices>\
             <test:runstate>5</test:runstate></domain>\n"
        ));
    }
    xml.push_str("</node>\n");
    xml
}

fn audit(host: &Path, out: &Path) {
    let run = crate::phbguard(&[
        "audit",
        "-c",
        &format!("test://{}", host.display()),
        "--format",
        "prometheus",
        "--output",
        out.to_str().unwrap(),
    ])
    .output();
    assert_eq!(run.status.code(), Some(1), "{}", output_text(&run));
    assert!(run.stdout.is_empty(), "{}", stderr(&run));
}

/// What every whole report has: a line per guest's findings, and the run's timestamp last.
fn whole(report: &str, guests: usize) -> bool {
    report.ends_with('\n')
        && report
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("phbguard_audit_last_run_timestamp_seconds "))
        && report
            .lines()
            .filter(|l| {
                l.starts_with("phbguard_domain_findings{")
                    && l.contains("severity=\"error\"")
                    && l.ends_with(" 1")
            })
            .count()
            == guests
}

#[test]
fn a_reader_never_sees_half_a_prometheus_file() {
    let guests = 400;
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("fleet.xml");
    std::fs::write(&host, fleet(guests)).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let prom = out_dir.path().join("phbguard.prom");
    audit(&host, &prom);
    let first = std::fs::read_to_string(&prom).unwrap();
    assert!(whole(&first, guests), "{first}");
    assert!(
        first.len() > 64 << 10,
        "only {} bytes: too small to be written in one go",
        first.len()
    );

    // Replaced, not rewritten: a descriptor opened before a run reads the old report whole.
    let held = std::fs::File::open(&prom).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&held.metadata().unwrap());
    audit(&host, &prom);
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &held, &mut old).unwrap();
    assert!(
        old == first,
        "the old file changed under a reader ({} bytes read, {} before)",
        old.len(),
        first.len()
    );
    let now = std::fs::metadata(&prom).unwrap();
    assert_ne!(std::os::unix::fs::MetadataExt::ino(&now), inode);

    // A reader at work while audits replace the file, as the collector may be.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new((0usize, Vec::<String>::new())));
    let reader = {
        let (stop, seen, prom) = (Arc::clone(&stop), Arc::clone(&seen), prom.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&prom).expect("the file is always there");
                let mut seen = seen.lock().unwrap();
                seen.0 += 1;
                if !whole(&text, guests) {
                    seen.1.push(text);
                }
            }
        })
    };
    let runs = 10;
    for _ in 0..runs {
        audit(&host, &prom);
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let (reads, halves) = &*seen.lock().unwrap();
    assert!(
        halves.is_empty(),
        "{} of {reads} reads saw part of a report: {:?}",
        halves.len(),
        &halves[0][..200.min(halves[0].len())]
    );
    assert!(
        *reads > runs,
        "only {reads} reads during {runs} runs: the reader did not overlap them"
    );
    // Nothing but the file is left beside it.
    let names: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["phbguard.prom"]);
}
