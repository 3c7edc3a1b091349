//! `phbguard watch`: a long-running service that sees domain definitions as they are made and
//! warns about or fixes those that break the rules. libvirt has no define hook; it has domain
//! events ([`crate::events`]).
//!
//! The loop: connect, subscribe, judge every defined domain once (what happened while nobody
//! watched), tell systemd READY=1, then take events as they come and do what is due: a guest
//! is judged once its definition has settled ([`tracker`]), and the watcher's own defines are
//! followed until the events about the guest go quiet ([`handler`], [`aftermath`]). libvirt's
//! event thread only hands events over a channel; everything else runs on this thread. When the
//! connection closes (libvirtd or virtqemud restarting), connect again with a growing pause and
//! do the same again. SIGTERM or SIGINT ends it with exit 0 after STOPPING=1, once what follows
//! its own defines is worked out; SIGHUP reads the policy file again ([`policy`]).

mod aftermath;
mod handler;
mod journal;
mod policy;
mod tracker;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use phbguard_core::log_line::{Level, Line};
use sd_notify::NotifyState;
use signal_hook::consts::SIGHUP;
use virt::connect::Connect;

use crate::connect;
use crate::events::{self, CloseReason, Event, Subscription};
use handler::{Handler, Inbox};
use journal::Journal;
use policy::PolicyFile;
use tracker::Tracker;

/// How often the connection is asked whether it is still alive, for drivers that do not
/// report closing (and as a second line behind the close callback).
const ALIVE_CHECK: Duration = Duration::from_secs(5);
/// Keepalive probes: a daemon that stops answering is noticed within about 5 × (3 + 1) s.
const KEEPALIVE_INTERVAL: i32 = 5;
const KEEPALIVE_COUNT: u32 = 3;
/// Pauses between connection attempts: 1, 2, 4, ... seconds, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a SIGTERM waits for the watcher to work out what followed its own last defines
/// (each is given up after [`tracker::GIVE_UP`] anyway).
const STOP_LIMIT: Duration = Duration::from_secs(10);

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

/// The receiving end of the channel: events go to the tracker as they are taken, signals and
/// the current connection's closing are kept for the loop.
struct Mailbox {
    rx: Receiver<Message>,
    /// The connection whose closing ends [`serve`]; 0 while there is none.
    session: u64,
    closed: Option<CloseReason>,
    signals: VecDeque<i32>,
}

impl Mailbox {
    fn take(&mut self, message: Message, tracker: &mut Tracker) {
        match message {
            Message::Signal(signal) => self.signals.push_back(signal),
            Message::Event {
                session,
                event: Event::Closed { reason },
            } => {
                // An earlier connection's last words are not this one's.
                if session == self.session {
                    self.closed = Some(reason);
                }
            }
            // Events queued by an earlier connection still count: each guest is judged by
            // reading its definition as it is now.
            Message::Event { session, event } if session == self.session => {
                tracker.route(event, Instant::now());
            }
            Message::Event { event, .. } => tracker.route_if_followed(event, Instant::now()),
        }
    }

    /// Waits up to `timeout` for a message, then takes every one waiting.
    fn wait(&mut self, timeout: Duration, tracker: &mut Tracker) {
        match self.rx.recv_timeout(timeout) {
            Ok(message) => {
                self.take(message, tracker);
                self.pump(tracker);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The signal thread holds a sender for the whole run.
            Err(RecvTimeoutError::Disconnected) => unreachable!("the signal thread keeps a sender"),
        }
    }
}

impl Inbox for Mailbox {
    fn pump(&mut self, tracker: &mut Tracker) {
        while let Ok(message) = self.rx.try_recv() {
            self.take(message, tracker);
        }
    }

    fn interrupted(&self) -> bool {
        !self.signals.is_empty() || self.closed.is_some()
    }
}

/// A policy file that cannot be worked with (exit 2, as every phbguard command's bad input).
const EXIT_SETUP: u8 = 2;

/// The service's status while it is connected, and while it is not.
const WATCHING: &str = "watching domain definitions";
const RECONNECTING: &str = "connection lost, reconnecting";

/// Runs until SIGTERM or SIGINT (exit code 0; SIGHUP reloads the policy); 1 when it cannot even
/// start, [`EXIT_SETUP`] when the policy file's sysfs_root is not a directory.
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
        journal.log(
            Level::Err,
            &Line::new("config-error").field("op", "watch").says(p),
        );
    }
    // A sysfs_root that is not a directory would make every host device "not on this host":
    // every warning or fix from then on would be wrong. The watcher is in no guest's start
    // path, so it refuses to start (exit 2; the unit does not restart it for that) rather
    // than run on made-up facts.
    if let Some(p) = reading.sysfs_root {
        let line = Line::new("config-error")
            .field("op", "watch")
            .says(format_args!("{p}; not starting"));
        journal.log(Level::Err, &line);
        return EXIT_SETUP;
    }
    let uri = options.uri.as_deref();
    // Until a connection says which URI libvirt chose: the one asked for.
    let asked = uri.map(str::to_owned).or_else(|| {
        std::env::var("LIBVIRT_DEFAULT_URI")
            .ok()
            .filter(|u| !u.is_empty())
    });
    let mut shown_uri = asked.unwrap_or_else(|| "default".to_owned());

    let (tx, rx) = mpsc::channel();
    if let Err(e) = forward_signals(tx.clone()) {
        journal.log(
            Level::Err,
            &Line::new("internal-error")
                .field("uri", &shown_uri)
                .says(format_args!("cannot handle signals: {e}")),
        );
        return 1;
    }
    if let Err(e) = events::start_event_loop() {
        let line = Line::new("internal-error")
            .field("uri", &shown_uri)
            .says(format_args!("cannot start libvirt's event loop: {}", e.message()));
        journal.log(Level::Err, &line);
        return 1;
    }
    let mut handler = Handler::new(reading.config, journal);
    let line = Line::new("started")
        .field("uri", &shown_uri)
        .field("action", handler.action().as_str())
        .field("version", env!("CARGO_PKG_VERSION"))
        .says("watching domain definitions");
    handler.journal.log(Level::Notice, &line);

    let mut mailbox = Mailbox {
        rx,
        session: 0,
        closed: None,
        signals: VecDeque::new(),
    };
    let mut backoff = Backoff::default();
    let mut ready = false;
    let mut sessions = 0;
    let signal = 'service: loop {
        sessions += 1;
        let session = match Session::open(uri, sessions, &tx) {
            Ok(session) => session,
            Err(e) => {
                let pause = backoff.next_pause();
                let line = Line::new("disconnected")
                    .field("uri", &shown_uri)
                    .says(format_args!("{e:#}; trying again in {} s", pause.as_secs()));
                handler.journal.log(Level::Warning, &line);
                notify(&[NotifyState::Status(&format!(
                    "cannot connect, trying again in {} s",
                    pause.as_secs()
                ))]);
                match wait(&mut handler, &policy, &mut mailbox, pause, &shown_uri, ready) {
                    Some(signal) => break 'service signal,
                    None => continue,
                }
            }
        };
        backoff.reset();
        mailbox.session = session.id;
        mailbox.closed = None;
        // The URI libvirt chose (`$LIBVIRT_DEFAULT_URI`, libvirt.conf's uri_default, or its
        // own default for this user), for this line and every one after.
        if let Ok(real) = session.conn.uri() {
            shown_uri = real;
        }
        handler.journal.log(
            Level::Notice,
            &Line::new("connected").field("uri", &shown_uri).done(),
        );
        // What followed the watcher's own defines when the last connection went first, then
        // every guest.
        handler.run_due(&session.conn, &mut mailbox, false);
        handler.audit(&session.conn, &mut mailbox);
        let status = NotifyState::Status(WATCHING);
        if ready {
            notify(&[status]);
        } else {
            notify(&[NotifyState::Ready, status]);
            ready = true;
        }
        if let Some(signal) = serve(&mut handler, &policy, &session, &mut mailbox, &shown_uri) {
            break 'service signal;
        }
        handler.connection_lost();
        notify(&[NotifyState::Status(RECONNECTING)]);
    };
    notify(&[NotifyState::Stopping]);
    handler.abandon("the watcher stopped");
    let line = Line::new("stopped")
        .field("uri", &shown_uri)
        .field("signal", signal_name(signal))
        .done();
    handler.journal.log(Level::Notice, &line);
    0
}

/// Handles events, what is due and reloads until the connection is lost (None) or a signal
/// says stop. A stop waits for what follows the watcher's own defines (at most
/// [`STOP_LIMIT`]), judging nothing new meanwhile.
fn serve(
    handler: &mut Handler,
    policy: &PolicyFile,
    session: &Session,
    mailbox: &mut Mailbox,
    shown_uri: &str,
) -> Option<i32> {
    let mut stopping: Option<(i32, Instant)> = None;
    let mut alive_check = Instant::now() + ALIVE_CHECK;
    loop {
        if let Some((signal, since)) = stopping
            && (!handler.in_flight() || since.elapsed() >= STOP_LIMIT)
        {
            return Some(signal);
        }
        let now = Instant::now();
        let until = handler
            .next_due(stopping.is_some())
            .map_or(alive_check, |due| due.min(alive_check));
        mailbox.wait(until.saturating_duration_since(now), handler.tracker());
        while let Some(signal) = mailbox.signals.pop_front() {
            match signal {
                // Connected and audited: READY=1 has been sent.
                SIGHUP => policy::reload(handler, policy, shown_uri, true, WATCHING),
                _ if stopping.is_some() => return Some(signal),
                _ => stopping = Some((signal, Instant::now())),
            }
        }
        if let Some(reason) = mailbox.closed.take() {
            let line = Line::new("disconnected")
                .field("uri", shown_uri)
                .field("reason", reason.as_str())
                .says("libvirt closed the connection; reconnecting");
            handler.journal.log(Level::Warning, &line);
            return stopping.map(|(signal, _)| signal);
        }
        if Instant::now() >= alive_check {
            alive_check = Instant::now() + ALIVE_CHECK;
            if !session.conn.is_alive().unwrap_or(false) {
                let line = Line::new("disconnected")
                    .field("uri", shown_uri)
                    .says("the connection is dead; reconnecting");
                handler.journal.log(Level::Warning, &line);
                return stopping.map(|(signal, _)| signal);
            }
        }
        handler.run_due(&session.conn, mailbox, stopping.is_some());
    }
}

/// Waits `pause` for a signal that says stop, reloading on SIGHUP; a dead connection's late
/// events matter only to what the watcher follows of its own defines.
fn wait(
    handler: &mut Handler,
    policy: &PolicyFile,
    mailbox: &mut Mailbox,
    pause: Duration,
    shown_uri: &str,
    ready: bool,
) -> Option<i32> {
    mailbox.session = 0;
    let deadline = Instant::now() + pause;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        mailbox.wait(left, handler.tracker());
        while let Some(signal) = mailbox.signals.pop_front() {
            match signal {
                SIGHUP => policy::reload(handler, policy, shown_uri, ready, RECONNECTING),
                _ => return Some(signal),
            }
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
