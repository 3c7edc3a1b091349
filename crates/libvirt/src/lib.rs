//! The part of phbguard that talks to libvirt: the connection, host facts from node devices,
//! and reading, fixing and redefining guests. The `phbguard-libvirt` binary's commands and
//! `phbguard watch` are built on it; the engine itself (crates/core) never links libvirt.

// Only `events` (the FFI edge for domain events) may use `unsafe`; it says so itself.
#![deny(unsafe_code)]

pub mod audit;
pub mod audit_report;
pub mod connect;
pub mod events;
pub mod groups;
pub mod host;
pub mod networks;
pub mod nodedev;
pub mod redefine;
pub mod watch;
