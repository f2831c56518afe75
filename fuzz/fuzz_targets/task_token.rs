//! Task and page tokens: see `sundial_server::fuzzing::any_token`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sundial_server::fuzzing::any_token(data));
