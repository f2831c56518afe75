//! The gzip request layer's framing and inflation: any body, compressed or not, is either
//! refused or inflated to at most the limit, never more.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sundial_server::gzip_requests::inflate_frames;

/// Small, so that the fuzzer reaches the limit checks often.
const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let frames_in = data.len() / 5 + 1;
    if let Some(Ok(out)) = inflate_frames(Bytes::copy_from_slice(data), LIMIT) {
        // Every output frame is plain and well formed, and the messages fit the limit.
        let mut rest = &out[..];
        let mut total = 0usize;
        let mut frames = 0usize;
        while !rest.is_empty() {
            assert!(rest.len() >= 5);
            assert_eq!(rest[0], 0);
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            assert!(rest.len() >= 5 + len);
            total += len;
            frames += 1;
            rest = &rest[5 + len..];
        }
        assert!(total <= LIMIT, "inflated {total} bytes past the limit");
        assert!(frames <= frames_in);
    }
});
