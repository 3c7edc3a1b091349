//! Where the watcher's lines go: syslog, as the hook's (identity `phbguard`, facility daemon,
//! `key=value` fields, `journalctl -t phbguard`), and stderr.
//!
//! Under systemd, stderr is the journal too (`JOURNAL_STREAM` names it): then each line would
//! be stored twice, so it goes to syslog only. Run by hand, both get it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use phbguard_core::escape;
use phbguard_core::log_line::{Level, field};
use phbguard_io::syslog::Syslog;

use crate::events::DomainId;

pub struct Journal {
    syslog: Syslog,
    stderr: bool,
}

impl Journal {
    /// Logs to the syslog datagram socket at `socket` (never blocks; see phbguard-io's syslog).
    pub fn open(socket: &Path) -> Journal {
        Journal {
            syslog: Syslog::connect(socket),
            stderr: !stderr_is_the_journal(),
        }
    }

    pub fn log(&mut self, level: Level, line: &str) {
        self.syslog.log(level, line);
        if self.stderr {
            eprintln!("phbguard: {}", escape::controls(line));
        }
    }
}

/// What the watcher was doing when it judged a definition: the `op=` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A DEFINED event: `virsh define`, `virsh edit`, phbguard's own redefine...
    Define,
    /// Judging every defined domain after (re)connecting: what happened while not watching.
    Audit,
    /// A METADATA_CHANGE event for phbguard's opt-out (`virsh metadata ... --config`).
    Metadata,
    /// A DEVICE_ADDED event: a hot-plug into a running guest.
    Hotplug,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Define => "define",
            Op::Audit => "audit",
            Op::Metadata => "metadata",
            Op::Hotplug => "hotplug",
        }
    }
}

/// `domain=NAME uuid=UUID op=OP`, the fields every line about a domain starts with (the hook's).
pub fn about(id: &DomainId, op: Op) -> String {
    format!(
        "{} {} {}",
        field("domain", &id.name),
        field("uuid", &id.uuid),
        field("op", op.as_str())
    )
}

/// Whether stderr is the journal's stream (systemd.exec(5), `JOURNAL_STREAM=DEV:INODE`).
fn stderr_is_the_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    // fd 2's own inode: /proc/self/fd/2 resolves to it, pipe or socket alike.
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
