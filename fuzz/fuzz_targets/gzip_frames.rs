//! The gzip request layer: see `sundial_server::fuzzing::any_gzip_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sundial_server::fuzzing::any_gzip_body(data));
