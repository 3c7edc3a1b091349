//! The integration tests of `phbguard-libvirt`, one test crate with a module per subject: one
//! link of the program, one process running them.

mod audit;
mod fix_domain_libvirtd;
mod read_only_libvirtd;
mod redefine;
mod rule_cases;
mod watch_libvirt;
