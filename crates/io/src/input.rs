//! Reading a document with a size bound, so that no input can make phbguard read or hold
//! more than any real domain definition needs (virsh itself stops at 10 MiB).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;

use phbguard_core::error::ParseError;
use phbguard_core::model::Domain;

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
    /// A pipe whose writer neither finished nor closed it within this deadline.
    Stalled(Duration),
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
            Self::Stalled(d) if d.subsec_nanos() == 0 => {
                write!(f, "not closed by its writer within {} s", d.as_secs())
            }
            Self::Stalled(d) => write!(f, "not closed by its writer within {} ms", d.as_millis()),
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

/// The first allocation of [`read_within`]: a domain XML of a few dozen devices in one read.
const FIRST_READ_BYTES: usize = 64 * 1024;

/// Reads all of `fd` (the hook's stdin: libvirt's pipe, or a file) like [`read_bounded`], and
/// gives up with [`InputError::Stalled`] when its writer has neither finished nor closed it
/// `deadline` after the call. Each read first waits in poll(2) for the time left, so no read
/// can block past the deadline (a read after poll says readable does not block on a pipe the
/// hook alone reads; a regular file is always readable) and the file's flags are not touched
/// (a pipe's O_NONBLOCK is shared with its writer). No thread: it costs more than the read of
/// a small guest.
pub fn read_within(fd: BorrowedFd<'_>, deadline: Duration) -> Result<Vec<u8>, InputError> {
    let start = Instant::now();
    let stalled = || InputError::Stalled(deadline);
    let bound = MAX_INPUT_BYTES as usize + 1;
    let mut buf = Vec::with_capacity(FIRST_READ_BYTES);
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        // A hard deadline, as for a writer that always has a byte ready: poll would never wait.
        if left.is_zero() {
            return Err(stalled());
        }
        let left = Timespec::try_from(left).map_err(|_| stalled())?;
        match poll(&mut [PollFd::from_borrowed_fd(fd, PollFlags::IN)], Some(&left)) {
            Ok(0) => return Err(stalled()),
            // Readable, hung up, in error or not open (POLLNVAL): the read tells which.
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(InputError::Io(e.into())),
        }
        if buf.len() == buf.capacity() {
            // Doubling, but never room for more than the bound: no read goes past it.
            buf.reserve_exact(buf.len().min(bound - buf.len()));
        }
        match rustix::io::read(fd, rustix::buffer::spare_capacity(&mut buf)) {
            Ok(0) => return Ok(buf),
            Ok(_) if buf.len() >= bound => return Err(InputError::TooLarge),
            Ok(_) => {}
            // Another reader of a shared non-blocking pipe took the bytes poll saw: wait again.
            Err(Errno::INTR | Errno::AGAIN) => {}
            // A closed stdin reads as empty, as std's Stdin has it (and the XML fails to parse).
            Err(Errno::BADF) => return Ok(buf),
            Err(e) => return Err(InputError::Io(e.into())),
        }
    }
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
    let domain = phbguard_core::parse_domain(&bytes).map_err(LoadError::Parse)?;
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

    /// The deadline of the tests that are about what arrives, not about when: far beyond how
    /// long any machine takes, so that they are no race with it.
    const NOT_TESTED_HERE: Duration = Duration::from_secs(3600);

    /// A pipe with `first` written into it.
    fn pipe_with(first: &[u8]) -> (io::PipeReader, io::PipeWriter) {
        use std::io::Write;
        let (reader, mut writer) = io::pipe().unwrap();
        writer.write_all(first).unwrap();
        (reader, writer)
    }

    #[test]
    fn read_within_reads_a_pipe_its_writer_closes() {
        use std::os::fd::AsFd;
        let (reader, writer) = pipe_with(b"<domain/>");
        drop(writer);
        let bytes = read_within(reader.as_fd(), NOT_TESTED_HERE).unwrap();
        assert_eq!(bytes, b"<domain/>");
        // A writer on another thread, in pieces larger than the first allocation: all arrives.
        let (reader, writer) = pipe_with(b"");
        let sent = thread_write(writer, 300_000);
        let bytes = read_within(reader.as_fd(), NOT_TESTED_HERE).unwrap();
        sent.join().unwrap();
        assert_eq!(bytes.len(), 300_000);
        assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }

    /// Writes `len` bytes into `writer` on a thread of its own, then closes it.
    fn thread_write(mut writer: io::PipeWriter, len: usize) -> std::thread::JoinHandle<()> {
        use std::io::Write;
        std::thread::spawn(move || {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            writer.write_all(&data).unwrap();
        })
    }

    #[test]
    fn read_within_gives_up_on_a_writer_that_stalls_or_trickles() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let deadline = Duration::from_millis(300);
        // Nothing written, never closed.
        let (reader, _writer) = pipe_with(b"");
        let start = Instant::now();
        assert!(matches!(
            read_within(reader.as_fd(), deadline),
            Err(InputError::Stalled(d)) if d == deadline
        ));
        assert!(start.elapsed() >= deadline);
        // Part written, then a byte now and then: the deadline is for the whole read, not for
        // each byte.
        let (reader, mut writer) = pipe_with(b"<domain>");
        let trickle = std::thread::spawn(move || {
            while writer.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let start = Instant::now();
        assert!(matches!(
            read_within(reader.as_fd(), deadline),
            Err(InputError::Stalled(d)) if d == deadline
        ));
        assert!(start.elapsed() >= deadline);
        drop(reader);
        trickle.join().unwrap();
        // Never out of bytes (poll says readable every time): past the deadline nothing more
        // is read, rather than reading on to the size bound.
        let zero = File::open("/dev/zero").unwrap();
        assert!(matches!(
            read_within(zero.as_fd(), Duration::ZERO),
            Err(InputError::Stalled(Duration::ZERO))
        ));
    }

    #[test]
    fn read_within_refuses_more_than_the_bound_and_reads_files() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_INPUT_BYTES).unwrap();
        let exactly = File::open(&path).unwrap();
        let bytes = read_within(exactly.as_fd(), NOT_TESTED_HERE).unwrap();
        assert_eq!(bytes.len() as u64, MAX_INPUT_BYTES);
        file.set_len(MAX_INPUT_BYTES + 1).unwrap();
        let over = File::open(&path).unwrap();
        assert!(matches!(
            read_within(over.as_fd(), NOT_TESTED_HERE),
            Err(InputError::TooLarge)
        ));
        let empty = File::open("/dev/null").unwrap();
        assert_eq!(read_within(empty.as_fd(), NOT_TESTED_HERE).unwrap(), b"");
    }
}
