//! Writing a report: to stdout (a closed pipe is not an error), or to a file that readers such
//! as node_exporter see whole or not at all.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;
use phbguard_core::replace::publish_file;

pub fn write(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    let Some(path) = path else {
        return match io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("cannot write the report"),
            _ => Ok(()),
        };
    };
    // 0644: node_exporter, which reads it, does not run as root. The temporary file is a dot
    // file, which the textfile collector (*.prom only) never reads half-written.
    publish_file(path, text.as_bytes(), 0o644).with_context(|| format!("{}", path.display()))
}
