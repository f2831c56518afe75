//! Task tokens and history page tokens: opaque bytes to clients, protobuf inside.

use prost::Message;

/// Names one dispatch of a workflow task or one attempt of an activity.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskToken {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub workflow_id: String,
    #[prost(string, tag = "3")]
    pub run_id: String,
    #[prost(int64, tag = "4")]
    pub scheduled_event_id: i64,
    /// Workflow tasks: the dispatch sequence number. Activities: the attempt.
    #[prost(int64, tag = "5")]
    pub seq_or_attempt: i64,
    #[prost(bool, tag = "6")]
    pub is_activity: bool,
    #[prost(string, tag = "7")]
    pub activity_id: String,
    /// Non-zero for a query task.
    #[prost(uint64, tag = "8")]
    pub query_id: u64,
}

/// Marks tokens as ours, so random bytes are refused cleanly.
const TOKEN_MAGIC: u8 = 0x5d;

/// `message` behind its `magic` byte.
fn encode_marked(magic: u8, message: &impl Message) -> Vec<u8> {
    let mut out = vec![magic];
    message.encode(&mut out).expect("Vec has room");
    out
}

/// The message behind `magic`, if `bytes` hold one.
fn decode_marked<M: Message + Default>(magic: u8, bytes: &[u8]) -> Option<M> {
    match bytes.split_first() {
        Some((&first, rest)) if first == magic => M::decode(rest).ok(),
        _ => None,
    }
}

impl TaskToken {
    pub fn encode_bytes(&self) -> Vec<u8> {
        encode_marked(TOKEN_MAGIC, self)
    }

    pub fn decode_bytes(bytes: &[u8]) -> Option<TaskToken> {
        decode_marked::<TaskToken>(TOKEN_MAGIC, bytes).filter(|t| !t.run_id.is_empty())
    }
}

/// Names one attempt of a Nexus operation's start or cancel request: the caller's run, the
/// operation's scheduled event, which request and which attempt.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NexusTaskToken {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub workflow_id: String,
    #[prost(string, tag = "3")]
    pub run_id: String,
    #[prost(int64, tag = "4")]
    pub scheduled_event_id: i64,
    #[prost(bool, tag = "5")]
    pub cancel: bool,
    #[prost(int32, tag = "6")]
    pub attempt: i32,
}

/// Marks Nexus task tokens (another message than [`TaskToken`]).
const NEXUS_TOKEN_MAGIC: u8 = 0x5e;

impl NexusTaskToken {
    pub fn encode_bytes(&self) -> Vec<u8> {
        encode_marked(NEXUS_TOKEN_MAGIC, self)
    }

    pub fn decode_bytes(bytes: &[u8]) -> Option<NexusTaskToken> {
        decode_marked::<NexusTaskToken>(NEXUS_TOKEN_MAGIC, bytes).filter(|t| !t.run_id.is_empty())
    }
}

/// What the completion callback of a Nexus operation's handler workflow names: the operation
/// on its caller's run. Sent to the handler as the `temporal-callback-token` header, which the
/// handler puts on the workflow it starts; base64 (URL-safe, unpadded) of the message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NexusCallbackToken {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub workflow_id: String,
    #[prost(string, tag = "3")]
    pub run_id: String,
    #[prost(int64, tag = "4")]
    pub scheduled_event_id: i64,
}

/// The header of a Nexus start request that carries the callback token.
pub const CALLBACK_TOKEN_HEADER: &str = "temporal-callback-token";

impl NexusCallbackToken {
    pub fn encode_string(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.encode_to_vec())
    }

    pub fn decode_string(text: &str) -> Option<NexusCallbackToken> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()?;
        let token = NexusCallbackToken::decode(bytes.as_slice()).ok()?;
        (!token.run_id.is_empty() && token.scheduled_event_id > 0).then_some(token)
    }
}

/// Where the next page of a history read starts.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoryPageToken {
    #[prost(string, tag = "1")]
    pub run_id: String,
    #[prost(int64, tag = "2")]
    pub next_event_id: i64,
}

impl HistoryPageToken {
    pub fn encode_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    pub fn decode_bytes(bytes: &[u8]) -> Option<HistoryPageToken> {
        HistoryPageToken::decode(bytes)
            .ok()
            .filter(|t| t.next_event_id > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_tokens_round_trip_and_reject_garbage() {
        let token = TaskToken {
            namespace: "default".into(),
            workflow_id: "w".into(),
            run_id: "r".into(),
            scheduled_event_id: 5,
            seq_or_attempt: 2,
            is_activity: true,
            activity_id: "1".into(),
            query_id: 0,
        };
        assert_eq!(TaskToken::decode_bytes(&token.encode_bytes()), Some(token));
        assert_eq!(TaskToken::decode_bytes(b"garbage"), None);
        assert_eq!(TaskToken::decode_bytes(&[]), None);
    }

    #[test]
    fn nexus_tokens_round_trip_and_are_not_task_tokens() {
        let token = NexusTaskToken {
            namespace: "default".into(),
            workflow_id: "w".into(),
            run_id: "r".into(),
            scheduled_event_id: 5,
            cancel: true,
            attempt: 2,
        };
        let bytes = token.encode_bytes();
        assert_eq!(NexusTaskToken::decode_bytes(&bytes), Some(token));
        assert_eq!(TaskToken::decode_bytes(&bytes), None);
        let callback = NexusCallbackToken {
            namespace: "default".into(),
            workflow_id: "w".into(),
            run_id: "r".into(),
            scheduled_event_id: 5,
        };
        let text = callback.encode_string();
        assert_eq!(NexusCallbackToken::decode_string(&text), Some(callback));
        assert_eq!(NexusCallbackToken::decode_string("not base64!"), None);
    }
}
