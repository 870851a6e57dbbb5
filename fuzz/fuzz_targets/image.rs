//! Fuzz target `image`: see `fuzz/checks.rs`.
#![no_main]
#[allow(dead_code)] // the target uses one check of the list
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::image(data));
