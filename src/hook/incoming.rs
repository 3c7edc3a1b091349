//! Marks for guests coming in. libvirt calls the hook with `migrate begin` (incoming
//! migration) or `restore begin`, then, for the same guest a few milliseconds later, with
//! `prepare begin` (qemuProcessInit; measured ~5 ms after `restore begin` on libvirt 9.0,
//! docs/hook.md). The policy's `incoming` must decide both calls, so the first leaves a mark —
//! a file named by the guest's UUID holding its name — that the `prepare` consumes.
//!
//! The directory is root-only (0700, owned by the hook's user, not a symbolic link): a mark
//! lowers enforcement, so nobody else may plant one. A mark older than [`WINDOW`] or for
//! another name is stale and ignored.

use std::fs::{DirBuilder, Metadata, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use phbguard_core::verdict::Phase;
use phbguard_io::input::{InputError, Links, read_regular};

/// How long after `migrate begin`/`restore begin` its `prepare begin` may come. libvirt runs
/// them back to back; a minute leaves room for a loaded host and none for a later start.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The mark directory.
pub struct Marks {
    dir: PathBuf,
}

impl Marks {
    pub fn new(dir: &Path) -> Marks {
        Marks {
            dir: dir.to_path_buf(),
        }
    }

    /// Marks `uuid`/`name` as coming in by `phase`.
    pub fn put(&self, uuid: &str, name: &str, phase: Phase) -> Result<(), String> {
        let file = self.file(uuid)?;
        if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(&self.dir) {
            return Err(format!("cannot create {}: {e}", self.dir.display()));
        }
        let meta = std::fs::symlink_metadata(&self.dir);
        self.check_dir(meta.map_err(|e| format!("{}: {e}", self.dir.display()))?)?;
        let tmp = self.dir.join(format!(".{uuid}.{}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(format!("{}\n{name}", phase.op()).as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &file));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", file.display())
        })
    }

    /// Takes the mark of `uuid` if there is one: `Some(phase)` when it is fresh and for `name`.
    /// A mark is removed whether it matched or not: it is good for one `prepare` only.
    pub fn take(&self, uuid: &str, name: &str) -> Result<Option<Phase>, String> {
        let file = self.file(uuid)?;
        match std::fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.dir.display())),
            Ok(meta) => self.check_dir(meta)?,
        }
        let bytes = match read_regular(&file, 4096, Links::Refuse) {
            Ok(b) => b,
            Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let age = std::fs::symlink_metadata(&file)
            .and_then(|m| m.modified())
            .map(|t| SystemTime::now().duration_since(t).unwrap_or(Duration::MAX));
        let _ = std::fs::remove_file(&file);
        let fresh = age.is_ok_and(|a| a <= WINDOW);
        let text = String::from_utf8_lossy(&bytes);
        let (op, marked) = text.split_once('\n').unwrap_or(("", ""));
        let phase = match op {
            "migrate" => Phase::Migrate,
            "restore" => Phase::Restore,
            _ => return Ok(None),
        };
        Ok((fresh && marked == name).then_some(phase))
    }

    /// A UUID names the file: only its 36 hex digits and dashes, so it cannot name a path.
    fn file(&self, uuid: &str) -> Result<PathBuf, String> {
        let ok = uuid.len() == 36 && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !ok {
            return Err(format!(
                "the domain's UUID '{}' is not one",
                phbguard_core::escape::controls(uuid)
            ));
        }
        Ok(self.dir.join(uuid.to_ascii_lowercase()))
    }

    /// The directory (`meta`, not following a link) must be ours alone: a real directory,
    /// owned by the user the hook runs as (its effective uid), writable by nobody else.
    fn check_dir(&self, meta: Metadata) -> Result<(), String> {
        let dir = self.dir.display();
        let me = rustix::process::geteuid().as_raw();
        if !meta.is_dir() {
            Err(format!("{dir} is not a directory"))
        } else if meta.uid() != me {
            Err(format!("{dir} is owned by uid {}, not {me}", meta.uid()))
        } else if meta.mode() & 0o077 != 0 {
            Err(format!(
                "{dir} has mode {:o}; it must be 0700",
                meta.mode() & 0o7777
            ))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const UUID: &str = "6a1f0c2e-5b7d-4c3e-9f10-2b8e4d6a7c01";

    #[test]
    fn a_mark_is_taken_once_for_the_same_name() {
        let tmp = tempfile::tempdir().unwrap();
        let marks = Marks::new(&tmp.path().join("run/phbguard/incoming"));
        assert_eq!(marks.take(UUID, "db"), Ok(None), "no directory yet");
        marks.put(UUID, "db", Phase::Restore).unwrap();
        let mode = std::fs::metadata(tmp.path().join("run/phbguard/incoming"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(marks.take(&UUID.to_uppercase(), "db"), Ok(Some(Phase::Restore)));
        assert_eq!(marks.take(UUID, "db"), Ok(None), "consumed");
        marks.put(UUID, "db", Phase::Migrate).unwrap();
        assert_eq!(marks.take(UUID, "other"), Ok(None), "another name");
        assert_eq!(marks.take(UUID, "db"), Ok(None), "removed anyway");
    }

    #[test]
    fn a_stale_mark_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let marks = Marks::new(tmp.path());
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        marks.put(UUID, "db", Phase::Migrate).unwrap();
        let old = SystemTime::now() - WINDOW - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(tmp.path().join(UUID))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(marks.take(UUID, "db"), Ok(None));
    }

    #[test]
    fn an_open_directory_or_a_bad_uuid_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let marks = Marks::new(tmp.path());
        assert!(
            marks
                .put(UUID, "db", Phase::Migrate)
                .unwrap_err()
                .contains("must be 0700")
        );
        assert!(marks.take(UUID, "db").unwrap_err().contains("must be 0700"));
        assert!(marks.put("../../etc/passwd", "db", Phase::Migrate).is_err());
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(Marks::new(&file).put(UUID, "db", Phase::Migrate).is_err());
    }
}
