//! A datagram socket standing in for /dev/log or systemd's notify socket: a thread collects
//! every message it receives.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::eventually;

pub struct Datagrams {
    pub path: PathBuf,
    received: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Datagrams {
    /// A socket named `log` in a temporary directory of its own.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Datagrams {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut sink = Datagrams::bind(&dir.path().join("log"));
        sink._dir = Some(dir);
        sink
    }

    /// A socket at `path`.
    pub fn bind(path: &Path) -> Datagrams {
        let sock = UnixDatagram::bind(path).unwrap();
        // The hook runs as another user's child only as root here; let anyone write.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            // Ends with an error when the socket file goes; the thread then just stops.
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push(msg);
            }
        });
        Datagrams {
            path: path.to_owned(),
            received,
            _dir: None,
        }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Every message received so far.
    pub fn all(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// The messages containing every one of `parts`.
    pub fn matching(&self, parts: &[&str]) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|m| parts.iter().all(|p| m.contains(p)))
            .collect()
    }

    /// The first message containing every one of `parts` (a syslog line's verb is matched
    /// as `": verb "`, right after the `phbguard[PID]` tag), waiting for it if need be.
    pub fn wait_for(&self, parts: &[&str]) -> String {
        eventually(
            &format!("a message with {parts:?}; got {:#?}", self.all()),
            || self.matching(parts).into_iter().next(),
        )
    }

    /// Every message sent so far, and forgets them. The senders have exited, so their messages
    /// are queued in the socket, but the reader thread may not have read them yet (on a loaded
    /// machine, for longer than any fixed wait). A marker sent now is queued after them, and a
    /// datagram socket delivers in order: once the reader has the marker, it has them all.
    pub fn take(&self) -> Vec<String> {
        let marker = format!("phbguard-test-marker {:?}", Instant::now());
        UnixDatagram::unbound()
            .unwrap()
            .send_to(marker.as_bytes(), &self.path)
            .unwrap();
        eventually("the socket's reader to get the marker", || {
            let mut lines = self.received.lock().unwrap();
            let at = lines.iter().position(|l| *l == marker)?;
            // Whatever came after the marker is the next take's.
            let later = lines.split_off(at + 1);
            let mut taken = std::mem::replace(&mut *lines, later);
            taken.pop();
            Some(taken)
        })
    }
}
