//! Task tokens and history page tokens come back from clients as opaque bytes: any bytes
//! decode to a token or to nothing, and a decoded token survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_server::tokens::{HistoryPageToken, TaskToken};

fuzz_target!(|data: &[u8]| {
    if let Some(token) = TaskToken::decode_bytes(data) {
        assert!(!token.run_id.is_empty());
        assert_eq!(TaskToken::decode_bytes(&token.encode_bytes()), Some(token));
    }
    if let Some(page) = HistoryPageToken::decode_bytes(data) {
        assert!(page.next_event_id > 0);
        assert_eq!(
            HistoryPageToken::decode_bytes(&page.encode_bytes()),
            Some(page)
        );
    }
});
