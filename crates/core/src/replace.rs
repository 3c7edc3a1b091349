//! Replacing a file atomically: readers see the old contents or the new, never a mix, and a
//! failure at any step leaves the original as it was.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What went wrong, and at which step.
#[derive(Debug)]
pub struct ReplaceError {
    pub step: String,
    pub source: io::Error,
}

impl fmt::Display for ReplaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl std::error::Error for ReplaceError {}

fn at(step: impl Into<String>) -> impl FnOnce(io::Error) -> ReplaceError {
    let step = step.into();
    move |source| ReplaceError { step, source }
}

/// Replaces the contents of `path` (through a symlink, its target) with `contents`: writes a
/// temporary file beside it, gives it the original's mode and owner, syncs it, renames it over
/// the original and syncs the directory.
pub fn replace_file(path: &Path, contents: &[u8]) -> Result<(), ReplaceError> {
    let target = fs::canonicalize(path).map_err(at("cannot resolve the path"))?;
    let meta = fs::metadata(&target).map_err(at("cannot stat it"))?;
    if !meta.is_file() {
        return Err(ReplaceError {
            step: "refusing to replace it".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }
    // A rename would replace a read-only file in a writable directory; refuse, as an editor
    // does. Opening for writing without truncating proves the permission and changes nothing.
    OpenOptions::new()
        .write(true)
        .open(&target)
        .map_err(at("cannot write it"))?;
    let dir = target.parent().unwrap_or(Path::new("/"));
    let mut temp = TempFile::create(dir, &target)?;
    temp.file
        .write_all(contents)
        .map_err(at(format!("cannot write {}", temp.path.display())))?;
    temp.file
        .set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(at("cannot copy the file mode"))?;
    let temp_meta = temp
        .file
        .metadata()
        .map_err(at("cannot stat the temporary file"))?;
    if (temp_meta.uid(), temp_meta.gid()) != (meta.uid(), meta.gid()) {
        std::os::unix::fs::fchown(&temp.file, Some(meta.uid()), Some(meta.gid()))
            .map_err(at("cannot keep the file's owner and group"))?;
    }
    temp.file.sync_all().map_err(at("cannot sync the new contents"))?;
    fs::rename(&temp.path, &target).map_err(at("cannot rename the new file into place"))?;
    temp.renamed = true;
    // The rename is only durable once the directory entry is on disk.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at("cannot sync the directory"))
}

/// Writes `contents` to `path` whether or not it exists, so that readers see the old file or
/// the new one whole, never a partial one: a temporary file beside it with `mode`, synced,
/// renamed over `path`, the directory synced. For reports other programs pick up (the
/// node_exporter textfile of `phbguard audit`).
pub fn publish_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), ReplaceError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut temp = TempFile::create(dir, path)?;
    temp.file
        .write_all(contents)
        .map_err(at(format!("cannot write {}", temp.path.display())))?;
    temp.file
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(at("cannot set the file mode"))?;
    temp.file.sync_all().map_err(at("cannot sync the new contents"))?;
    fs::rename(&temp.path, path)
        .map_err(at(format!("cannot rename the new file onto {}", path.display())))?;
    temp.renamed = true;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at("cannot sync the directory"))
}

/// A temporary file that removes itself unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    file: File,
    renamed: bool,
}

impl TempFile {
    fn create(dir: &Path, target: &Path) -> Result<Self, ReplaceError> {
        let base = target
            .file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy());
        let mut last = None;
        for attempt in 0..100u32 {
            let path = dir.join(format!(".{base}.phbguard-{}-{attempt}", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        renamed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(at(format!("cannot create a temporary file in {}", dir.display()))(e)),
            }
        }
        Err(
            at(format!("cannot create a temporary file in {}", dir.display()))(
                last.unwrap_or_else(|| io::Error::other("no free name")),
            ),
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: the error that brought us here is the one worth reporting.
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_keeps_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.xml");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn through_a_symlink_the_target_is_replaced_and_the_link_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.xml");
        let link = dir.path().join("link.xml");
        fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_file(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn publish_creates_or_replaces_whole_with_the_mode_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phbguard.prom");
        publish_file(&path, b"one", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        publish_file(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = publish_file(&dir.path().join("no/such/dir/x.prom"), b"x", 0o644).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot create a temporary file in"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = replace_file(dir.path(), b"x").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
