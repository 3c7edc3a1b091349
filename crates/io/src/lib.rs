//! The part of phbguard that touches the system, apart from the engine (phbguard-core), which
//! only decides: what is read is bounded and never blocks, and what is written is replaced
//! whole.
//!
//! [`input`] reads domain XML from files and stdin; [`policy_file`] reads the policy file;
//! [`sysfs`] reads host facts from a sysfs tree; [`syslog`] sends the lines
//! `phbguard_core::log_line` builds; [`replace`] writes `fix --in-place`'s result over a file.

pub mod input;
pub mod policy_file;
pub mod replace;
pub mod sysfs;
pub mod syslog;
