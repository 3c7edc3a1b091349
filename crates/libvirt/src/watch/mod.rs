//! `phbguard watch`: a long-running service that sees domain definitions as they are made and
//! warns about or fixes those that break the rules. libvirt has no define hook; it has domain
//! events ([`crate::events`]).
//!
//! The loop: connect, subscribe, judge every defined domain once (what happened while nobody
//! watched), tell systemd READY=1, then handle events one at a time on this thread. When the
//! connection closes (libvirtd or virtqemud restarting), connect again with a growing pause and
//! do the same again. SIGTERM or SIGINT ends it with exit 0 after STOPPING=1; SIGHUP reads the
//! policy file again ([`policy`]).

mod handler;
mod journal;
mod policy;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use phbguard_core::syslog::{Level, field};
use sd_notify::NotifyState;
use signal_hook::consts::SIGHUP;
use virt::connect::Connect;

use crate::connect;
use crate::events::{self, Event, Subscription};
use handler::Handler;
use journal::Journal;
use policy::PolicyFile;

/// How often the connection is asked whether it is still alive, for drivers that do not
/// report closing (and as a second line behind the close callback).
const ALIVE_CHECK: Duration = Duration::from_secs(5);
/// Keepalive probes: a daemon that stops answering is noticed within about 5 × (3 + 1) s.
const KEEPALIVE_INTERVAL: i32 = 5;
const KEEPALIVE_COUNT: u32 = 3;
/// Pauses between connection attempts: 1, 2, 4, ... seconds, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Options {
    /// `-c URI`; None: `$LIBVIRT_DEFAULT_URI`, else libvirt's default.
    pub uri: Option<String>,
    /// `--config FILE`; None: `$PHBGUARD_CONFIG`, else the default policy file.
    pub config: Option<PathBuf>,
}

/// What reaches the service loop: libvirt events (tagged with the connection they came from)
/// and signals.
enum Message {
    Event { session: u64, event: Event },
    Signal(i32),
}

/// One connection and its subscription.
struct Session {
    id: u64,
    // Declared first, so dropped first: the callbacks go before the connection does.
    _subscription: Subscription,
    conn: Connect,
}

impl Session {
    fn open(uri: Option<&str>, id: u64, tx: &Sender<Message>) -> anyhow::Result<Session> {
        let conn = connect::open(uri)?;
        // Not every driver has keepalive (test:/// has none); the daemon's own is still there.
        let _ = conn.set_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT);
        let tx = tx.clone();
        let subscription = Subscription::new(&conn, move |event| {
            // Fails only once the loop has ended, when nothing is listening any more.
            let _ = tx.send(Message::Event { session: id, event });
        })
        .map_err(|e| anyhow::anyhow!("cannot subscribe to domain events: {}", e.message()))?;
        Ok(Session {
            id,
            _subscription: subscription,
            conn,
        })
    }
}

/// A policy file that cannot be worked with (exit 2, as every phbguard command's bad input).
const EXIT_SETUP: u8 = 2;

/// The service's status while it is connected, and while it is not.
const WATCHING: &str = "watching domain definitions";
const RECONNECTING: &str = "connection lost, reconnecting";

/// Runs until SIGTERM or SIGINT (exit code 0; SIGHUP reloads the policy); 1 when it cannot even start, [`EXIT_SETUP`]
/// when the policy file's sysfs_root is not a directory.
pub fn run(options: &Options) -> u8 {
    // libvirt prints every error to stderr itself unless told not to; the watcher logs them.
    virt::error::clear_error_callback();
    let policy = PolicyFile::choose(options.config.clone());
    let reading = policy.read();
    let mut journal = Journal::open(&reading.config.syslog_socket);
    for p in reading
        .problems
        .iter()
        .filter(|&p| Some(p) != reading.sysfs_root.as_ref())
    {
        journal.log(Level::Err, &format!("config-error {}: {p}", field("op", "watch")));
    }
    // A sysfs_root that is not a directory would make every host device "not on this host":
    // every warning or fix from then on would be wrong. The watcher is in no guest's start
    // path, so it refuses to start (exit 2; the unit does not restart it for that) rather
    // than run on made-up facts.
    if let Some(p) = reading.sysfs_root {
        let line = format!("config-error {}: {p}; not starting", field("op", "watch"));
        journal.log(Level::Err, &line);
        return EXIT_SETUP;
    }
    let uri = options.uri.as_deref();
    let uri_field = field("uri", uri.unwrap_or("default"));

    let (tx, rx) = mpsc::channel();
    if let Err(e) = forward_signals(tx.clone()) {
        journal.log(
            Level::Err,
            &format!("internal-error {uri_field}: cannot handle signals: {e}"),
        );
        return 1;
    }
    if let Err(e) = events::start_event_loop() {
        let line = format!(
            "internal-error {uri_field}: cannot start libvirt's event loop: {}",
            e.message()
        );
        journal.log(Level::Err, &line);
        return 1;
    }
    let mut handler = Handler::new(reading.config, journal);
    let line = format!(
        "started {uri_field} {} {}: watching domain definitions",
        field("action", handler.action().as_str()),
        field("version", env!("CARGO_PKG_VERSION"))
    );
    handler.journal.log(Level::Notice, &line);

    let mut backoff = Backoff::default();
    let mut ready = false;
    let mut sessions = 0;
    let signal = 'service: loop {
        sessions += 1;
        let session = match Session::open(uri, sessions, &tx) {
            Ok(session) => session,
            Err(e) => {
                let pause = backoff.next_pause();
                let line = format!(
                    "disconnected {uri_field}: {e:#}; trying again in {} s",
                    pause.as_secs()
                );
                handler.journal.log(Level::Warning, &line);
                notify(&[NotifyState::Status(&format!(
                    "cannot connect, trying again in {} s",
                    pause.as_secs()
                ))]);
                match wait(&mut handler, &policy, &rx, pause, &uri_field, ready) {
                    Some(signal) => break 'service signal,
                    None => continue,
                }
            }
        };
        backoff.reset();
        handler
            .journal
            .log(Level::Notice, &format!("connected {uri_field}"));
        handler.audit(&session.conn);
        let status = NotifyState::Status(WATCHING);
        if ready {
            notify(&[status]);
        } else {
            notify(&[NotifyState::Ready, status]);
            ready = true;
        }
        if let Some(signal) = serve(&mut handler, &policy, &session, &rx, &uri_field) {
            break 'service signal;
        }
        notify(&[NotifyState::Status(RECONNECTING)]);
    };
    notify(&[NotifyState::Stopping]);
    let line = format!("stopped {uri_field} {}", field("signal", signal_name(signal)));
    handler.journal.log(Level::Notice, &line);
    0
}

/// Handles events (and reloads) until the connection is lost (None) or a signal says stop.
fn serve(
    handler: &mut Handler,
    policy: &PolicyFile,
    session: &Session,
    rx: &Receiver<Message>,
    uri_field: &str,
) -> Option<i32> {
    loop {
        match rx.recv_timeout(ALIVE_CHECK) {
            // Connected and audited: READY=1 has been sent.
            Ok(Message::Signal(SIGHUP)) => policy::reload(handler, policy, uri_field, true, WATCHING),
            Ok(Message::Signal(signal)) => return Some(signal),
            Ok(Message::Event { session: from, event }) => match event {
                Event::Closed { reason } if from == session.id => {
                    let line = format!(
                        "disconnected {uri_field} {}: libvirt closed the connection; reconnecting",
                        field("reason", reason.as_str())
                    );
                    handler.journal.log(Level::Warning, &line);
                    return None;
                }
                // An earlier connection's last words.
                Event::Closed { .. } => {}
                // Events queued by an earlier connection are still worth handling: each is
                // judged by reading the definition as it is now.
                event => handler.event(&session.conn, event),
            },
            Err(RecvTimeoutError::Timeout) => {
                if !session.conn.is_alive().unwrap_or(false) {
                    let line = format!("disconnected {uri_field}: the connection is dead; reconnecting");
                    handler.journal.log(Level::Warning, &line);
                    return None;
                }
            }
            // The signal thread holds a sender for the whole run.
            Err(RecvTimeoutError::Disconnected) => unreachable!("the signal thread keeps a sender"),
        }
    }
}

/// Waits `pause` for a signal that says stop, reloading on SIGHUP; events of dead connections
/// are dropped meanwhile.
fn wait(
    handler: &mut Handler,
    policy: &PolicyFile,
    rx: &Receiver<Message>,
    pause: Duration,
    uri_field: &str,
    ready: bool,
) -> Option<i32> {
    let deadline = std::time::Instant::now() + pause;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Message::Signal(SIGHUP)) => policy::reload(handler, policy, uri_field, ready, RECONNECTING),
            Ok(Message::Signal(signal)) => return Some(signal),
            Ok(Message::Event { .. }) => {}
            Err(_) => return None,
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP become messages, so they are handled between two events, never
/// in one: a reload never changes the policy half-way through judging a definition.
fn forward_signals(tx: Sender<Message>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let _ = tx.send(Message::Signal(signal));
            }
        })?;
    Ok(())
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGINT => "SIGINT",
        _ => "other",
    }
}

/// Tells systemd (Type=notify); nothing when not run by systemd (no NOTIFY_SOCKET).
fn notify(states: &[NotifyState]) {
    let _ = sd_notify::notify(states);
}

/// 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`].
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next_pause(&mut self) -> Duration {
        let pause = Duration::from_secs(1u64 << self.failures.min(5)).min(MAX_BACKOFF);
        self.failures += 1;
        pause
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds_and_resets() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..8).map(|_| b.next_pause().as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_secs(1));
    }
}
