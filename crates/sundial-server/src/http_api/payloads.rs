//! Temporal's JSON shorthand for payloads, applied on top of protobuf's canonical JSON.
//!
//! In canonical JSON a `Payload` is `{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}`.
//! Temporal's HTTP API (and `temporal` CLI) write and read these instead:
//!
//! - a `json/plain` payload with no other metadata is the JSON value itself;
//! - a `json/protobuf` payload with a `messageType` (and nothing else) is its JSON object with
//!   the type under `_protoMessageType`;
//! - a `binary/null` payload is `{"metadata": {"encoding": "YmluYXJ5L251bGw="}}` (and `null`
//!   reads as one);
//! - `Payloads` whose every payload has a shorthand is the array of them; otherwise it stays
//!   `{"payloads": [...]}`, each payload in its own best form.
//!
//! Reading: a value that looks like a canonical payload (exactly `metadata` and `data`, every
//! value base64) is taken as one; anything else is shorthand. JSON written into a payload's data
//! has its object keys sorted and `<`, `>`, `&` escaped, as the reference writes it.
//!
//! Both directions walk the JSON alongside the message descriptors, so payloads are found at
//! any depth: in maps (memo, header, search attributes), lists, and `google.protobuf.Any`
//! details.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use serde_json::{Map, Value};

const PAYLOAD: &str = "temporal.api.common.v1.Payload";
const PAYLOADS: &str = "temporal.api.common.v1.Payloads";
const MESSAGE_TYPE_KEY: &str = "_protoMessageType";
/// `base64("binary/null")`.
const BINARY_NULL: &str = "YmluYXJ5L251bGw=";

/// Rewrites shorthand payloads in `value` (JSON for a `desc` message, as a client wrote it)
/// into canonical JSON.
pub fn expand(value: &mut Value, desc: &MessageDescriptor) -> Result<(), String> {
    match desc.full_name() {
        PAYLOAD => payload_in(value),
        PAYLOADS => {
            if let Value::Array(items) = value {
                let items = std::mem::take(items);
                let mut object = Map::new();
                object.insert("payloads".into(), Value::Array(items));
                *value = Value::Object(object);
            }
            if let Some(Value::Array(items)) = value.get_mut("payloads") {
                for item in items {
                    payload_in(item)?;
                }
            }
            Ok(())
        }
        _ => children(value, desc, &mut |child, d| expand(child, d), false),
    }
}

/// Rewrites the payloads in `value` (canonical JSON of a `desc` message) into their shorthand,
/// and sorts the keys of map fields (as the reference does; the messages' own fields keep
/// field order).
pub fn shorten(value: &mut Value, desc: &MessageDescriptor) {
    match desc.full_name() {
        PAYLOAD => {
            payload_out(value);
        }
        PAYLOADS => {
            let Some(Value::Array(items)) = value.get_mut("payloads") else {
                if value.as_object().is_some_and(Map::is_empty) {
                    *value = Value::Array(Vec::new());
                }
                return;
            };
            let mut all = true;
            for item in items.iter_mut() {
                all &= payload_out(item);
            }
            if all {
                *value = Value::Array(std::mem::take(items));
            }
        }
        _ => {
            let _ = children(
                value,
                desc,
                &mut |child, d| {
                    shorten(child, d);
                    Ok(())
                },
                true,
            );
        }
    }
}

/// Calls `visit` on every message-typed value directly inside `value` (a JSON object for a
/// `desc` message): singular fields, list elements, map values, and the message packed in a
/// `google.protobuf.Any`. With `sort_maps`, map fields' keys are sorted on the way.
fn children(
    value: &mut Value,
    desc: &MessageDescriptor,
    visit: &mut dyn FnMut(&mut Value, &MessageDescriptor) -> Result<(), String>,
    sort_maps: bool,
) -> Result<(), String> {
    let Value::Object(object) = value else {
        return Ok(());
    };
    let pool = desc.parent_pool();
    if desc.full_name() == "google.protobuf.Any" {
        return any_children(object, pool, visit, sort_maps);
    }
    if desc.package_name() == "google.protobuf" {
        // The other well-known types hold no Temporal messages.
        return Ok(());
    }
    for (key, child) in object.iter_mut() {
        let Some(field) = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key))
        else {
            continue;
        };
        let Kind::Message(message) = field.kind() else {
            continue;
        };
        if field.is_map() {
            let Value::Object(entries) = child else {
                continue;
            };
            if sort_maps {
                entries.sort_keys();
            }
            if let Kind::Message(values) = message.map_entry_value_field().kind() {
                for entry in entries.values_mut() {
                    visit(entry, &values)?;
                }
            }
        } else if field.is_list() {
            if let Value::Array(items) = child {
                for item in items {
                    visit(item, &message)?;
                }
            }
        } else {
            visit(child, &message)?;
        }
    }
    Ok(())
}

/// The message inside an `Any`: its fields sit beside `@type` (or under `value` for a
/// well-known type).
fn any_children(
    object: &mut Map<String, Value>,
    pool: &DescriptorPool,
    visit: &mut dyn FnMut(&mut Value, &MessageDescriptor) -> Result<(), String>,
    sort_maps: bool,
) -> Result<(), String> {
    let Some(type_url) = object.get("@type").and_then(Value::as_str) else {
        return Ok(());
    };
    let name = type_url.rsplit('/').next().unwrap_or_default();
    let Some(inner) = pool.get_message_by_name(name) else {
        return Ok(());
    };
    if inner.package_name() == "google.protobuf" {
        return match object.get_mut("value") {
            Some(v) => visit(v, &inner),
            None => Ok(()),
        };
    }
    let type_url = object.remove("@type").unwrap_or(Value::Null);
    let mut fields = Value::Object(std::mem::take(object));
    let result = match inner.full_name() {
        PAYLOAD | PAYLOADS => visit(&mut fields, &inner),
        _ => children(&mut fields, &inner, visit, sort_maps),
    };
    object.insert("@type".into(), type_url);
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    result
}

/// Base64 as protobuf's JSON accepts it (standard or URL-safe, padded or not).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let engine = match (text.contains(['-', '_']), text.len().is_multiple_of(4)) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    engine.decode(text).ok()
}

/// Whether `object` is a canonical payload (and, if so, normalizes its base64).
fn canonical_payload(object: &mut Map<String, Value>) -> bool {
    let Some(Value::Object(metadata)) = object.get("metadata") else {
        return false;
    };
    let Some(encoding) = metadata.get("encoding") else {
        return false;
    };
    if !object.contains_key("data") && encoding.as_str() == Some(BINARY_NULL) {
        object.clear();
        object.insert(
            "metadata".into(),
            serde_json::json!({ "encoding": BINARY_NULL }),
        );
        return true;
    }
    if object.len() != 2 {
        return false;
    }
    let Some(data) = object
        .get("data")
        .and_then(Value::as_str)
        .and_then(base64_decode)
    else {
        return false;
    };
    let mut normalized = Map::new();
    for (key, value) in metadata {
        let Some(bytes) = value.as_str().and_then(base64_decode) else {
            return false;
        };
        normalized.insert(key.clone(), Value::String(STANDARD.encode(bytes)));
    }
    object.insert("metadata".into(), Value::Object(normalized));
    object.insert("data".into(), Value::String(STANDARD.encode(data)));
    true
}

/// One payload as a client wrote it, into canonical JSON.
fn payload_in(value: &mut Value) -> Result<(), String> {
    let metadata: Vec<(&str, String)>;
    let data: Vec<u8>;
    if let Value::Object(object) = value
        && canonical_payload(object)
    {
        return Ok(());
    }
    match value {
        Value::Null => {
            *value = serde_json::json!({ "metadata": { "encoding": BINARY_NULL } });
            return Ok(());
        }
        Value::Object(object) if object.contains_key(MESSAGE_TYPE_KEY) => {
            let Some(Value::String(message_type)) = object.remove(MESSAGE_TYPE_KEY) else {
                return Err(format!(
                    "payload: {MESSAGE_TYPE_KEY} must be a string naming the message type"
                ));
            };
            metadata = vec![
                ("encoding", "json/protobuf".into()),
                ("messageType", message_type),
            ];
            data = reference_json(value);
        }
        _ => {
            metadata = vec![("encoding", "json/plain".into())];
            data = reference_json(value);
        }
    }
    let metadata: Map<String, Value> = metadata
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(STANDARD.encode(v))))
        .collect();
    let mut object = Map::new();
    object.insert("metadata".into(), Value::Object(metadata));
    object.insert("data".into(), Value::String(STANDARD.encode(data)));
    *value = Value::Object(object);
    Ok(())
}

/// One canonical payload into its shorthand, when it has one. Returns whether it did.
fn payload_out(value: &mut Value) -> bool {
    let Value::Object(object) = value else {
        return false;
    };
    let mut metadata = std::collections::BTreeMap::new();
    if let Some(Value::Object(entries)) = object.get("metadata") {
        for (key, v) in entries {
            let Some(bytes) = v.as_str().and_then(base64_decode) else {
                return false;
            };
            metadata.insert(key.as_str(), bytes);
        }
    }
    let data = match object.get("data").and_then(Value::as_str) {
        Some(text) => match base64_decode(text) {
            Some(data) => data,
            None => return false,
        },
        None => Vec::new(),
    };
    let encoding = metadata.get("encoding").map(Vec::as_slice);
    let shorthand = match encoding {
        Some(b"binary/null") => serde_json::json!({ "metadata": { "encoding": BINARY_NULL } }),
        Some(b"json/plain") if metadata.len() == 1 => {
            match serde_json::from_slice::<Value>(&data) {
                Ok(parsed) => sorted(parsed),
                Err(_) => return false,
            }
        }
        Some(b"json/protobuf") if metadata.len() == 2 => {
            let Some(message_type) = metadata
                .get("messageType")
                .filter(|t| !t.is_empty())
                .and_then(|t| String::from_utf8(t.clone()).ok())
            else {
                return false;
            };
            match serde_json::from_slice::<Value>(&data) {
                Ok(Value::Object(mut fields)) => {
                    fields.insert(MESSAGE_TYPE_KEY.into(), Value::String(message_type));
                    sorted(Value::Object(fields))
                }
                _ => return false,
            }
        }
        _ => return false,
    };
    *value = shorthand;
    true
}

/// `value` with every object's keys sorted and integral numbers written as integers: how the
/// reference re-encodes JSON it decoded into generic values.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> =
                object.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Value::from(f as i64)
            }
            _ => Value::Number(n),
        },
        other => other,
    }
}

/// The bytes the reference stores for a shorthand value: compact JSON, sorted keys, HTML
/// characters escaped.
fn reference_json(value: &Value) -> Vec<u8> {
    let text = sorted(value.clone()).to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(sundial_proto::DESCRIPTOR_SET).unwrap()
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn start_request(pool: &DescriptorPool) -> MessageDescriptor {
        pool.get_message_by_name("temporal.api.workflowservice.v1.StartWorkflowExecutionRequest")
            .unwrap()
    }

    #[test]
    fn shorthand_input_becomes_canonical_payloads() {
        let pool = pool();
        let mut value = json!({
            "input": ["hello", {"z": 1, "a": "<&>"}, null],
            "memo": {"fields": {
                "p": {"_protoMessageType": "foo.Bar", "x": 1.0},
                "raw": {"metadata": {"encoding": b64("binary/plain")}, "data": "AAEC"},
            }},
            "header": {"fields": {"h": 7}},
        });
        expand(&mut value, &start_request(&pool)).unwrap();
        assert_eq!(
            value["input"]["payloads"][0],
            json!({"metadata": {"encoding": b64("json/plain")}, "data": b64("\"hello\"")})
        );
        assert_eq!(
            value["input"]["payloads"][1]["data"],
            json!(b64(r#"{"a":"\u003c\u0026\u003e","z":1}"#))
        );
        assert_eq!(
            value["input"]["payloads"][2],
            json!({"metadata": {"encoding": BINARY_NULL}})
        );
        assert_eq!(
            value["memo"]["fields"]["p"],
            json!({"metadata": {"encoding": b64("json/protobuf"), "messageType": b64("foo.Bar")},
                   "data": b64(r#"{"x":1}"#)})
        );
        assert_eq!(
            value["memo"]["fields"]["raw"],
            json!({"metadata": {"encoding": b64("binary/plain")}, "data": "AAEC"})
        );
        assert_eq!(value["header"]["fields"]["h"]["data"], json!(b64("7")));
    }

    #[test]
    fn canonical_output_becomes_shorthand_where_it_can() {
        let pool = pool();
        let desc = start_request(&pool);
        let plain = |s: &str| json!({"metadata": {"encoding": b64("json/plain")}, "data": b64(s)});
        let binary = json!({"metadata": {"encoding": b64("binary/plain")}, "data": "AAEC"});
        let mut value = json!({
            "input": {"payloads": [plain("\"hi\""), plain(r#"{"z":1,"a":2}"#)]},
            "memo": {"fields": {"b": {"payloads": []}, "a": binary.clone(),
                                "c": {"metadata": {"encoding": b64("json/plain"), "type": b64("Keyword")}, "data": b64("1")}}},
        });
        shorten(&mut value, &desc);
        assert_eq!(value["input"], json!(["hi", {"a": 2, "z": 1}]));
        // Map keys come out sorted; payloads without a shorthand stay canonical.
        let keys: Vec<&String> = value["memo"]["fields"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(value["memo"]["fields"]["a"], binary);
        assert_eq!(value["memo"]["fields"]["c"]["data"], json!(b64("1")));

        let mut mixed = json!({"input": {"payloads": [plain("1"), binary.clone()]}});
        shorten(&mut mixed, &desc);
        assert_eq!(mixed["input"], json!({"payloads": [1, binary]}));
    }

    #[test]
    fn payloads_inside_any_details_are_shortened() {
        let pool = pool();
        let status = pool.get_message_by_name("google.rpc.Status").unwrap();
        let mut value = json!({"code": 3, "details": [{
            "@type": "type.googleapis.com/temporal.api.failure.v1.Failure",
            "message": "m",
            "applicationFailureInfo": {"details": {"payloads": [
                {"metadata": {"encoding": b64("json/plain")}, "data": b64("[1]")}]}}
        }]});
        shorten(&mut value, &status);
        assert_eq!(
            value["details"][0]["applicationFailureInfo"]["details"],
            json!([[1]])
        );
        assert_eq!(
            value["details"][0]["@type"],
            json!("type.googleapis.com/temporal.api.failure.v1.Failure")
        );
    }

    #[test]
    fn a_bad_message_type_key_is_refused() {
        let pool = pool();
        let mut value = json!({"input": [{"_protoMessageType": 1}]});
        assert!(expand(&mut value, &start_request(&pool)).is_err());
    }
}
