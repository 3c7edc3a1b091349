//! Domain events and connection loss from libvirt, as owned Rust values handed to a sink.
//!
//! The `virt` crate (0.5.0) wraps the event loop but not domain-event registration, so this
//! module calls `virConnectDomainEventRegisterAny`, `virConnectDomainEventDeregisterAny` and
//! `virConnectRegisterCloseCallback` from `virt::sys` itself. It is the only place in phbguard
//! that allows `unsafe`; each block says why it is sound.
//!
//! How libvirt runs callbacks (libvirt's src/conf/object_event.c and src/datatypes.c):
//! * Domain events are queued and flushed from a timer of the registered event loop
//!   (`virObjectEventTimer`), so they run on the thread that calls `virEventRunDefaultImpl`
//!   ([`start_event_loop`]'s thread). The connection-close callback runs on whichever thread
//!   notices the socket closing (the event loop's, or one inside an RPC).
//! * A domain event callback's `opaque` belongs to libvirt from a successful registration on:
//!   libvirt calls the `freecb` once, when the callback is removed
//!   (`virObjectEventCallbackListRemoveID`, or after the dispatch in progress,
//!   `virObjectEventCallbackListPurgeMarked`) or the connection's event state is disposed. A
//!   *failed* registration does not call it (`doFreeCb` false on the remote driver's error
//!   path), so only then does this module free `opaque` itself.
//! * The close callback's `opaque` stays this module's: see [`Subscription::new`].
//! * Every callback does no more than copy the domain's name, UUID and the event's numbers
//!   into an [`Event`] and pass it to the sink; the caller's thread does the work. A panic in
//!   there is caught: unwinding into C is undefined behaviour.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Once};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::Error;
use virt::sys;

/// Which domain an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainId {
    pub name: String,
    pub uuid: String,
}

/// What `VIR_DOMAIN_EVENT_DEFINED` says happened (`virDomainEventDefinedDetailType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defined {
    /// A new persistent definition.
    Added,
    /// A changed persistent definition.
    Updated,
    /// Any other detail (renamed, from a snapshot, newer libvirt).
    Other(i32),
}

/// Why libvirt closed the connection (`virConnectCloseReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Error,
    /// The daemon closed the socket (it stopped or restarted).
    Eof,
    /// The daemon stopped answering keepalive probes.
    Keepalive,
    Client,
    Other(i32),
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Error => "error",
            CloseReason::Eof => "eof",
            CloseReason::Keepalive => "keepalive",
            CloseReason::Client => "client",
            CloseReason::Other(_) => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A persistent definition was made or changed (`virsh define`, `virsh edit`, ...).
    Defined { domain: DomainId, detail: Defined },
    /// A persistent definition was removed.
    Undefined { domain: DomainId },
    /// `virsh metadata` or `virsh desc` changed the persistent or the live definition
    /// (METADATA_CHANGE; libvirt sends no DEFINED for these). `namespace` is the changed
    /// element's namespace URI (`<metadata>` children), None for a title or description.
    MetadataChanged {
        domain: DomainId,
        namespace: Option<String>,
    },
    /// A device was hot-plugged into a running guest; `alias` is its `<alias name>`.
    DeviceAdded { domain: DomainId, alias: String },
    /// The connection is gone; nothing more comes from it.
    Closed { reason: CloseReason },
}

/// Where events go. Called on libvirt's threads (see the module comment): it must be quick.
type Sink = dyn Fn(Event) + Send + Sync;

/// Registers libvirt's default event loop and runs it on a thread of its own. Once per
/// process, before any connection is opened: a connection only delivers events (and notices
/// that its daemon went away) if an event loop was registered when it was opened.
pub fn start_event_loop() -> Result<(), Error> {
    static START: Once = Once::new();
    let mut result = Ok(());
    START.call_once(|| {
        result = virt::event::event_register_default_impl();
        if result.is_ok() {
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| {
                    loop {
                        // An error here is one failed poll; the loop must keep running.
                        if let Err(e) = virt::event::event_run_default_impl() {
                            eprintln!("phbguard: libvirt event loop: {e}");
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                    }
                })
                .expect("spawning the libvirt event thread");
        }
    });
    result
}

/// The callbacks registered on one connection; dropping it removes them.
pub struct Subscription {
    /// A reference of its own (`virConnectRef`), so the pointer stays valid until the drop.
    conn: Connect,
    callback_ids: Vec<c_int>,
    /// The close callback's `opaque`, when one is registered.
    close_opaque: Option<*mut c_void>,
}

// SAFETY: `close_opaque` points at a Box<Arc<Sink>>, and Sink is Send + Sync; the pointer is
// only dereferenced by libvirt's callback and freed once, in `drop`.
unsafe impl Send for Subscription {}

impl Subscription {
    /// Registers for lifecycle (defined, undefined), metadata-change and device-added events of
    /// every domain,
    /// and for the connection closing, all delivered to `sink`. Drivers without a daemon
    /// (`test:///`) never report closing: poll `Connect::is_alive` as well.
    pub fn new(conn: &Connect, sink: impl Fn(Event) + Send + Sync + 'static) -> Result<Subscription, Error> {
        let sink: Arc<Sink> = Arc::new(sink);
        let mut sub = Subscription {
            conn: conn.clone(),
            callback_ids: Vec::new(),
            close_opaque: None,
        };
        // SAFETY: libvirt calls a domain event callback through the signature that belongs to
        // its event ID and takes the generic type only for the registration (the C API's
        // VIR_DOMAIN_EVENT_CALLBACK cast; virDomainEventDispatchDefaultFunc casts it back).
        let lifecycle = unsafe { std::mem::transmute::<LifecycleFn, GenericFn>(on_lifecycle as LifecycleFn) };
        // SAFETY: as above, for VIR_DOMAIN_EVENT_ID_DEVICE_ADDED.
        let device_added =
            unsafe { std::mem::transmute::<DeviceAddedFn, GenericFn>(on_device_added as DeviceAddedFn) };
        // SAFETY: as above, for VIR_DOMAIN_EVENT_ID_METADATA_CHANGE.
        let metadata =
            unsafe { std::mem::transmute::<MetadataFn, GenericFn>(on_metadata_change as MetadataFn) };
        for (id, callback) in [
            (sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle),
            (sys::VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, metadata),
            (sys::VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, device_added),
        ] {
            let opaque = into_opaque(&sink);
            // SAFETY: `sub.conn` is a live connection for the whole call. A null domain means
            // every domain. `opaque` is a leaked Box<Arc<Sink>> that only `free_sink` (which
            // libvirt calls once, see the module comment) or the error path below turns back
            // into a Box; the callback only borrows it.
            let ret = unsafe {
                sys::virConnectDomainEventRegisterAny(
                    sub.conn.as_ptr(),
                    std::ptr::null_mut(),
                    id as c_int,
                    Some(callback),
                    opaque,
                    Some(free_sink),
                )
            };
            if ret < 0 {
                let err = Error::last_error();
                // SAFETY: the registration failed, so libvirt did not keep `opaque` and will
                // never call `free_sink` on it: it is still ours, freed exactly once here.
                unsafe { free_sink(opaque) };
                return Err(err); // `sub`'s drop removes what was registered before
            }
            sub.callback_ids.push(ret);
        }
        // The close callback's `opaque` stays ours (no freecb): libvirt's public
        // virConnectRegisterCloseCallback returns success *without storing anything* for
        // drivers that have no close callback (test:///, see libvirt.c), so a freecb would
        // never run there. It is freed in `drop`, once unregistering guarantees no call.
        let opaque = into_opaque(&sink);
        // SAFETY: a live connection; `opaque` outlives the registration (freed in `drop` only
        // after virConnectUnregisterCloseCallback succeeded).
        let ret =
            unsafe { sys::virConnectRegisterCloseCallback(sub.conn.as_ptr(), Some(on_close), opaque, None) };
        if ret < 0 {
            // SAFETY: nothing was registered, so nothing will call back with `opaque`.
            unsafe { free_sink(opaque) };
        } else {
            sub.close_opaque = Some(opaque);
        }
        Ok(sub)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for &id in &self.callback_ids {
            // SAFETY: `self.conn` is still referenced. Whatever this returns (a dead
            // connection fails the server-side RPC after the local callback was removed),
            // libvirt frees `opaque` through `free_sink`; it is never freed here.
            unsafe { sys::virConnectDomainEventDeregisterAny(self.conn.as_ptr(), id) };
        }
        if let Some(opaque) = self.close_opaque.take() {
            // SAFETY: `self.conn` is still referenced. libvirt calls the close callback and
            // unregisters it under the same lock (virConnectCloseCallbackDataCall/Unregister),
            // so once this succeeds no call is running or will run, and `opaque` is ours to
            // free. If it fails, libvirt may still hold it: leaked rather than risked.
            let ret = unsafe { sys::virConnectUnregisterCloseCallback(self.conn.as_ptr(), Some(on_close)) };
            if ret == 0 {
                // SAFETY: from `into_opaque`, unreachable by libvirt now, freed once.
                unsafe { free_sink(opaque) };
            }
        }
        // Only now can `self.conn` drop its reference: each registration held one too, so the
        // connection closes once the last of them is gone.
    }
}

type GenericFn = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);
type LifecycleFn =
    unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void) -> c_int;
type DeviceAddedFn = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *const c_char, *mut c_void);
type MetadataFn =
    unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, *const c_char, *mut c_void);

fn into_opaque(sink: &Arc<Sink>) -> *mut c_void {
    Box::into_raw(Box::new(Arc::clone(sink))).cast()
}

/// libvirt's `freecb`.
unsafe extern "C" fn free_sink(opaque: *mut c_void) {
    // SAFETY: `opaque` came from `into_opaque` and libvirt calls this once per registration
    // (or the failed-registration path does, and libvirt never will): one Box, freed once.
    drop(unsafe { Box::from_raw(opaque.cast::<Arc<Sink>>()) });
}

/// Runs `make` and hands its event to the sink behind `opaque`, never unwinding into libvirt.
fn deliver(opaque: *mut c_void, make: impl FnOnce() -> Option<Event>) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libvirt passes back the `opaque` of a registration it has not freed yet
        // (it frees it only after the last call returns), a Box<Arc<Sink>> from `into_opaque`.
        let sink = unsafe { &*opaque.cast::<Arc<Sink>>() };
        if let Some(event) = make() {
            sink(event);
        }
    }));
    if outcome.is_err() {
        eprintln!("phbguard: a libvirt event callback panicked; the event is dropped");
    }
}

/// The name and UUID of the domain libvirt passed to a callback.
fn domain_id(dom: sys::virDomainPtr) -> Option<DomainId> {
    if dom.is_null() {
        return None;
    }
    // SAFETY: libvirt passes a valid domain that lives until the callback returns;
    // virDomainRef takes a reference of our own, which `Domain`'s drop releases (virDomainFree).
    let dom = unsafe {
        if sys::virDomainRef(dom) < 0 {
            return None;
        }
        Domain::from_ptr(dom)
    };
    // Both are read from the local object: no call to the daemon from its event thread.
    Some(DomainId {
        name: dom.name().ok()?,
        uuid: dom.uuid_string().ok()?,
    })
}

unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    deliver(opaque, || {
        let domain = domain_id(dom)?;
        match u32::try_from(event).ok()? {
            sys::VIR_DOMAIN_EVENT_DEFINED => {
                let detail = match u32::try_from(detail) {
                    Ok(sys::VIR_DOMAIN_EVENT_DEFINED_ADDED) => Defined::Added,
                    Ok(sys::VIR_DOMAIN_EVENT_DEFINED_UPDATED) => Defined::Updated,
                    _ => Defined::Other(detail),
                };
                Some(Event::Defined { domain, detail })
            }
            sys::VIR_DOMAIN_EVENT_UNDEFINED => Some(Event::Undefined { domain }),
            _ => None,
        }
    });
    0
}

unsafe extern "C" fn on_metadata_change(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    _kind: c_int,
    namespace: *const c_char,
    opaque: *mut c_void,
) {
    deliver(opaque, || {
        let domain = domain_id(dom)?;
        let namespace = (!namespace.is_null()).then(|| {
            // SAFETY: libvirt passes a NUL-terminated string valid for the callback's duration.
            unsafe { CStr::from_ptr(namespace) }
                .to_string_lossy()
                .into_owned()
        });
        Some(Event::MetadataChanged { domain, namespace })
    });
}

unsafe extern "C" fn on_device_added(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    alias: *const c_char,
    opaque: *mut c_void,
) {
    deliver(opaque, || {
        let domain = domain_id(dom)?;
        let alias = if alias.is_null() {
            String::new()
        } else {
            // SAFETY: libvirt passes a NUL-terminated string valid for the callback's duration.
            unsafe { CStr::from_ptr(alias) }.to_string_lossy().into_owned()
        };
        Some(Event::DeviceAdded { domain, alias })
    });
}

unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    deliver(opaque, || {
        let reason = match u32::try_from(reason) {
            Ok(sys::VIR_CONNECT_CLOSE_REASON_ERROR) => CloseReason::Error,
            Ok(sys::VIR_CONNECT_CLOSE_REASON_EOF) => CloseReason::Eof,
            Ok(sys::VIR_CONNECT_CLOSE_REASON_KEEPALIVE) => CloseReason::Keepalive,
            Ok(sys::VIR_CONNECT_CLOSE_REASON_CLIENT) => CloseReason::Client,
            _ => CloseReason::Other(reason),
        };
        Some(Event::Closed { reason })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    // test:///default is one state shared by every connection of the process: names and
    // UUIDs are this test's own.
    const XML: &str = "<domain type='test'><name>phbguard-events-unit</name>\
                       <uuid>1f1b2b8e-5c4d-4c61-9a53-3c1d1e0c0001</uuid><memory>65536</memory>\
                       <os><type>hvm</type></os></domain>";

    /// The next event about this test's domain. Other tests of this process define and
    /// undefine their own domains on the same test:///default meanwhile; their events are not
    /// this test's.
    fn next(rx: &mpsc::Receiver<Event>) -> Event {
        loop {
            let event = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("an event within 10 s");
            let ours = match &event {
                Event::Defined { domain, .. }
                | Event::Undefined { domain }
                | Event::MetadataChanged { domain, .. }
                | Event::DeviceAdded { domain, .. } => domain.name == "phbguard-events-unit",
                Event::Closed { .. } => true,
            };
            if ours {
                return event;
            }
        }
    }

    /// libvirt's test driver runs in this process and delivers events through the same
    /// default event loop a daemon connection uses.
    #[test]
    fn defined_updated_undefined_arrive_and_libvirt_frees_every_sink() {
        start_event_loop().unwrap();
        let conn = Connect::open(Some("test:///default")).unwrap();
        let (tx, rx) = mpsc::channel();
        // Counts the sink's clones: one per registration that libvirt still holds.
        let token = Arc::new(());
        let held = Arc::clone(&token);
        let tx = std::sync::Mutex::new(tx);
        let sub = Subscription::new(&conn, move |e| {
            let _ = &held;
            let _ = tx.lock().unwrap().send(e);
        })
        .unwrap();
        assert_eq!(
            Arc::strong_count(&token),
            2,
            "one sink shared by every registration"
        );

        let dom = conn.define_domain_xml(XML).unwrap();
        let id = DomainId {
            name: "phbguard-events-unit".into(),
            uuid: dom.uuid_string().unwrap(),
        };
        assert_eq!(
            next(&rx),
            Event::Defined {
                domain: id.clone(),
                detail: Defined::Added
            }
        );
        conn.define_domain_xml(XML).unwrap();
        assert_eq!(
            next(&rx),
            Event::Defined {
                domain: id.clone(),
                detail: Defined::Updated
            }
        );
        // What `virsh metadata --config` does: no DEFINED, a METADATA_CHANGE naming the
        // namespace.
        dom.set_metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            Some("<policy mode='warn'/>"),
            Some("phbguard"),
            Some("urn:phbguard:policy:1"),
            sys::VIR_DOMAIN_AFFECT_CONFIG,
        )
        .unwrap();
        assert_eq!(
            next(&rx),
            Event::MetadataChanged {
                domain: id.clone(),
                namespace: Some("urn:phbguard:policy:1".into())
            }
        );
        dom.undefine().unwrap();
        assert_eq!(next(&rx), Event::Undefined { domain: id });

        drop(sub);
        // Every registration's freecb runs: only the test's own reference is left. A callback
        // removed while its event is being dispatched is freed when that dispatch ends, on the
        // event thread, so this may take a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&token) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(Arc::strong_count(&token), 1);
        drop(dom);
        drop(conn);
    }

    #[test]
    fn a_failed_registration_frees_its_sink_and_keeps_nothing() {
        start_event_loop().unwrap();
        let conn = Connect::open(Some("test:///default")).unwrap();
        let first = Subscription::new(&conn, |_| {}).unwrap();
        // libvirt refuses to track the same callback for the same event twice on one
        // connection ("event callback already tracked"): the second registration fails at its
        // first event ID, after its sink was handed over.
        let token = Arc::new(());
        let held = Arc::clone(&token);
        let second = Subscription::new(&conn, move |_| {
            let _ = &held;
        });
        let err = second.err().expect("the second registration fails");
        assert!(
            err.to_string().contains("already tracked"),
            "failed for another reason: {err}"
        );
        // Its sink is freed at once, by the failed call itself, not by `first` or the connection.
        assert_eq!(Arc::strong_count(&token), 1);
        drop(first);
    }
}
