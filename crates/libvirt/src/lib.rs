//! The part of phbguard that talks to libvirt: the connection, host facts from node devices,
//! and reading, fixing and redefining guests. The `phbguard-libvirt` binary's commands and
//! `phbguard watch` are built on it; the engine itself (crates/core) never links libvirt.

pub mod audit;
pub mod audit_report;
pub mod connect;
pub mod groups;
pub mod host;
pub mod networks;
pub mod nodedev;
pub mod redefine;
