//! Search attribute values as the reference server writes them: JSON text in a payload with
//! encoding `json/plain` and the attribute's type name.

use crate::temporal::api::common::v1::Payload;

/// A payload holding `json` (a JSON text) with encoding `json/plain` and type `type_name`
/// (`Keyword`, `KeywordList`, `Datetime`, …).
pub fn json_payload(json: String, type_name: &str) -> Payload {
    Payload {
        metadata: [
            ("encoding".to_string(), b"json/plain".to_vec()),
            ("type".to_string(), type_name.as_bytes().to_vec()),
        ]
        .into_iter()
        .collect(),
        data: json.into_bytes(),
        ..Default::default()
    }
}

/// `s` as a JSON string: in double quotes, with `"`, `\` and control characters escaped.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
