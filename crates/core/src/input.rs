//! Reading a document with a size bound, so that no input can make phbguard read or hold
//! more than any real domain definition needs (virsh itself stops at 10 MiB).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::ParseError;
use crate::model::Domain;

/// The largest document phbguard reads.
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;
/// Why a document could not be read.

#[derive(Debug)]
pub enum InputError {
    /// Reading failed.
    Io(io::Error),
    /// The path is a directory.
    IsDirectory,
    /// It is larger than [`MAX_INPUT_BYTES`].
    TooLarge,
    /// Not a regular file (a FIFO, a device, a socket): what it is.
    NotRegular(&'static str),
    /// A regular file larger than the bound of what is being read.
    LargerThan(u64),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(_) => f.write_str("cannot read it"),
            Self::IsDirectory => f.write_str("is a directory, not a domain XML file"),
            Self::TooLarge => write!(
                f,
                "larger than {} MiB, refusing to read it",
                MAX_INPUT_BYTES >> 20
            ),
            Self::NotRegular(kind) => write!(f, "is {kind}, not a regular file"),
            Self::LargerThan(cap) => write!(f, "larger than {cap} bytes, refusing to read it"),
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// How [`read_regular`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Symbolic links are followed (a policy file may be a link).
    Follow,
    /// The last component must not be a symbolic link (files phbguard writes itself).
    Refuse,
}

/// Reads a file that must be a regular file of at most `cap` bytes, for the hook's path where
/// nothing may block or grow without bound: opened non-blocking (a FIFO would otherwise wait
/// for a writer in open), checked to be a regular file before a byte is read (a FIFO or
/// `/dev/zero` is refused), and read to `cap + 1` bytes at most (a sysfs attribute reports
/// size 4096 whatever it holds, so the size is checked on what was read, not on `st_size`).
pub fn read_regular(path: &Path, cap: u64, links: Links) -> Result<Vec<u8>, InputError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let mut flags = libc::O_NONBLOCK;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(InputError::Io)?;
    let kind = file.metadata().map_err(InputError::Io)?.file_type();
    if kind.is_dir() {
        return Err(InputError::IsDirectory);
    }
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(InputError::NotRegular(what));
    }
    let mut buf = Vec::new();
    file.take(cap + 1).read_to_end(&mut buf).map_err(InputError::Io)?;
    if buf.len() as u64 > cap {
        return Err(InputError::LargerThan(cap));
    }
    Ok(buf)
}

/// Reads all of `reader`, failing once it passes [`MAX_INPUT_BYTES`].
pub fn read_bounded(reader: impl Read) -> Result<Vec<u8>, InputError> {
    let mut buf = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(InputError::Io)?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge);
    }
    Ok(buf)
}

/// Reads a file, refusing directories and oversized files before reading them.
pub fn read_file(path: &Path) -> Result<Vec<u8>, InputError> {
    let file = File::open(path).map_err(InputError::Io)?;
    let meta = file.metadata().map_err(InputError::Io)?;
    if meta.is_dir() {
        return Err(InputError::IsDirectory);
    }
    if meta.is_file() && meta.len() > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge);
    }
    read_bounded(file)
}

/// Why a document could not be judged.
#[derive(Debug)]
pub enum LoadError {
    /// It could not be read.
    Input(InputError),
    /// It is not a domain phbguard can judge.
    Parse(ParseError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Input(e) => e.fmt(f),
            Self::Parse(e) => e.fmt(f),
        }
    }
}

/// A wrapper that adds no words: it shows its inner error and hands on that error's cause.
impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Input(e) => e.source(),
            Self::Parse(e) => e.source(),
        }
    }
}

/// A file (`-` for standard input) read and parsed into a domain, with its bytes.
pub fn load(name: &str) -> Result<(Vec<u8>, Domain), LoadError> {
    let bytes = if name == "-" {
        read_bounded(io::stdin().lock())
    } else {
        read_file(Path::new(name))
    }
    .map_err(LoadError::Input)?;
    let domain = crate::parse::parse_domain(&bytes).map_err(LoadError::Parse)?;
    Ok((bytes, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_regular_refuses_fifos_devices_and_oversized_files_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        // Nobody writes the FIFO: a blocking open would hang here.
        assert!(matches!(
            read_regular(&fifo, 10, Links::Follow),
            Err(InputError::NotRegular("a FIFO"))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10, Links::Follow),
            Err(InputError::NotRegular("a character device"))
        ));
        assert!(matches!(
            read_regular(dir.path(), 10, Links::Follow),
            Err(InputError::IsDirectory)
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_regular(&file, 10, Links::Follow).unwrap(), b"0123456789");
        assert!(matches!(
            read_regular(&file, 9, Links::Follow),
            Err(InputError::LargerThan(9))
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_regular(&link, 10, Links::Follow).unwrap().len(), 10);
        assert!(matches!(
            read_regular(&link, 10, Links::Refuse),
            Err(InputError::Io(e)) if e.raw_os_error() == Some(libc::ELOOP)
        ));
    }
}
