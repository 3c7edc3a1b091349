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
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::IsDirectory | Self::TooLarge => None,
        }
    }
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
