//! Command validation: see `sundial_engine::fuzzing::any_completion`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sundial_engine::fuzzing::any_completion(data));
