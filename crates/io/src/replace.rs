//! Replacing a file the way a careful editor saves one: readers see the old contents or the
//! new, never a mix; the new file carries everything the old one did (owner, group, mode with
//! its setuid/setgid bits, every extended attribute: ACLs, the SELinux label, `user.*`); a
//! file someone changed since it was read is left alone; and a failure at any step, or a
//! `kill -9`, leaves the original as it was. docs/fix.md says what is guaranteed and why.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use xattr::FileExt;

use crate::input::MAX_INPUT_BYTES;

/// Why a file was not replaced. The original is untouched in every case.
#[derive(Debug)]
pub enum ReplaceError {
    /// A step failed.
    Io {
        /// The step: `cannot write it`, ...
        step: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The file has other hard links, which a rename would leave holding the old contents.
    HardLinks {
        /// How many links the file has.
        links: u64,
    },
    /// The file is no longer the bytes that were read: someone saved it meanwhile.
    Changed,
    /// The new file could not be given what the old one carries (a mode bit the kernel
    /// dropped, an extended attribute it refused).
    NotKept {
        /// What was lost: `the mode`, an attribute's name.
        what: String,
        /// Why, when the kernel said.
        source: Option<io::Error>,
    },
}

impl fmt::Display for ReplaceError {
    /// What went wrong; an I/O error behind it is the [`source`](std::error::Error::source).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { step, .. } => f.write_str(step),
            Self::HardLinks { links } => write!(
                f,
                "it has {links} hard links, and replacing it would leave the other names with \
                 the old contents; fix a copy, or print the result and write it over the file yourself"
            ),
            Self::Changed => f.write_str(
                "changed while fixing: the file is no longer what phbguard read (another \
                 program saved it meanwhile); run fix again",
            ),
            Self::NotKept { what, .. } => write!(f, "cannot keep {what} on the new file"),
        }
    }
}

impl std::error::Error for ReplaceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. }
            | Self::NotKept {
                source: Some(source), ..
            } => Some(source),
            _ => None,
        }
    }
}

fn at(step: impl Into<String>) -> impl FnOnce(io::Error) -> ReplaceError {
    let step = step.into();
    move |source| ReplaceError::Io { step, source }
}

/// What to do besides replacing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// Keep the original as `NAME` + this suffix (a hard link to the very inode that was
    /// replaced, so it keeps its metadata too), replacing an older backup of that name.
    pub backup_suffix: Option<&'a str>,
}

/// Replaces `path` (through a symlink, its target) with `contents`, provided it still holds
/// `expected`, the bytes the new contents were made from.
pub fn replace_file(
    path: &Path,
    expected: &[u8],
    contents: &[u8],
    options: Options<'_>,
) -> Result<(), ReplaceError> {
    let target = fs::canonicalize(path).map_err(at("cannot resolve the path"))?;
    let dir = target.parent().unwrap_or(Path::new("/"));
    let name = target.file_name().unwrap_or(OsStr::new("file"));
    remove_dead_temporaries(dir);

    let original = File::open(&target).map_err(at("cannot open it"))?;
    let meta = original.metadata().map_err(at("cannot stat it"))?;
    if !meta.is_file() {
        return Err(ReplaceError::Io {
            step: "refusing to replace it".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }
    if meta.nlink() > 1 {
        return Err(ReplaceError::HardLinks { links: meta.nlink() });
    }
    // A rename would replace a read-only file in a writable directory; refuse, as an editor
    // does. Opening for writing without truncating proves the permission and changes nothing.
    OpenOptions::new()
        .write(true)
        .open(&target)
        .map_err(at("cannot write it"))?;
    if contents.len() as u64 > MAX_INPUT_BYTES {
        return Err(ReplaceError::Io {
            step: "refusing to write it".into(),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the result would be larger than {} MiB, which phbguard would not read back",
                    MAX_INPUT_BYTES >> 20
                ),
            ),
        });
    }

    let mut temp =
        temporary(dir, name).map_err(at(format!("cannot create a temporary file in {}", dir.display())))?;
    temp.write_all(contents)
        .map_err(at(format!("cannot write {}", temp.path().display())))?;
    carry_over(&original, &meta, temp.as_file())?;
    temp.as_file()
        .sync_all()
        .map_err(at("cannot sync the new contents"))?;

    // Last look before the rename: the same inode, still holding the bytes that were read.
    // (What an editor does too; only a save in the microseconds from here to the rename can
    // still be lost.)
    if !unchanged(&target, &meta, expected).map_err(at("cannot read it again"))? {
        return Err(ReplaceError::Changed);
    }
    let backup_path = match options.backup_suffix {
        Some(suffix) => Some(backup(&target, &meta, dir, name, suffix)?),
        None => None,
    };
    if let Err(e) = temp.persist(&target) {
        // The backup is a second link to the untouched original: left there, it would make the
        // next run refuse the file for its hard links.
        if let Some(backup_path) = backup_path {
            let _ = fs::remove_file(backup_path);
        }
        return Err(at("cannot rename the new file into place")(e.error));
    }
    // The rename is only durable once the directory entry is on disk. The new file is in
    // place whatever this says: a file system that refuses fsync on a directory (EINVAL on
    // some) makes the rename less durable, not undone, so "not rewritten" would be untrue.
    let _ = File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

/// Owner and group first (a chown clears setuid/setgid), then every extended attribute, then
/// the mode, which also sets an ACL's mask back to the original's group bits.
fn carry_over(original: &File, meta: &Metadata, new: &File) -> Result<(), ReplaceError> {
    let new_meta = new.metadata().map_err(at("cannot stat the temporary file"))?;
    if (new_meta.uid(), new_meta.gid()) != (meta.uid(), meta.gid()) {
        std::os::unix::fs::fchown(new, Some(meta.uid()), Some(meta.gid())).map_err(|e| {
            ReplaceError::NotKept {
                what: format!("owner {} and group {}", meta.uid(), meta.gid()),
                source: Some(e),
            }
        })?;
    }
    for (name, value) in xattrs(original)? {
        new.set_xattr(&name, &value).map_err(|e| ReplaceError::NotKept {
            what: format!("extended attribute {}", name.to_string_lossy()),
            source: Some(e),
        })?;
    }
    let mode = meta.mode() & 0o7777;
    new.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| ReplaceError::NotKept {
            what: format!("mode {mode:04o}"),
            source: Some(e),
        })?;
    // The kernel silently drops setgid for a caller outside the file's group.
    let kept = new
        .metadata()
        .map_err(at("cannot stat the temporary file"))?
        .mode()
        & 0o7777;
    if kept != mode {
        return Err(ReplaceError::NotKept {
            what: format!("mode {mode:04o} (the kernel left {kept:04o})"),
            source: None,
        });
    }
    Ok(())
}

/// Linux's errno for a file system without extended attributes.
const EOPNOTSUPP: i32 = 95;

/// Every extended attribute this process can see on `file`, with its value.
fn xattrs(file: &File) -> Result<Vec<(OsString, Vec<u8>)>, ReplaceError> {
    let names = match file.list_xattr() {
        Ok(names) => names,
        // A file system without extended attributes has none to keep.
        Err(e) if e.raw_os_error() == Some(EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(at("cannot list its extended attributes")(e)),
    };
    let mut out = Vec::new();
    for name in names {
        let value = file.get_xattr(&name).map_err(at(format!(
            "cannot read its extended attribute {}",
            name.to_string_lossy()
        )))?;
        if let Some(value) = value {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// Whether `target` is still the inode of `meta` and holds exactly `expected`.
fn unchanged(target: &Path, meta: &Metadata, expected: &[u8]) -> io::Result<bool> {
    let file = match File::open(target) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let now = file.metadata()?;
    if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) || now.len() != expected.len() as u64 {
        return Ok(false);
    }
    let mut bytes = Vec::with_capacity(expected.len());
    file.take(expected.len() as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes == expected)
}

/// Links the original's inode as `NAME` + `suffix`, through a temporary name so that an older
/// backup is replaced in one step.
fn backup(
    target: &Path,
    meta: &Metadata,
    dir: &Path,
    name: &OsStr,
    suffix: &str,
) -> Result<PathBuf, ReplaceError> {
    let mut backup_name = name.to_os_string();
    backup_name.push(suffix);
    let backup_path = dir.join(&backup_name);
    let staging =
        temporary_path(dir, &backup_name).map_err(at("cannot name a temporary file for the backup"))?;
    fs::hard_link(target, &staging)
        .map_err(at(format!("cannot make the backup {}", backup_path.display())))?;
    // The link must be the inode that was read, or the backup would be of someone else's save.
    let linked = fs::symlink_metadata(&staging);
    if linked.map(|m| (m.dev(), m.ino())).ok() != Some((meta.dev(), meta.ino())) {
        let _ = fs::remove_file(&staging);
        return Err(ReplaceError::Changed);
    }
    match fs::rename(&staging, &backup_path) {
        Ok(()) => Ok(backup_path),
        Err(e) => {
            let _ = fs::remove_file(&staging);
            Err(at(format!("cannot make the backup {}", backup_path.display()))(e))
        }
    }
}

/// Temporary files are named `.NAME.phbguard-PID-START.RANDOM`: the writer's process id and
/// start time (clock ticks since boot, `/proc/PID/stat` field 22), so that a later run can tell
/// a dead writer's leftover (killed with -9 before it could clean up) from a live writer's file,
/// even once the process id has been reused.
const MARK: &str = ".phbguard-";

fn writer_tag() -> String {
    let pid = std::process::id();
    let start = process_start(pid).unwrap_or(0);
    format!("{pid}-{start}.")
}

fn temporary(dir: &Path, name: &OsStr) -> io::Result<NamedTempFile> {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(MARK);
    prefix.push(writer_tag());
    tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(6)
        .tempfile_in(dir)
}

/// A free temporary name (for a hard link, which tempfile cannot create).
fn temporary_path(dir: &Path, name: &OsStr) -> io::Result<PathBuf> {
    // Creating and removing a NamedTempFile reserves nothing, but its random name is as good as
    // any: hard_link fails rather than overwrite should another process take it meanwhile.
    let file = temporary(dir, name)?;
    let path = file.path().to_path_buf();
    file.close()?;
    Ok(path)
}

/// `/proc/PID/stat` field 22, the process's start time; `None` when it is not running (or
/// `/proc` is not mounted).
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 is the command in parentheses and may hold anything: count from the last ')'.
    let after = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let field = std::str::from_utf8(after)
        .ok()?
        .split_ascii_whitespace()
        .nth(19)?;
    field.parse().ok()
}

/// Removes every temporary file in `dir` left by a phbguard that died before it could (its
/// process is gone, or its id now belongs to a process started at another time). Best effort:
/// a leftover that cannot be removed does not stop this run.
pub fn remove_dead_temporaries(dir: &Path) {
    // Without /proc no writer can be told dead from alive: leave everything.
    if process_start(std::process::id()).is_none() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((pid, start)) = writer_of(file_name.as_bytes()) else {
            continue;
        };
        if process_start(pid) == Some(start) {
            continue;
        }
        // Only a plain file this naming could have made; never a link or a directory.
        let path = entry.path();
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The writer's process id and start time from a temporary file's name, if it is one.
fn writer_of(name: &[u8]) -> Option<(u32, u64)> {
    if name.first() != Some(&b'.') {
        return None;
    }
    let text = std::str::from_utf8(name).ok()?;
    let tag = &text[text.rfind(MARK)? + MARK.len()..];
    let (pid, rest) = tag.split_once('-')?;
    let (start, random) = rest.split_once('.')?;
    if random.is_empty() {
        return None;
    }
    Some((pid.parse().ok()?, start.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(path: &Path, contents: &[u8]) -> Result<(), ReplaceError> {
        let expected = fs::read(path).unwrap_or_default();
        replace_file(path, &expected, contents, Options::default())
    }

    #[test]
    fn replaces_contents_keeps_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.xml");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        replace(&path, b"new").unwrap();
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
        replace(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = replace(dir.path(), b"x").unwrap_err();
        assert_eq!(err.to_string(), "refusing to replace it");
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("not a regular file"));
    }

    #[test]
    fn a_file_that_changed_since_it_was_read_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.xml");
        fs::write(&path, "saved by someone else").unwrap();
        let err = replace_file(&path, b"what fix read", b"fixed", Options::default()).unwrap_err();
        assert!(matches!(err, ReplaceError::Changed), "{err}");
        assert!(err.to_string().starts_with("changed while fixing"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "saved by someone else");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // Same bytes, another inode (an editor's save by rename): changed too, its metadata may differ.
        let other = dir.path().join("other");
        fs::write(&other, "what fix read").unwrap();
        let meta = fs::metadata(&path).unwrap();
        fs::rename(&other, &path).unwrap();
        assert!(!unchanged(&path, &meta, b"what fix read").unwrap());
    }

    #[test]
    fn a_file_with_two_links_is_refused_and_both_names_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.xml");
        let other = dir.path().join("other-name.xml");
        fs::write(&path, "old").unwrap();
        fs::hard_link(&path, &other).unwrap();
        let err = replace(&path, b"new").unwrap_err();
        assert!(matches!(err, ReplaceError::HardLinks { links: 2 }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::metadata(&path).unwrap().nlink(), 2);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn backup_links_the_replaced_inode_and_replaces_an_older_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.xml");
        fs::write(&path, "old").unwrap();
        fs::write(dir.path().join("guest.xml.orig"), "older").unwrap();
        let ino = fs::metadata(&path).unwrap().ino();
        let options = Options {
            backup_suffix: Some(".orig"),
        };
        replace_file(&path, b"old", b"new", options).unwrap();
        let backup = dir.path().join("guest.xml.orig");
        assert_eq!(fs::read_to_string(&backup).unwrap(), "old");
        assert_eq!(fs::metadata(&backup).unwrap().ino(), ino);
        assert_eq!(fs::metadata(&backup).unwrap().nlink(), 1);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn output_over_the_input_limit_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.xml");
        fs::write(&path, "old").unwrap();
        let huge = vec![b' '; MAX_INPUT_BYTES as usize + 1];
        let err = replace(&path, &huge).unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(cause.is_some_and(|c| c.contains("larger than 16 MiB")), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporary_names_carry_the_writer_and_dead_writers_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let live = temporary(dir.path(), OsStr::new("guest.xml")).unwrap();
        let live_name = live.path().file_name().unwrap().to_owned();
        let me = std::process::id();
        assert_eq!(
            writer_of(live_name.as_bytes()),
            Some((me, process_start(me).unwrap()))
        );
        // A writer with our pid but another start time is a dead one whose pid was reused; a pid
        // that cannot exist (above the kernel's pid_max limit) is dead too.
        let reused = dir.path().join(format!(".guest.xml.phbguard-{me}-1.abcdef"));
        let gone = dir.path().join(".guest.xml.phbguard-4294967295-5.abcdef");
        let unrelated = dir.path().join(".guest.xml.swp");
        for p in [&reused, &gone, &unrelated] {
            fs::write(p, "x").unwrap();
        }
        remove_dead_temporaries(dir.path());
        assert!(live.path().exists());
        assert!(unrelated.exists());
        assert!(!reused.exists() && !gone.exists());
    }
}
