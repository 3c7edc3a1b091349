//! What the binaries write: reports to stdout without panicking when the reader goes away
//! (`phbguard check | head`) or to a file that readers see whole or not at all, and errors to
//! stderr as one line with their causes.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

/// Writes `text` and returns `code`; a closed pipe is not an error, any other failure is.
pub fn print(text: &str, code: u8) -> anyhow::Result<u8> {
    finish(io::stdout().lock().write_all(text.as_bytes()), code)
}

/// Maps the outcome of writing a report to the exit code.
pub fn finish(written: io::Result<()>, code: u8) -> anyhow::Result<u8> {
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(code),
        other => other.map(|()| code).context("cannot write the report"),
    }
}

/// `phbguard: FILE: what went wrong: why`, the error and its causes on one line; control
/// characters from a document, a domain name or a file name in it are escaped.
pub fn error(err: &anyhow::Error) {
    eprintln!(
        "phbguard: {}",
        phbguard_core::escape::controls(&format!("{err:#}"))
    );
}

/// Writes a report to `path`, or to stdout when there is none. The file is replaced whole:
/// written beside its target and renamed over it, so a reader such as node_exporter sees the
/// old report or the new one, never half of one.
pub fn write(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    let Some(path) = path else {
        return print(text, 0).map(drop);
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Beside the target, so the rename is atomic. A dot file: node_exporter's textfile
    // collector reads only *.prom, so it never sees a half-written one.
    let mut temp = tempfile::Builder::new()
        .prefix(".phbguard")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(text.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    // 0644: the collector, which reads it, does not run as root.
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the mode of {}", temp.path().display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot rename the report onto {}", path.display()))?;
    Ok(())
}
