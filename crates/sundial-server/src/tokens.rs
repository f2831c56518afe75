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

impl TaskToken {
    pub fn encode_bytes(&self) -> Vec<u8> {
        let mut out = vec![TOKEN_MAGIC];
        self.encode(&mut out).expect("Vec has room");
        out
    }

    pub fn decode_bytes(bytes: &[u8]) -> Option<TaskToken> {
        match bytes.split_first() {
            Some((&TOKEN_MAGIC, rest)) => {
                let token = TaskToken::decode(rest).ok()?;
                (!token.run_id.is_empty()).then_some(token)
            }
            _ => None,
        }
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
}
