//! The integration tests of the `phbguard` binary and its engine, one test crate with a module
//! per subject (as ripgrep does): one link of the program, one process running them.

mod hook_support;
mod support;

mod admin_libvirt;
mod adversarial;
mod cases;
mod cli;
mod corpus;
mod doc_links;
mod docs;
mod first_hour;
mod fix_as_root;
mod fix_cases;
mod fix_cli;
mod fix_corpus;
mod fix_in_place;
mod fix_libvirt;
mod fix_properties;
mod fix_several;
mod fuzz_regressions;
mod hook_cli;
mod hook_libvirt;
mod libvirt_half;
mod memlock;
mod readme;
mod source_style;
