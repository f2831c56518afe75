//! JSON to protobuf and back for the HTTP API, from the descriptors of the API.
//!
//! The JSON is protobuf's canonical mapping (camelCase names, either name accepted on input,
//! enums as names, 64-bit integers as strings, `Duration`/`Timestamp` as strings), done by
//! `prost-reflect`, plus Temporal's payload shorthand ([`super::payloads`]).
//!
//! A request message is assembled as the reference's gateway does: the body fills the field the
//! binding names (`*`: the whole message), the path's variables are set over it, and when the
//! body is not `*` the query string fills other fields (`?query=...&pageSize=10`, nested fields
//! as `execution.runId`; unknown names are ignored).

use super::payloads;
use super::routes::Binding;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    SerializeOptions,
};
use serde_json::{Map, Value};
use sundial_proto::HttpRoute;

/// The descriptors of the whole API.
pub struct Codec {
    pool: DescriptorPool,
}

/// What is wrong with a request, in words for the client (an InvalidArgument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl Codec {
    pub fn new() -> anyhow::Result<Codec> {
        let pool = DescriptorPool::decode(sundial_proto::DESCRIPTOR_SET)
            .map_err(|e| anyhow::anyhow!("decoding the API's descriptors: {e}"))?;
        Ok(Codec { pool })
    }

    fn message(&self, name: &str) -> Result<MessageDescriptor, BadRequest> {
        self.pool
            .get_message_by_name(name)
            .ok_or_else(|| BadRequest(format!("no descriptor for {name}")))
    }

    /// The encoded request message for `route` from the path's bindings, the query string and
    /// the body.
    pub fn request(
        &self,
        route: &HttpRoute,
        bindings: &[Binding],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<u8>, BadRequest> {
        let desc = self.message(route.input)?;
        let mut json = match route.body {
            "" => Value::Object(Map::new()),
            "*" => parse_body(body)?,
            field => {
                let mut object = Map::new();
                if !body.iter().all(u8::is_ascii_whitespace) {
                    object.insert(field.to_string(), parse_body(body)?);
                }
                Value::Object(object)
            }
        };
        if !json.is_object() {
            return Err(BadRequest("the request body must be a JSON object".into()));
        }
        if route.body != "*"
            && let Some(query) = query
        {
            for (key, value) in form_pairs(query)? {
                let path: Vec<String> = key.split('.').map(str::to_string).collect();
                // Names that are no field of the request are ignored, as by the reference.
                match set_field(&mut json, &desc, &path, &value, true) {
                    Ok(()) | Err(Unset::NoSuchField) => {}
                    Err(Unset::Bad(message)) => {
                        return Err(BadRequest(format!("query parameter {key:?}: {message}")));
                    }
                }
            }
        }
        for binding in bindings {
            match set_field(&mut json, &desc, &binding.field, &binding.value, false) {
                Ok(()) => {}
                Err(Unset::NoSuchField) => {
                    return Err(BadRequest(format!(
                        "path variable {} names no field of {}",
                        binding.field.join("."),
                        desc.full_name()
                    )));
                }
                Err(Unset::Bad(message)) => {
                    return Err(BadRequest(format!(
                        "path variable {}: {message}",
                        binding.field.join(".")
                    )));
                }
            }
        }
        payloads::expand(&mut json, &desc).map_err(BadRequest)?;
        let message =
            DynamicMessage::deserialize_with_options(desc, json, &DeserializeOptions::new())
                .map_err(|e| BadRequest(e.to_string()))?;
        Ok(message.encode_to_vec())
    }

    /// The JSON of an encoded message of type `name`.
    pub fn to_json(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        let desc = self
            .pool
            .get_message_by_name(name)
            .ok_or_else(|| anyhow::anyhow!("no descriptor for {name}"))?;
        let message = DynamicMessage::decode(desc.clone(), bytes)
            .map_err(|e| anyhow::anyhow!("decoding {name}: {e}"))?;
        let mut json = message
            .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
            .map_err(|e| anyhow::anyhow!("{name} as JSON: {e}"))?;
        payloads::shorten(&mut json, &desc);
        Ok(serde_json::to_vec(&json)?)
    }

    /// The body of an error answer: `google.rpc.Status` as JSON, with the status's details.
    pub fn status_json(&self, status: &tonic::Status) -> Vec<u8> {
        let code = status.code() as i32;
        let fallback = || {
            serde_json::json!({ "code": code, "message": status.message() })
                .to_string()
                .into_bytes()
        };
        if status.details().is_empty() {
            return fallback();
        }
        // The details are an encoded google.rpc.Status; keep its details, but the code and
        // message the client saw in the gRPC status.
        let Ok(details) = GoogleStatus::decode(status.details()) else {
            return fallback();
        };
        let rebuilt = GoogleStatus {
            code,
            message: status.message().to_string(),
            details: details.details,
        };
        self.to_json("google.rpc.Status", &rebuilt.encode_to_vec())
            .unwrap_or_else(|_| fallback())
    }
}

use sundial_proto::google::rpc::Status as GoogleStatus;

fn parse_body(body: &[u8]) -> Result<Value, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| BadRequest(format!("the request body: {e}")))
}

/// The `key=value` pairs of a query string, `+` and `%XX` decoded.
fn form_pairs(query: &str) -> Result<Vec<(String, String)>, BadRequest> {
    let decode = |text: &str| -> Result<String, BadRequest> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b'%' => {
                    let byte = text
                        .get(i + 1..i + 3)
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                        .ok_or_else(|| BadRequest(format!("bad escape in query {text:?}")))?;
                    out.push(byte);
                    i += 3;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| BadRequest(format!("query {text:?} is not UTF-8")))
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

enum Unset {
    NoSuchField,
    Bad(String),
}

fn find_field(desc: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    desc.get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
}

/// Sets the field at `path` (proto or JSON names) of the JSON object `json` (a `desc` message)
/// from `text`, creating the objects on the way. A repeated field gets `text` appended when
/// `append`, otherwise it becomes `[text]`.
fn set_field(
    json: &mut Value,
    desc: &MessageDescriptor,
    path: &[String],
    text: &str,
    append: bool,
) -> Result<(), Unset> {
    let Some((first, rest)) = path.split_first() else {
        return Err(Unset::NoSuchField);
    };
    let field = find_field(desc, first).ok_or(Unset::NoSuchField)?;
    let Value::Object(object) = json else {
        return Err(Unset::Bad(format!("{first} is not an object")));
    };
    // The body may already name this field by either name: keep to its spelling.
    let key = if object.contains_key(field.name()) {
        field.name().to_string()
    } else {
        field.json_name().to_string()
    };
    if rest.is_empty() {
        if field.is_map() {
            return Err(Unset::Bad("map fields cannot be set from the URL".into()));
        }
        let value = scalar(&field.kind(), text).map_err(Unset::Bad)?;
        if field.is_list() {
            let entry = object
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()));
            match entry {
                Value::Array(items) if append => items.push(value),
                other => *other = Value::Array(vec![value]),
            }
        } else {
            object.insert(key, value);
        }
        return Ok(());
    }
    let Kind::Message(inner) = field.kind() else {
        return Err(Unset::Bad(format!("{first} is not a message")));
    };
    if field.is_list() || field.is_map() {
        return Err(Unset::Bad(format!(
            "{first} is repeated; its fields cannot be set from the URL"
        )));
    }
    let child = object
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    set_field(child, &inner, rest, text, append)
}

/// The JSON value for a field of `kind` written as `text` in a URL.
fn scalar(kind: &Kind, text: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("{text:?} is not true or false")),
        },
        Kind::Enum(_) => match text.parse::<i32>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(text.to_string()),
        },
        Kind::Message(m) => match m.full_name() {
            "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value" => Value::String(text.to_string()),
            "google.protobuf.BoolValue" => return scalar(&Kind::Bool, text),
            other => return Err(format!("a {other} cannot be written in a URL")),
        },
        // Strings, bytes (base64) and numbers: protobuf's JSON reads all of them from strings.
        _ => Value::String(text.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::routes::{Match, Router};
    use super::*;
    use base64::Engine;

    fn find(method: &str, path: &str) -> (&'static HttpRoute, Vec<Binding>) {
        let router = Router::new(sundial_proto::HTTP_ROUTES).unwrap();
        match router.find(method, path) {
            Match::Found { route, bindings } => (route, bindings),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn start_request_from_body_and_path() {
        use sundial_proto::temporal::api::workflowservice::v1::StartWorkflowExecutionRequest;
        let codec = Codec::new().unwrap();
        let (route, bindings) = find("POST", "/api/v1/namespaces/default/workflows/wf-1");
        let body = br#"{"workflowType":{"name":"W"},"task_queue":{"name":"q"},
            "input":["hi",{"b":2,"a":1}],"workflowRunTimeout":"1.5s","workflowId":"ignored",
            "memo":{"fields":{"m":true}}}"#;
        let bytes = codec.request(route, &bindings, None, body).unwrap();
        let request = StartWorkflowExecutionRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(request.namespace, "default");
        assert_eq!(request.workflow_id, "wf-1");
        assert_eq!(request.workflow_type.unwrap().name, "W");
        assert_eq!(request.task_queue.unwrap().name, "q");
        let input = request.input.unwrap().payloads;
        assert_eq!(input[0].data, b"\"hi\"");
        assert_eq!(input[0].metadata["encoding"], b"json/plain");
        assert_eq!(input[1].data, br#"{"a":1,"b":2}"#);
        let timeout = request.workflow_run_timeout.unwrap();
        assert_eq!((timeout.seconds, timeout.nanos), (1, 500_000_000));
        assert_eq!(request.memo.unwrap().fields["m"].data, b"true");
    }

    #[test]
    fn query_string_fills_the_fields_the_path_does_not() {
        use sundial_proto::temporal::api::workflowservice::v1::{
            DescribeWorkflowExecutionRequest, ListWorkflowExecutionsRequest,
        };
        let codec = Codec::new().unwrap();
        let (route, bindings) = find("GET", "/api/v1/namespaces/ns/workflows");
        let token = base64::engine::general_purpose::STANDARD.encode(b"\x01\x02");
        let query = format!(
            "query=WorkflowType%3D%22x%22+AND+1&pageSize=5&nextPageToken={}&unknown=1",
            token.replace('=', "%3D")
        );
        let bytes = codec.request(route, &bindings, Some(&query), b"").unwrap();
        let list = ListWorkflowExecutionsRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(list.namespace, "ns");
        assert_eq!(list.query, "WorkflowType=\"x\" AND 1");
        assert_eq!(list.page_size, 5);
        assert_eq!(list.next_page_token, b"\x01\x02");

        let (route, bindings) = find("GET", "/api/v1/namespaces/ns/workflows/wf");
        let bytes = codec
            .request(route, &bindings, Some("execution.run_id=r1"), b"")
            .unwrap();
        let describe = DescribeWorkflowExecutionRequest::decode(bytes.as_slice()).unwrap();
        let execution = describe.execution.unwrap();
        assert_eq!(
            (execution.workflow_id.as_str(), execution.run_id.as_str()),
            ("wf", "r1")
        );

        let (route, bindings) = find("GET", "/api/v1/namespaces/ns/workflows");
        let bad = codec.request(route, &bindings, Some("pageSize=abc"), b"");
        assert!(bad.is_err());
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        let codec = Codec::new().unwrap();
        let (route, bindings) = find("POST", "/api/v1/namespaces/default/workflows/wf-1");
        let BadRequest(unknown) = codec
            .request(route, &bindings, None, br#"{"bogus":1}"#)
            .unwrap_err();
        assert!(unknown.contains("bogus"), "{unknown}");
        assert!(codec.request(route, &bindings, None, b"{bad").is_err());
        assert!(codec.request(route, &bindings, None, b"[1]").is_err());
        // An empty body is an empty message.
        assert!(codec.request(route, &bindings, None, b"").is_ok());
    }

    #[test]
    fn responses_are_protojson_with_shorthand() {
        use sundial_proto::temporal::api::common::v1::{Payload, Payloads, WorkflowExecution};
        use sundial_proto::temporal::api::history::v1::{
            HistoryEvent, WorkflowExecutionStartedEventAttributes, history_event::Attributes,
        };
        let codec = Codec::new().unwrap();
        let event = HistoryEvent {
            event_id: 1,
            event_time: Some(prost_wkt_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000_000,
            }),
            event_type: 1,
            attributes: Some(Attributes::WorkflowExecutionStartedEventAttributes(
                WorkflowExecutionStartedEventAttributes {
                    input: Some(Payloads {
                        payloads: vec![Payload {
                            metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
                            data: b"{\"k\":[1,2]}".to_vec(),
                            ..Default::default()
                        }],
                    }),
                    workflow_run_timeout: Some(prost_wkt_types::Duration {
                        seconds: 10,
                        nanos: 0,
                    }),
                    parent_workflow_execution: Some(WorkflowExecution::default()),
                    attempt: 1,
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let json = codec
            .to_json(
                "temporal.api.history.v1.HistoryEvent",
                &event.encode_to_vec(),
            )
            .unwrap();
        let text = String::from_utf8(json).unwrap();
        assert_eq!(
            text,
            r#"{"eventId":"1","eventTime":"2023-11-14T22:13:20.005Z","eventType":"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED","workflowExecutionStartedEventAttributes":{"parentWorkflowExecution":{},"input":[{"k":[1,2]}],"workflowRunTimeout":"10s","attempt":1}}"#
        );
    }

    #[test]
    fn error_bodies_carry_code_message_and_details() {
        let codec = Codec::new().unwrap();
        let plain = tonic::Status::invalid_argument("no");
        assert_eq!(
            String::from_utf8(codec.status_json(&plain)).unwrap(),
            r#"{"code":3,"message":"no"}"#
        );
        let detail = prost_wkt_types::Any {
            type_url: "type.googleapis.com/temporal.api.errordetails.v1.NamespaceNotFoundFailure"
                .into(),
            value: sundial_proto::temporal::api::errordetails::v1::NamespaceNotFoundFailure {
                namespace: "nope".into(),
            }
            .encode_to_vec(),
        };
        let details = GoogleStatus {
            code: 5,
            message: "x".into(),
            details: vec![detail],
        };
        let status = tonic::Status::with_details(
            tonic::Code::NotFound,
            "Namespace nope is not found.",
            details.encode_to_vec().into(),
        );
        assert_eq!(
            String::from_utf8(codec.status_json(&status)).unwrap(),
            r#"{"code":5,"message":"Namespace nope is not found.","details":[{"@type":"type.googleapis.com/temporal.api.errordetails.v1.NamespaceNotFoundFailure","namespace":"nope"}]}"#
        );
    }
}
