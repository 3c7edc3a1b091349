//! Where each guest the watcher is busy with stands, by UUID: settling (its definition must be
//! left alone for [`SETTLE`] before it is judged), being judged, or followed after the
//! watcher's own define or undefine until the events about it go quiet. Events are routed here
//! as they arrive, between two steps of the service loop or while a judgement drains them;
//! the loop asks what is due. No libvirt, no clock of its own: the time is passed in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use phbguard_core::parse::METADATA_NS;

use super::aftermath::Seen;
use super::journal::Op;
use crate::events::{Defined, DomainId, Event};

/// How long nothing may happen to a guest's definition before the watcher judges it: a tool
/// that defines twice in a row (`virsh "define a.xml; define b.xml"`, ~25 ms apart here) is
/// judged on its last definition, not raced with. Well under the time an admin takes to type
/// `virsh start` after `virsh define`; and the hook refuses a start in between anyway.
pub const SETTLE: Duration = Duration::from_millis(200);
/// After the watcher's own define or undefine has been delivered, how long no event about the
/// guest may arrive before what happened is worked out: events of operations made around it
/// arrive within milliseconds (they are queued before the operation returns).
pub const QUIET: Duration = Duration::from_millis(150);
/// How long the watcher waits for the event of its own define or undefine (or for the events
/// about the guest to go quiet) before it says it cannot tell what happened.
pub const GIVE_UP: Duration = Duration::from_secs(5);

/// What the watcher did that it now follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Own {
    /// It defined `wrote`. `read_back`: the definition read right after (what libvirt made of
    /// it, unless someone defined the guest in between). `logged`: the `redefined` line is out
    /// (not yet when the define's reply was lost with the connection, and it is not known
    /// whether libvirt applied it).
    Defined {
        wrote: String,
        read_back: Option<String>,
        logged: bool,
        /// The fix's changes, for a `redefined` line logged late.
        changes: Vec<String>,
    },
    /// It undefined a guest it had re-created; `removed` is the definition it removed.
    Undefined { removed: String },
}

/// The watcher's own define or undefine of a guest, and what was seen about the guest since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    pub id: DomainId,
    pub op: Op,
    pub own: Own,
    /// Every event about the guest routed since the watcher's last check before its call.
    pub seen: Vec<Seen>,
    /// When the call returned.
    pub since: Instant,
    /// When the last event about the guest arrived.
    pub last: Instant,
    /// The connection was lost while it was followed: events may be missing, the watcher's
    /// own among them.
    pub interrupted: bool,
}

impl Follow {
    pub fn new(id: DomainId, op: Op, own: Own, now: Instant) -> Follow {
        Follow {
            id,
            op,
            own,
            seen: Vec::new(),
            since: now,
            last: now,
            interrupted: false,
        }
    }

    /// Whether an event that can be the watcher's own call's has arrived.
    pub fn own_seen(&self) -> bool {
        match self.own {
            Own::Defined { .. } => self.seen.iter().any(|s| matches!(s, Seen::Added | Seen::Updated)),
            Own::Undefined { .. } => self.seen.contains(&Seen::Undefined),
        }
    }

    /// Whether the watcher has waited as long as it will.
    pub fn given_up(&self, now: Instant) -> bool {
        now >= self.since + GIVE_UP
    }

    fn due(&self) -> Instant {
        let limit = self.since + GIVE_UP;
        if self.own_seen() {
            (self.last + QUIET).min(limit)
        } else {
            limit
        }
    }
}

enum Track {
    /// Judged once nothing happened to it for [`SETTLE`].
    Settling { id: DomainId, op: Op, due: Instant },
    /// Being judged right now; `last` is the last event that arrived meanwhile.
    Judging { last: Option<(Seen, Instant)> },
    /// After the watcher's own define or undefine.
    Following(Follow),
}

/// What the service loop has to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Judge the guest's definition.
    Judge { id: DomainId, op: Op },
    /// Work out what happened around the watcher's own call about the guest with this UUID
    /// (still followed meanwhile: [`Tracker::followed`], [`Tracker::unfollow`]).
    Follow(String),
}

/// Whether the definition changed while it was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meanwhile {
    Nothing,
    /// Changed: judge it again once it has settled.
    Changed,
    /// Undefined (its last event).
    Undefined,
}

#[derive(Default)]
pub struct Tracker {
    guests: HashMap<String, Track>,
    /// DEVICE_ADDED events, handled in the order they came.
    hotplugs: VecDeque<(DomainId, String)>,
}

impl Tracker {
    /// Takes in one event (not `Closed`: the service loop handles that).
    pub fn route(&mut self, event: Event, now: Instant) {
        let (id, seen) = match event {
            Event::Defined { domain, detail } => {
                let seen = match detail {
                    Defined::Added => Seen::Added,
                    Defined::Updated | Defined::Other(_) => Seen::Updated,
                };
                (domain, seen)
            }
            Event::Undefined { domain } => (domain, Seen::Undefined),
            Event::MetadataChanged { domain, namespace } => {
                // Only phbguard's own opt-out changes what the watcher decides; any metadata
                // change still counts around the watcher's own define (it can be replaced).
                if namespace.as_deref() != Some(METADATA_NS)
                    && !matches!(
                        self.guests.get(&domain.uuid),
                        Some(Track::Judging { .. } | Track::Following(_))
                    )
                {
                    return;
                }
                let op = Op::Metadata;
                self.saw(domain, Seen::Metadata, op, now);
                return;
            }
            Event::DeviceAdded { domain, alias } => {
                self.hotplugs.push_back((domain, alias));
                return;
            }
            Event::Closed { .. } => return,
        };
        self.saw(id, seen, Op::Define, now);
    }

    fn saw(&mut self, id: DomainId, seen: Seen, op: Op, now: Instant) {
        match self.guests.get_mut(&id.uuid) {
            Some(Track::Settling { due, .. }) => {
                if seen == Seen::Undefined {
                    self.guests.remove(&id.uuid);
                } else {
                    *due = now + SETTLE;
                }
            }
            Some(Track::Judging { last }) => *last = Some((seen, now)),
            Some(Track::Following(follow)) => {
                follow.seen.push(seen);
                follow.last = now;
            }
            None if seen != Seen::Undefined => self.settle(id, op, now),
            None => {}
        }
    }

    /// Judges the guest once nothing happened to it for [`SETTLE`] from `now`.
    pub fn settle(&mut self, id: DomainId, op: Op, now: Instant) {
        let uuid = id.uuid.clone();
        self.guests.insert(
            uuid,
            Track::Settling {
                id,
                op,
                due: now + SETTLE,
            },
        );
    }

    /// The guest is being judged: events about it are noted.
    pub fn judging(&mut self, uuid: &str) {
        self.guests.insert(uuid.to_owned(), Track::Judging { last: None });
    }

    /// What happened to the guest since [`Tracker::judging`].
    pub fn meanwhile(&self, uuid: &str) -> Meanwhile {
        match self.guests.get(uuid) {
            Some(Track::Judging { last: None }) | None => Meanwhile::Nothing,
            Some(Track::Judging {
                last: Some((Seen::Undefined, _)),
            }) => Meanwhile::Undefined,
            Some(_) => Meanwhile::Changed,
        }
    }

    /// The judgement is over without a define: a guest changed meanwhile settles again (its
    /// newest definition is judged), one undefined last is forgotten.
    pub fn judged(&mut self, id: &DomainId, op: Op) {
        if let Some(Track::Judging { last }) = self.guests.remove(&id.uuid) {
            match last {
                Some((Seen::Undefined, _)) | None => {}
                Some((_, at)) => self.settle(id.clone(), op, at),
            }
        }
    }

    /// The judgement ended in a define or undefine of the watcher's own: follow it.
    pub fn follow(&mut self, follow: Follow) {
        let uuid = follow.id.uuid.clone();
        self.guests.insert(uuid, Track::Following(follow));
    }

    /// When the next thing is due (while `stopping`, only what follows the watcher's own
    /// calls: nothing new is judged).
    pub fn next_due(&self, stopping: bool) -> Option<Instant> {
        self.guests
            .values()
            .filter_map(|t| match t {
                Track::Settling { due, .. } if !stopping => Some(*due),
                Track::Settling { .. } => None,
                Track::Following(f) => Some(f.due()),
                Track::Judging { .. } => None,
            })
            .min()
    }

    /// The earliest thing due at `now`, taken out. While `stopping`, only what follows the
    /// watcher's own calls: nothing new is judged.
    pub fn take_due(&mut self, now: Instant, stopping: bool) -> Option<Due> {
        let (uuid, _) = self
            .guests
            .iter()
            .filter_map(|(uuid, t)| match t {
                Track::Settling { due, .. } if !stopping => Some((uuid, *due)),
                Track::Following(f) => Some((uuid, f.due())),
                _ => None,
            })
            .filter(|(_, due)| *due <= now)
            .min_by_key(|(_, due)| *due)?;
        let uuid = uuid.clone();
        match self.guests.get(&uuid) {
            Some(Track::Settling { .. }) => match self.guests.remove(&uuid) {
                Some(Track::Settling { id, op, .. }) => Some(Due::Judge { id, op }),
                _ => None,
            },
            Some(Track::Following(_)) => Some(Due::Follow(uuid)),
            _ => None,
        }
    }

    /// What the watcher follows about this guest, while it works it out (events routed
    /// meanwhile are added to it).
    pub fn followed(&mut self, uuid: &str) -> Option<&mut Follow> {
        match self.guests.get_mut(uuid) {
            Some(Track::Following(f)) => Some(f),
            _ => None,
        }
    }

    /// Stops following the guest.
    pub fn unfollow(&mut self, uuid: &str) -> Option<Follow> {
        match self.guests.remove(uuid) {
            Some(Track::Following(f)) => Some(f),
            Some(other) => {
                self.guests.insert(uuid.to_owned(), other);
                None
            }
            None => None,
        }
    }

    /// [`Tracker::route`] for the guests the watcher follows only: while it is not connected,
    /// a dead connection's last events matter to them alone (every guest is judged again once
    /// connected).
    pub fn route_if_followed(&mut self, event: Event, now: Instant) {
        let followed = match &event {
            Event::Defined { domain, .. }
            | Event::Undefined { domain }
            | Event::MetadataChanged { domain, .. } => self.following(&domain.uuid),
            Event::DeviceAdded { .. } | Event::Closed { .. } => false,
        };
        if followed {
            self.route(event, now);
        }
    }

    /// The next hot-plug to judge.
    pub fn take_hotplug(&mut self) -> Option<(DomainId, String)> {
        self.hotplugs.pop_front()
    }

    /// Whether the guest is being judged right now.
    #[cfg(test)]
    pub fn judging_now(&self, uuid: &str) -> bool {
        matches!(self.guests.get(uuid), Some(Track::Judging { .. }))
    }

    /// Whether the watcher is following a call of its own about this guest.
    pub fn following(&self, uuid: &str) -> bool {
        matches!(self.guests.get(uuid), Some(Track::Following(_)))
    }

    /// Whether any of its own calls is still followed.
    pub fn in_flight(&self) -> bool {
        self.guests.values().any(|t| matches!(t, Track::Following(_)))
    }

    /// The connection is gone: what waited to be judged is judged again by the audit after
    /// the next connect; what follows the watcher's own calls stays (no more events will come
    /// for it from that connection; it is worked out on the next one).
    pub fn connection_lost(&mut self) {
        self.guests.retain(|_, t| matches!(t, Track::Following(_)));
        for t in self.guests.values_mut() {
            if let Track::Following(f) = t {
                f.interrupted = true;
            }
        }
        self.hotplugs.clear();
    }

    /// Everything still followed, taken out (the watcher stops).
    pub fn take_followed(&mut self) -> Vec<Follow> {
        let mut followed = Vec::new();
        self.guests.retain(|_, t| match t {
            Track::Following(f) => {
                followed.push(f.clone());
                false
            }
            _ => true,
        });
        followed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DomainId {
        DomainId {
            name: format!("g{n}"),
            uuid: format!("00000000-0000-4000-8000-0000000000{n:02}"),
        }
    }

    fn defined(n: u8, detail: Defined) -> Event {
        Event::Defined {
            domain: id(n),
            detail,
        }
    }

    #[test]
    fn a_guest_is_judged_once_its_definitions_have_settled() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        t.route(defined(1, Defined::Added), t0);
        t.route(defined(1, Defined::Updated), t0 + Duration::from_millis(30));
        assert_eq!(t.next_due(false), Some(t0 + Duration::from_millis(30) + SETTLE));
        assert_eq!(t.take_due(t0 + SETTLE, false), None);
        let due = t.take_due(t0 + Duration::from_millis(30) + SETTLE, false);
        assert_eq!(
            due,
            Some(Due::Judge {
                id: id(1),
                op: Op::Define
            })
        );
        assert_eq!(t.next_due(false), None);
    }

    #[test]
    fn an_undefine_while_settling_cancels_the_judgement() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        t.route(defined(1, Defined::Added), t0);
        t.route(Event::Undefined { domain: id(1) }, t0);
        assert_eq!(t.next_due(false), None);
        // Undefined and defined again: the new definition is judged.
        t.route(defined(1, Defined::Added), t0);
        assert!(t.take_due(t0 + SETTLE, false).is_some());
    }

    #[test]
    fn only_phbguards_own_metadata_calls_for_a_judgement() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let metadata = |namespace: Option<&str>| Event::MetadataChanged {
            domain: id(1),
            namespace: namespace.map(str::to_owned),
        };
        t.route(metadata(Some("http://example.org/other")), t0);
        t.route(metadata(None), t0);
        assert_eq!(t.next_due(false), None);
        t.route(metadata(Some(METADATA_NS)), t0);
        assert_eq!(
            t.take_due(t0 + SETTLE, false),
            Some(Due::Judge {
                id: id(1),
                op: Op::Metadata
            })
        );
    }

    #[test]
    fn events_while_judging_are_noted_and_it_settles_again() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        t.judging(&id(1).uuid);
        assert_eq!(t.meanwhile(&id(1).uuid), Meanwhile::Nothing);
        t.route(defined(1, Defined::Updated), t0);
        assert_eq!(t.meanwhile(&id(1).uuid), Meanwhile::Changed);
        t.judged(&id(1), Op::Define);
        assert!(t.take_due(t0 + SETTLE, false).is_some());

        t.judging(&id(1).uuid);
        t.route(Event::Undefined { domain: id(1) }, t0);
        assert_eq!(t.meanwhile(&id(1).uuid), Meanwhile::Undefined);
        t.judged(&id(1), Op::Define);
        assert_eq!(t.next_due(false), None);
    }

    #[test]
    fn a_follow_collects_every_event_and_is_due_when_they_go_quiet() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let own = Own::Defined {
            wrote: "<domain/>".into(),
            read_back: None,
            logged: true,
            changes: Vec::new(),
        };
        t.follow(Follow::new(id(1), Op::Define, own, t0));
        // Its own event not seen yet: due only when the watcher gives up.
        assert_eq!(t.next_due(false), Some(t0 + GIVE_UP));
        let other = Event::MetadataChanged {
            domain: id(1),
            namespace: None,
        };
        t.route(other, t0);
        t.route(defined(1, Defined::Updated), t0 + Duration::from_millis(5));
        assert_eq!(t.next_due(false), Some(t0 + Duration::from_millis(5) + QUIET));
        // Stopping: new judgements wait, follows do not.
        t.route(defined(2, Defined::Added), t0);
        let Some(Due::Follow(uuid)) = t.take_due(t0 + SETTLE, true) else {
            panic!("the follow is due")
        };
        assert_eq!(uuid, id(1).uuid);
        // Still followed while it is worked out: what arrives meanwhile is added.
        t.route(Event::Undefined { domain: id(1) }, t0 + SETTLE);
        let f = t.unfollow(&uuid).unwrap();
        assert_eq!(f.seen, [Seen::Metadata, Seen::Updated, Seen::Undefined]);
        assert_eq!(t.take_due(t0 + SETTLE, true), None);
        assert!(!t.in_flight());
    }

    #[test]
    fn a_lost_connection_keeps_only_the_follows() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        t.route(defined(1, Defined::Added), t0);
        t.judging(&id(2).uuid);
        let own = Own::Undefined {
            removed: String::new(),
        };
        t.follow(Follow::new(id(3), Op::Define, own, t0));
        t.connection_lost();
        assert!(t.following(&id(3).uuid) && t.in_flight());
        let followed = t.take_followed();
        assert!(followed.len() == 1 && followed[0].interrupted);
        assert_eq!(t.next_due(false), None);
    }
}
