#![no_main]
//! The property is tests/it/support/fuzz_props.rs::fix_recheck (shared with tests/it/fuzz_regressions.rs).

#[path = "../../tests/it/support/fuzz_props.rs"]
mod fuzz_props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_props::fix_recheck(data));
