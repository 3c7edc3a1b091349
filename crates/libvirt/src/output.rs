//! Writing a report: to stdout (a closed pipe is not an error), or to a file that readers such
//! as node_exporter see whole or not at all.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

pub fn write(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    let Some(path) = path else {
        return match io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("cannot write the report"),
            _ => Ok(()),
        };
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
