//! The list query language: see `sundial_store::fuzzing::any_query`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sundial_store::fuzzing::any_query(data));
