//! What happened around the watcher's own define (or undefine) of a guest, worked out from the
//! events libvirt delivered about that guest after the watcher's last look at it, and from the
//! definition found once they went quiet. Pure: no libvirt, no clock; docs/watch.md has the
//! case analysis this implements and its limits.
//!
//! libvirt has no conditional define: `virDomainDefineXML` replaces the definition with the
//! same UUID, or creates one when there is none. Between the watcher's last read and its
//! define, someone else may have defined the guest (their change is then replaced) or undefined
//! it (the define then creates it again). The DEFINED event's detail is decided under the
//! domain's lock, so it tells the truth about the define it reports: `Added` means there was no
//! definition just before. Events of one connection arrive in the order libvirtd queued them;
//! see [`after_define`] for how far that order is relied on.

/// One event about the guest, in the order libvirt delivered them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// DEFINED, detail ADDED: a definition was created; there was none just before.
    Added,
    /// DEFINED with any other detail: a definition was replaced.
    Updated,
    /// METADATA_CHANGE: `virsh metadata` or `virsh desc` changed it. The event does not say
    /// whether the persistent or the live definition changed: it counts as a change.
    Metadata,
    /// UNDEFINED.
    Undefined,
}

impl Seen {
    /// Whether it may have changed the persistent definition's content.
    fn changes(self) -> bool {
        matches!(self, Seen::Added | Seen::Updated | Seen::Metadata)
    }

    /// Whether it is a define (one of them is the watcher's).
    fn defines(self) -> bool {
        matches!(self, Seen::Added | Seen::Updated)
    }

    /// How libvirt's `virsh event` spells it, for log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::Added => "Defined Added",
            Seen::Updated => "Defined Updated",
            Seen::Metadata => "Metadata Changed",
            Seen::Undefined => "Undefined",
        }
    }
}

/// The guest's persistent definition, read once the events went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Now {
    /// There is none.
    Gone,
    /// It is the one the watcher wrote, text for text.
    Ours {
        /// The guest runs (someone started it since).
        running: bool,
    },
    /// It is someone else's.
    Other,
}

/// What the watcher's define did, as far as the events and the definition now tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDefine {
    /// Nobody else touched the guest in between: the define replaced what the watcher judged.
    Clean,
    /// Someone changed the guest after the watcher's define, not before: their change stands.
    Superseded,
    /// A change made between the watcher's last read and its define may have been replaced
    /// by the fix. `superseded`: someone changed the guest again since.
    MayHaveReplaced { superseded: bool },
    /// The define re-created a guest undefined meanwhile, and what is defined now is exactly
    /// the watcher's: undefine it again.
    Recreated,
    /// As [`AfterDefine::Recreated`], but the guest runs now: it cannot be undefined without
    /// making it transient, so it is left.
    RecreatedRunning,
    /// The define may have re-created a guest undefined meanwhile, and someone has defined or
    /// changed it since: what is there now is theirs, left as it is.
    RecreatedThenChanged,
    /// The guest is gone (undefined after the define). `recreated`: the define may have
    /// re-created it before that.
    Gone { recreated: bool },
    /// The events do not explain what is defined now (one is still on its way, or the
    /// connection lost some): wait for more, then say it cannot be told.
    Unexplained,
}

impl AfterDefine {
    /// How much it matters when one history says this and another something else.
    fn gravity(self) -> u8 {
        match self {
            AfterDefine::Clean | AfterDefine::Superseded => 0,
            AfterDefine::Gone { recreated: false } => 1,
            AfterDefine::Gone { recreated: true } => 2,
            AfterDefine::MayHaveReplaced { superseded: true } => 3,
            AfterDefine::MayHaveReplaced { superseded: false } => 4,
            AfterDefine::RecreatedThenChanged => 5,
            AfterDefine::Recreated => 6,
            AfterDefine::RecreatedRunning => 7,
            AfterDefine::Unexplained => 8,
        }
    }

    /// Whether this says something went wrong that an admin must hear about.
    #[cfg(test)]
    fn is_trouble(self) -> bool {
        matches!(
            self,
            AfterDefine::MayHaveReplaced { .. }
                | AfterDefine::Recreated
                | AfterDefine::RecreatedRunning
                | AfterDefine::RecreatedThenChanged
                | AfterDefine::Unexplained
        )
    }
}

/// What the watcher's define did, from `seen` (every event about the guest delivered after the
/// watcher's last check before defining, in order; one of its defines is the watcher's own)
/// and `now` (the definition once they went quiet).
///
/// Each define in `seen` that could be the watcher's, given `now`, is a candidate; an outcome
/// holds if it holds for any candidate, except the undo ([`AfterDefine::Recreated`]), which
/// needs the only candidate there can be. With `now` = [`Now::Ours`] the watcher's define is
/// the last define delivered (nobody defined after it, or what is there would be theirs).
///
/// That reads the delivery order as the order things happened in, which libvirtd keeps but
/// for one instant: it queues an operation's event just after releasing the domain's lock, so
/// two operations on the guest within that instant may be delivered the other way round. So
/// every history at most one adjacent swap away from `seen` that can have happened (the
/// details say which: `Added` exactly when there was no definition, no undefine or metadata
/// change without one) and that explains `now` is told, and the outcomes are merged: the undo
/// only when every one of them calls for it, otherwise the most troubling of them.
/// docs/watch.md has the cases, and what more than one swap could do.
pub fn after_define(seen: &[Seen], now: Now) -> AfterDefine {
    let outcomes: Vec<AfterDefine> = one_swap_away(seen)
        .iter()
        .filter(|h| possible(h))
        .map(|h| classify(h, now))
        .filter(|o| *o != AfterDefine::Unexplained)
        .collect();
    let Some(&worst) = outcomes.iter().max_by_key(|o| o.gravity()) else {
        return AfterDefine::Unexplained;
    };
    if outcomes.contains(&AfterDefine::Recreated) && outcomes.iter().any(|o| *o != AfterDefine::Recreated) {
        // Re-created by the watcher, or replaced someone's new definition of it: undefining it
        // could delete theirs.
        return AfterDefine::Unexplained;
    }
    worst
}

/// `seen` as delivered, and with each adjacent pair swapped.
fn one_swap_away(seen: &[Seen]) -> Vec<Vec<Seen>> {
    let mut histories = vec![seen.to_vec()];
    for k in 0..seen.len().saturating_sub(1) {
        let mut swapped = seen.to_vec();
        swapped.swap(k, k + 1);
        histories.push(swapped);
    }
    histories
}

/// Whether `seen` can have happened in this order to a guest that existed when the watcher
/// last read it: libvirt refuses to undefine or change the metadata of a guest that does not
/// exist, and says `Added` exactly when it creates one.
fn possible(seen: &[Seen]) -> bool {
    let mut exists = true;
    for s in seen {
        let ok = match s {
            Seen::Added => !exists,
            Seen::Updated | Seen::Metadata | Seen::Undefined => exists,
        };
        if !ok {
            return false;
        }
        exists = *s != Seen::Undefined;
    }
    true
}

/// [`after_define`] for a history that can have happened in the order `seen` gives.
fn classify(seen: &[Seen], now: Now) -> AfterDefine {
    let candidates: Vec<usize> = (0..seen.len())
        .filter(|&i| seen[i].defines() && could_be_ours(seen, i, now))
        .collect();
    if candidates.is_empty() {
        return AfterDefine::Unexplained;
    }
    let recreated = |i: usize| seen[i] == Seen::Added;
    // A change before the watcher's define and after the last undefine before it: replaced.
    // (One before an undefine went with the guest anyway.)
    let replaced = |i: usize| {
        seen[i] == Seen::Updated
            && seen[..i]
                .iter()
                .rev()
                .take_while(|s| **s != Seen::Undefined)
                .any(|s| s.changes())
    };
    match now {
        Now::Ours { running } => {
            // could_be_ours leaves only the last define.
            let ours = candidates[0];
            if recreated(ours) {
                if running {
                    AfterDefine::RecreatedRunning
                } else {
                    AfterDefine::Recreated
                }
            } else if replaced(ours) || seen[ours + 1..].contains(&Seen::Metadata) {
                // A metadata event after the watcher's define, with the definition still the
                // watcher's, is a live change, or one made just before the define and
                // delivered just after it.
                AfterDefine::MayHaveReplaced { superseded: false }
            } else {
                AfterDefine::Clean
            }
        }
        Now::Other => {
            if candidates.iter().any(|&i| recreated(i)) {
                AfterDefine::RecreatedThenChanged
            } else if candidates.iter().any(|&i| replaced(i)) {
                AfterDefine::MayHaveReplaced { superseded: true }
            } else {
                AfterDefine::Superseded
            }
        }
        Now::Gone => AfterDefine::Gone {
            recreated: candidates.iter().any(|&i| recreated(i)),
        },
    }
}

/// Whether the define `seen[i]` can be the watcher's, given what is defined now.
fn could_be_ours(seen: &[Seen], i: usize, now: Now) -> bool {
    let after = &seen[i + 1..];
    let exists_at_end = exists_after(seen);
    match now {
        // Nothing defined or undefined it after ours (a metadata event after it can only have
        // been a live one: the definition is still ours).
        Now::Ours { .. } => !after.iter().any(|s| *s != Seen::Metadata),
        // Someone changed it after ours, and it exists.
        Now::Other => exists_at_end && after.iter().any(|s| s.changes()),
        // It was undefined after ours.
        Now::Gone => after.contains(&Seen::Undefined) && !exists_at_end,
    }
}

/// What the watcher's undefine of a guest it had re-created did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterUndefine {
    /// Someone may have defined or changed the guest between the watcher's last check and its
    /// undefine: their definition went with it.
    pub removed_a_change: bool,
    /// Someone defined the guest again after the watcher's undefine: it is theirs.
    pub defined_again: bool,
}

/// What the watcher's undefine did, from `seen` (every event about the guest delivered after
/// the watcher's last check before undefining; one of its undefines is the watcher's own) and
/// whether the guest exists now. As [`after_define`], every history one adjacent swap away
/// that can have happened and ends as `exists_now` says is told, and a removed change in any
/// of them counts.
pub fn after_undefine(seen: &[Seen], exists_now: bool) -> AfterUndefine {
    let removed_a_change = one_swap_away(seen)
        .iter()
        .filter(|h| possible(h) && exists_after(h) == exists_now)
        .any(|h| {
            (0..h.len())
                .filter(|&i| h[i] == Seen::Undefined)
                .any(|i| h[..i].iter().any(|s| s.changes()))
        });
    AfterUndefine {
        removed_a_change,
        defined_again: exists_now,
    }
}

/// Whether the guest exists after `seen`, having existed before it.
fn exists_after(seen: &[Seen]) -> bool {
    seen.iter().rev().find(|s| **s != Seen::Metadata) != Some(&Seen::Undefined)
}

#[cfg(test)]
mod tests {
    //! Every history of up to three other operations on the guest around the watcher's define,
    //! delivered in the order they happened: what the classifier says is checked against what
    //! happened.

    use super::*;

    /// One operation on the guest.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        /// The watcher's define.
        Ours,
        /// Someone's `virsh define` (a whole definition).
        Define,
        /// Someone's `virsh metadata --config` (a change to the persistent definition).
        Metadata,
        /// Someone's `virsh metadata --live` on a running guest: the same event, no change to
        /// the persistent definition.
        LiveMetadata,
        /// Someone's `virsh undefine`.
        Undefine,
    }

    /// What a history did and what the watcher sees of it.
    #[derive(Debug)]
    struct Outcome {
        seen: Vec<Seen>,
        now: Now,
        /// The watcher's define created the guest (it had been undefined).
        recreated: bool,
        /// Someone's change (after the last undefine before the watcher's define) was replaced.
        replaced: bool,
    }

    /// Plays `ops` from a guest that exists; None if an operation would fail (libvirt refuses
    /// to undefine or change metadata of a guest that does not exist: no event).
    fn play(ops: &[Op]) -> Option<Outcome> {
        let mut exists = true;
        // Who wrote the content the definition has: true for the watcher.
        let mut ours = false;
        let mut seen = Vec::new();
        let mut recreated = false;
        let mut replaced = false;
        let mut changed_since_undefine = false;
        for &op in ops {
            match op {
                Op::Ours | Op::Define => {
                    seen.push(if exists { Seen::Updated } else { Seen::Added });
                    if op == Op::Ours {
                        recreated = !exists;
                        replaced = exists && changed_since_undefine;
                    } else {
                        changed_since_undefine = true;
                    }
                    exists = true;
                    ours = op == Op::Ours;
                }
                Op::Metadata | Op::LiveMetadata => {
                    if !exists {
                        return None;
                    }
                    seen.push(Seen::Metadata);
                    if op == Op::Metadata {
                        ours = false;
                        changed_since_undefine = true;
                    }
                }
                Op::Undefine => {
                    if !exists {
                        return None;
                    }
                    seen.push(Seen::Undefined);
                    exists = false;
                    changed_since_undefine = false;
                }
            }
        }
        let now = match (exists, ours) {
            (false, _) => Now::Gone,
            (true, true) => Now::Ours { running: false },
            (true, false) => Now::Other,
        };
        Some(Outcome {
            seen,
            now,
            recreated,
            replaced,
        })
    }

    /// Every history: the watcher's define with up to `others` operations before and after it.
    fn histories(others: usize) -> Vec<Vec<Op>> {
        let kinds = [Op::Define, Op::Metadata, Op::LiveMetadata, Op::Undefine];
        let mut all = vec![vec![Op::Ours]];
        let mut frontier = vec![vec![]];
        for _ in 0..others {
            let mut next = Vec::new();
            for h in &frontier {
                for k in kinds {
                    let mut h = h.clone();
                    h.push(k);
                    next.push(h);
                }
            }
            for h in &next {
                for at in 0..=h.len() {
                    let mut with_ours = h.clone();
                    with_ours.insert(at, Op::Ours);
                    all.push(with_ours);
                }
            }
            frontier = next;
        }
        all
    }

    #[test]
    fn every_history_of_up_to_three_other_operations_is_told_safely() {
        let mut played = 0;
        for ops in histories(3) {
            let Some(o) = play(&ops) else { continue };
            played += 1;
            let verdict = after_define(&o.seen, o.now);
            let context = format!("{ops:?} -> seen {:?}, now {:?}: {verdict:?}", o.seen, o.now);
            // Undone exactly when the watcher's define created what is there now.
            let undo = verdict == AfterDefine::Recreated;
            assert_eq!(
                undo,
                o.recreated && o.now == Now::Ours { running: false },
                "{context}"
            );
            // Never silent about a replaced change that is still in force, nor about a
            // re-created guest that is still there.
            if (o.replaced || o.recreated) && o.now != Now::Gone {
                assert!(verdict.is_trouble(), "{context}");
            }
            if o.recreated && o.now == Now::Gone {
                assert_eq!(verdict, AfterDefine::Gone { recreated: true }, "{context}");
            }
            // Silent when nobody else did anything before the watcher's define and what is there
            // now tells: the watcher's own definition, or none. (When someone's is there, a
            // define of theirs before the watcher's looks the same as one after it, and
            // the classifier says it may have replaced it.)
            if ops[0] == Op::Ours {
                match o.now {
                    // A metadata event after it may be a change made just before it (see
                    // one_swapped_pair_never_undoes_a_guest_someone_else_defined).
                    Now::Ours { .. } if o.seen.contains(&Seen::Metadata) => assert_eq!(
                        verdict,
                        AfterDefine::MayHaveReplaced { superseded: false },
                        "{context}"
                    ),
                    Now::Ours { .. } => assert_eq!(verdict, AfterDefine::Clean, "{context}"),
                    // [ours, undefine, define, undefine] looks like [define, undefine, ours,
                    // undefine]: "it may have re-created it" is all that can be said.
                    Now::Gone => assert!(matches!(verdict, AfterDefine::Gone { .. }), "{context}"),
                    Now::Other => assert!(
                        matches!(
                            verdict,
                            AfterDefine::Superseded
                                | AfterDefine::MayHaveReplaced { superseded: true }
                                | AfterDefine::RecreatedThenChanged
                        ),
                        "{context}"
                    ),
                }
            }
            // Nothing the classifier says contradicts what is defined now.
            assert_ne!(verdict, AfterDefine::Unexplained, "{context}");
        }
        assert_eq!(played, 241, "every history libvirt allows");
    }

    #[test]
    fn the_orderings_of_the_design_notes() {
        use Seen::*;
        let ours = Now::Ours { running: false };
        // The watcher's define alone.
        assert_eq!(after_define(&[Updated], ours), AfterDefine::Clean);
        // Undefined, then the watcher's define created it again.
        assert_eq!(after_define(&[Undefined, Added], ours), AfterDefine::Recreated);
        assert_eq!(
            after_define(&[Undefined, Added], Now::Ours { running: true }),
            AfterDefine::RecreatedRunning
        );
        // Someone's define, then the watcher's: theirs is lost.
        assert_eq!(
            after_define(&[Updated, Updated], ours),
            AfterDefine::MayHaveReplaced { superseded: false }
        );
        // The watcher's, then someone's: theirs stands.
        assert_eq!(
            after_define(&[Updated, Updated], Now::Other),
            AfterDefine::Superseded
        );
        // Undefined, someone created it again, the watcher's define replaced theirs.
        assert_eq!(
            after_define(&[Undefined, Added, Updated], ours),
            AfterDefine::MayHaveReplaced { superseded: false }
        );
        // Undefined, the watcher's define created it again, then someone defined it: theirs.
        assert_eq!(
            after_define(&[Undefined, Added, Updated], Now::Other),
            AfterDefine::RecreatedThenChanged
        );
        // Re-created, then undefined again: nothing left.
        assert_eq!(
            after_define(&[Undefined, Added, Undefined], Now::Gone),
            AfterDefine::Gone { recreated: true }
        );
        assert_eq!(
            after_define(&[Updated, Undefined], Now::Gone),
            AfterDefine::Gone { recreated: false }
        );
        // The watcher's was the first or the second of three: it may have replaced the first.
        assert_eq!(
            after_define(&[Updated, Updated, Updated], Now::Other),
            AfterDefine::MayHaveReplaced { superseded: true }
        );
        // `virsh metadata --config` after the look; a metadata event after the define.
        for seen in [[Metadata, Updated], [Updated, Metadata]] {
            assert_eq!(
                after_define(&seen, ours),
                AfterDefine::MayHaveReplaced { superseded: false }
            );
        }
        // Someone's define went with an undefine; the watcher's created the guest again.
        assert_eq!(
            after_define(&[Updated, Undefined, Added], ours),
            AfterDefine::Recreated
        );
        // The watcher's define, the undefine, someone created it again: theirs.
        assert_eq!(
            after_define(&[Updated, Undefined, Added], Now::Other),
            AfterDefine::Superseded
        );
        // A change the watcher cannot see the event of yet.
        assert_eq!(after_define(&[Updated], Now::Gone), AfterDefine::Unexplained);
        assert_eq!(after_define(&[Updated], Now::Other), AfterDefine::Unexplained);
        assert_eq!(after_define(&[], ours), AfterDefine::Unexplained);
    }

    #[test]
    fn an_undefine_that_may_have_removed_someones_define_says_so() {
        use Seen::*;
        let clean = AfterUndefine {
            removed_a_change: false,
            defined_again: false,
        };
        assert_eq!(after_undefine(&[Undefined], false), clean);
        assert_eq!(
            after_undefine(&[Updated, Undefined], false),
            AfterUndefine {
                removed_a_change: true,
                ..clean
            }
        );
        assert_eq!(
            after_undefine(&[Undefined, Added], true),
            AfterUndefine {
                defined_again: true,
                ..clean
            }
        );
        // Someone's define just before the watcher's undefine, delivered just after it.
        assert_eq!(
            after_undefine(&[Undefined, Updated], false),
            AfterUndefine {
                removed_a_change: true,
                ..clean
            }
        );
    }

    /// libvirtd queues an operation's event just after releasing the domain's lock: two
    /// operations in the same instant may be delivered swapped. With any one adjacent pair
    /// swapped, the classifier never undefines a guest it did not re-create, and where it
    /// cannot tell, it says so.
    #[test]
    fn one_swapped_pair_never_undoes_a_guest_someone_else_defined() {
        let mut swapped = 0;
        for ops in histories(3) {
            let Some(o) = play(&ops) else { continue };
            for k in 0..o.seen.len().saturating_sub(1) {
                let mut seen = o.seen.clone();
                seen.swap(k, k + 1);
                swapped += 1;
                let verdict = after_define(&seen, o.now);
                let context = format!("{ops:?} delivered as {seen:?}, now {:?}: {verdict:?}", o.now);
                let must_undo = o.recreated && o.now == Now::Ours { running: false };
                if verdict == AfterDefine::Recreated {
                    assert!(must_undo, "{context}");
                } else if must_undo {
                    assert_eq!(verdict, AfterDefine::Unexplained, "{context}");
                }
                if (o.replaced || o.recreated) && o.now != Now::Gone {
                    assert!(verdict.is_trouble(), "{context}");
                }
            }
        }
        assert_eq!(swapped, 662, "each with each adjacent pair swapped");
    }
}
