//! Syslog for the hook and the watcher: identity `phbguard`, facility `daemon`, RFC 3164 lines
//! sent as Unix datagrams (default `/dev/log`), formatted by the `syslog` crate. What a line
//! says is built by `phbguard_core::log_line::Line`.
//!
//! Logging must never block or fail a guest start. The crate's own constructors open a
//! *blocking* socket (and fall back to a stream socket), so phbguard builds the datagram socket
//! itself, makes it non-blocking, and hands it to the crate's `LoggerBackend::Unix`. A missing
//! socket, a full receive queue (EAGAIN), a dead syslog daemon: the line is dropped, silently.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use ::syslog::{Facility, Formatter3164, Logger, LoggerBackend};

use phbguard_core::log_line::Level;

/// The syslog identity (`journalctl -t phbguard`).
pub const IDENTITY: &str = "phbguard";

/// A connection to syslog, or nothing when there is none to be had.
pub struct Syslog {
    logger: Option<Logger<LoggerBackend, Formatter3164>>,
    /// The socket to connect to at the first line ([`Syslog::on_first_line`]).
    later: Option<PathBuf>,
}

impl Syslog {
    /// Connects to the datagram socket at `path`; never fails and never blocks.
    pub fn connect(path: &Path) -> Syslog {
        Syslog {
            logger: Self::logger(path),
            later: None,
        }
    }

    /// Connects to `path` as [`Syslog::connect`] does, when the first line is sent. For the
    /// hook: a guest judged clean logs nothing, and a socket would cost it four system calls.
    pub fn on_first_line(path: &Path) -> Syslog {
        Syslog {
            logger: None,
            later: Some(path.to_owned()),
        }
    }

    fn logger(path: &Path) -> Option<Logger<LoggerBackend, Formatter3164>> {
        let socket = UnixDatagram::unbound().and_then(|s| {
            s.set_nonblocking(true)?;
            s.connect(path)?;
            Ok(s)
        });
        socket.ok().map(|s| {
            let formatter = Formatter3164 {
                facility: Facility::LOG_DAEMON,
                // The local syslog daemon adds the host name; asking for it costs a syscall.
                hostname: None,
                process: IDENTITY.into(),
                pid: std::process::id(),
            };
            Logger::new(LoggerBackend::Unix(s), formatter)
        })
    }

    /// Whether lines go anywhere (a socket was found and connected; for
    /// [`Syslog::on_first_line`], not before a line was sent).
    pub fn connected(&self) -> bool {
        self.logger.is_some()
    }

    /// A logger that drops everything.
    pub fn none() -> Syslog {
        Syslog {
            logger: None,
            later: None,
        }
    }

    /// Sends one line. Errors (no reader, queue full, message too long) are ignored on purpose.
    pub fn log(&mut self, level: Level, line: &str) {
        if let Some(path) = self.later.take() {
            self.logger = Self::logger(&path);
        }
        let Some(logger) = self.logger.as_mut() else {
            return;
        };
        let line = one_line(line);
        let _ = match level {
            Level::Err => logger.err(line),
            Level::Warning => logger.warning(line),
            Level::Notice => logger.notice(line),
            Level::Info => logger.info(line),
        };
    }
}

/// Control characters (a newline in a domain name...) would forge or split log lines.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_line_escapes_control_characters() {
        assert_eq!(one_line("a\nb\rc\td\u{7}"), "a\\nb\\rc d\\x07");
    }

    #[test]
    fn sends_rfc3164_daemon_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut log = Syslog::connect(&path);
        log.log(Level::Err, "rejected x\ny");
        log.log(Level::Info, "fine");
        let mut buf = [0u8; 4096];
        let n = rx.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        // daemon (3) * 8 + err (3) = 27
        assert!(line.starts_with("<27>"), "{line}");
        assert!(
            line.contains(&format!(" phbguard[{}]: rejected x\\ny", std::process::id())),
            "{line}"
        );
        let n = rx.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("<30>"));
    }

    #[test]
    fn missing_socket_or_not_a_socket_is_no_logger() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        for path in [Path::new("/nonexistent/dev/log"), file.as_path(), dir.path()] {
            let mut log = Syslog::connect(path);
            assert!(!log.connected(), "{}", path.display());
            log.log(Level::Err, "dropped");
        }
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"",
            "nothing written into a plain file"
        );
        let path = dir.path().join("log.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut log = Syslog::connect(&path);
        assert!(log.connected());
        // The socket goes away: lines are dropped, without an error reaching the caller.
        drop(rx);
        log.log(Level::Err, "dropped");
        assert!(!Syslog::none().connected());
    }

    #[test]
    fn on_first_line_connects_when_a_line_is_sent_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let mut log = Syslog::on_first_line(&path);
        assert!(!log.connected());
        // The socket appears after the logger was made: the first line still reaches it.
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        log.log(Level::Warning, "first");
        assert!(log.connected());
        log.log(Level::Info, "second");
        let mut buf = [0u8; 4096];
        let n = rx.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with(": first"));
        let n = rx.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with(": second"));
        // No socket at the first line: dropped, and no second try.
        let mut log = Syslog::on_first_line(&dir.path().join("none.sock"));
        log.log(Level::Err, "dropped");
        assert!(!log.connected());
        let _rx = UnixDatagram::bind(dir.path().join("none.sock")).unwrap();
        log.log(Level::Err, "dropped too");
        assert!(!log.connected());
    }

    #[test]
    fn full_socket_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let rx = UnixDatagram::bind(&path).unwrap(); // bound, never read while logging
        let mut log = Syslog::connect(&path);
        // On a thread, so that a send that blocks shows as a thread that never ends (not as a
        // test that hangs). No speed limit: the bound only tells blocked from slow, on any
        // machine, emulated ones under load included.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let long = "x".repeat(8000);
            for _ in 0..2000 {
                log.log(Level::Warning, &long);
            }
            done.send(()).unwrap();
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(300)).is_ok(),
            "logging into a full socket blocked"
        );
        // The queue filled up and the rest was dropped: far fewer than 2000 lines wait in it.
        rx.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 16384];
        let mut queued = 0;
        while rx.recv(&mut buf).is_ok() {
            queued += 1;
        }
        assert!((1..2000).contains(&queued), "{queued} lines queued");
    }
}
