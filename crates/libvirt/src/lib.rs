//! The part of phbguard that talks to libvirt: the connection, host facts from node devices,
//! and reading, fixing and redefining guests. The `phbguard-libvirt` binary's commands and
//! `phbguard watch` are built on it; the engine itself (crates/core) never links libvirt.

// `unsafe_code` is denied for this crate (Cargo.toml [lints]); only `events`, the FFI edge for
// domain events, allows it, and says why each block is sound.

pub mod audit;
pub mod audit_report;
pub mod connect;
pub mod events;
pub mod groups;
pub mod host;
pub mod networks;
pub mod nodedev;
pub mod redefine;
pub mod sysfs_devices;
pub mod watch;
