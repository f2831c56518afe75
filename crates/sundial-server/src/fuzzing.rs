//! Properties the coverage-guided fuzz targets (`fuzz/`) check, kept here so the same checks
//! also run in the ordinary test suite: the tests below feed every property (these and the
//! store's and engine's) seeds and random mutations of them for a moment each, on the stable
//! toolchain. `scripts/fuzz.sh` runs the coverage-guided targets.

use crate::gzip_requests::inflate_frames;
use crate::tokens::{HistoryPageToken, TaskToken};
use bytes::Bytes;

/// Small, so that the fuzzer reaches the limit checks often.
const LIMIT: usize = 64 * 1024;

/// The gzip request layer's framing and inflation: any body, compressed or not, is either
/// refused or inflated to at most the limit, never more.
pub fn any_gzip_body(data: &[u8]) {
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
}

/// Task tokens and history page tokens come back from clients as opaque bytes: any bytes
/// decode to a token or to nothing, and a decoded token survives a round trip.
pub fn any_token(data: &[u8]) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::io::Write;
    use std::time::{Duration, Instant};
    use sundial_engine::api::{
        command::v1::{
            Command, CompleteWorkflowExecutionCommandAttributes,
            ScheduleActivityTaskCommandAttributes, StartTimerCommandAttributes,
            command::Attributes as Cmd,
        },
        common::v1::ActivityType,
        taskqueue::v1::TaskQueue,
        workflowservice::v1::RespondWorkflowTaskCompletedRequest,
    };

    /// How long each property is fed inputs.
    const BUDGET: Duration = Duration::from_millis(1500);

    /// xorshift64*: deterministic, so a failure repeats with the same seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// One mutation of a seed: flips, inserts, deletes, repeats and splices of bytes.
    fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(8) {
            let at = rng.below(data.len() + 1);
            match rng.below(6) {
                0 if !data.is_empty() => {
                    let i = at.min(data.len() - 1);
                    data[i] ^= 1 << rng.below(8);
                }
                1 => data.insert(at, rng.next() as u8),
                2 if at < data.len() => {
                    let end = (at + rng.below(16)).min(data.len());
                    data.drain(at..end);
                }
                3 if at < data.len() => {
                    let end = (at + rng.below(32)).min(data.len());
                    let piece = data[at..end].to_vec();
                    for _ in 0..rng.below(64) {
                        data.splice(at..at, piece.iter().copied());
                    }
                }
                4 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let from = rng.below(other.len() + 1);
                    data.splice(at..at, other[from..].iter().copied());
                }
                _ => data.truncate(at),
            }
        }
        data
    }

    /// Feeds `property` the seeds, then mutations of them, for [`BUDGET`].
    fn feed(name: &str, seeds: Vec<Vec<u8>>, property: fn(&[u8])) {
        for seed in &seeds {
            property(seed);
        }
        let mut rng = Rng(0x5eed_0000 ^ name.len() as u64);
        let started = Instant::now();
        let mut runs = 0u64;
        while started.elapsed() < BUDGET {
            property(&mutate(&mut rng, &seeds));
            runs += 1;
        }
        assert!(runs > 100, "{name}: only {runs} inputs in {BUDGET:?}");
    }

    #[test]
    fn any_query_text_is_parsed_or_refused() {
        let seeds = [
            "WorkflowType = 'a' AND (ExecutionStatus = 'Running' OR StartTime > '2020-01-01T00:00:00Z')",
            "WorkflowId IN ('a', 'b', 'c') ORDER BY StartTime DESC",
            "CustomIntField >= 5 AND CustomKeywordField != \"x\" OR NOT (CustomBoolField = true)",
            "CustomDatetimeField BETWEEN '2020-01-01T00:00:00Z' AND '2030-01-01T00:00:00Z'",
            "CustomTextField = 'hello world' AND CustomStringList IN ('p') AND CustomDoubleField < 1.5",
            "((((((((WorkflowId = 'deep'))))))))",
            "ExecutionStatus = 'Completed' GROUP BY ExecutionStatus",
            "WorkflowId STARTS_WITH 'pre' AND CloseTime IS NULL",
        ];
        feed(
            "query",
            seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
            sundial_store::fuzzing::any_query,
        );
    }

    #[test]
    fn any_request_body_is_inflated_within_the_limit_or_refused() {
        let frame = |compressed: bool, payload: &[u8]| {
            let mut out = vec![u8::from(compressed)];
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(payload);
            out
        };
        let gzip = |data: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).expect("in memory");
            encoder.finish().expect("in memory")
        };
        let message = b"a protobuf message, more or less".repeat(8);
        let seeds = vec![
            frame(true, &gzip(&message)),
            frame(false, &message),
            [frame(true, &gzip(b"x")), frame(true, &gzip(&[0u8; 70_000]))].concat(),
        ];
        feed("gzip", seeds, any_gzip_body);
    }

    #[test]
    fn any_token_bytes_decode_to_a_token_or_nothing() {
        let task = TaskToken {
            namespace: "default".into(),
            workflow_id: "wf".into(),
            run_id: "run".into(),
            scheduled_event_id: 5,
            seq_or_attempt: 2,
            is_activity: true,
            activity_id: "1".into(),
            query_id: 0,
        };
        let page = HistoryPageToken {
            run_id: "run".into(),
            next_event_id: 7,
        };
        feed(
            "token",
            vec![task.encode_bytes(), page.encode_bytes()],
            any_token,
        );
    }

    #[test]
    fn any_workflow_task_completion_is_applied_consistently_or_refused() {
        let command = |attributes: Cmd| Command {
            attributes: Some(attributes),
            ..Default::default()
        };
        let completion = RespondWorkflowTaskCompletedRequest {
            commands: vec![
                command(Cmd::ScheduleActivityTaskCommandAttributes(
                    ScheduleActivityTaskCommandAttributes {
                        activity_id: "1".into(),
                        activity_type: Some(ActivityType { name: "A".into() }),
                        task_queue: Some(TaskQueue {
                            name: "q".into(),
                            ..Default::default()
                        }),
                        start_to_close_timeout: Some(sundial_engine::time::duration(10_000)),
                        ..Default::default()
                    },
                )),
                command(Cmd::StartTimerCommandAttributes(
                    StartTimerCommandAttributes {
                        timer_id: "t".into(),
                        start_to_fire_timeout: Some(sundial_engine::time::duration(1_000)),
                    },
                )),
                command(Cmd::CompleteWorkflowExecutionCommandAttributes(
                    CompleteWorkflowExecutionCommandAttributes::default(),
                )),
            ],
            ..Default::default()
        };
        feed(
            "completion",
            vec![completion.encode_to_vec(), Vec::new()],
            sundial_engine::fuzzing::any_completion,
        );
    }
}
