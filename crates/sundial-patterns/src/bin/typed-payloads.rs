//! Typed payloads: serde structs in and out of workflows and activities.
//!
//! The Python catalogue needs `pydantic_data_converter` for typed models. In Rust the SDK's
//! default converter already serialises any `serde` type to JSON (`json/plain`), and the types
//! are checked at compile time: workflow, activity and client share the same structs. This
//! program round-trips structs with:
//!
//! * dates and timestamps (`chrono::NaiveDate`, `DateTime<Utc>`: RFC 3339 strings),
//! * exact decimals (`rust_decimal::Decimal` as a string, so `0.10 + 0.20 == 0.30`),
//! * enums, including one with data (`Tier::Premium { since }`),
//! * optional fields (`Option<T>`, `null` when absent),
//! * validated values: `NonZeroU64` refuses `0` and `Ipv4Addr` refuses a malformed address when
//!   a payload is decoded, much like a Pydantic validator.

use std::{net::Ipv4Addr, num::NonZeroU64, process::ExitCode, str::FromStr, time::Duration};

use anyhow::{Context, anyhow, ensure};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sundial_patterns::{Pattern, history, run_pattern};
use temporalio_common::{
    data_converters::{
        GenericPayloadConverter, PayloadConverter, SerializationContext, SerializationContextData,
    },
    protos::temporal::api::{common::v1::Payload, history::v1::history_event::Attributes},
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Tier {
    Standard,
    Premium { since: NaiveDate },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UserData {
    /// Must be positive: decoding `0` fails.
    user_id: NonZeroU64,
    ip_address: Ipv4Addr,
    signed_up_at: DateTime<Utc>,
    birthday: Option<NaiveDate>,
    tier: Tier,
    balance: Decimal,
    nickname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProcessingReport {
    processed: usize,
    total_balance: Decimal,
    earliest_signup: Option<DateTime<Utc>>,
    premium_user_ids: Vec<NonZeroU64>,
    /// The input exactly as the activity received it, to show the round trip.
    users: Vec<UserData>,
}

struct UserActivities;

#[activities]
impl UserActivities {
    #[activity]
    async fn process_users(
        _ctx: ActivityContext,
        users: Vec<UserData>,
    ) -> Result<ProcessingReport, ActivityError> {
        for user in &users {
            println!(
                "  processing user {} from {} (tier {:?}, balance {})",
                user.user_id, user.ip_address, user.tier, user.balance
            );
        }
        Ok(ProcessingReport {
            processed: users.len(),
            total_balance: users.iter().map(|u| u.balance).sum(),
            earliest_signup: users.iter().map(|u| u.signed_up_at).min(),
            premium_user_ids: users
                .iter()
                .filter(|u| matches!(u.tier, Tier::Premium { .. }))
                .map(|u| u.user_id)
                .collect(),
            users,
        })
    }
}

#[workflow]
#[derive(Default)]
struct TypedPayloadsWorkflow;

#[workflow_methods]
impl TypedPayloadsWorkflow {
    #[run]
    async fn run(
        ctx: &mut WorkflowContext<Self>,
        users: Vec<UserData>,
    ) -> WorkflowResult<ProcessingReport> {
        let report = ctx
            .execute_activity(
                UserActivities::process_users,
                users,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        Ok(report)
    }
}

fn sample_users() -> anyhow::Result<Vec<UserData>> {
    Ok(vec![
        UserData {
            user_id: NonZeroU64::new(1).context("id")?,
            ip_address: Ipv4Addr::new(192, 168, 1, 1),
            signed_up_at: DateTime::parse_from_rfc3339("2024-02-29T12:30:45.123456Z")?.to_utc(),
            birthday: NaiveDate::from_ymd_opt(1990, 5, 17),
            tier: Tier::Premium {
                since: NaiveDate::from_ymd_opt(2024, 3, 1).context("date")?,
            },
            balance: Decimal::from_str("0.10")?,
            nickname: Some("ada".to_string()),
        },
        UserData {
            user_id: NonZeroU64::new(2).context("id")?,
            ip_address: Ipv4Addr::new(10, 0, 0, 1),
            signed_up_at: DateTime::parse_from_rfc3339("2023-12-31T23:59:59Z")?.to_utc(),
            birthday: None,
            tier: Tier::Standard,
            balance: Decimal::from_str("0.20")?,
            nickname: None,
        },
    ])
}

/// Decodes a JSON document the way the worker decodes a payload.
fn decode_user(json: &str) -> Result<UserData, String> {
    let payload = Payload {
        metadata: [("encoding".to_string(), b"json/plain".to_vec())]
            .into_iter()
            .collect(),
        data: json.as_bytes().to_vec(),
        ..Default::default()
    };
    let converter = PayloadConverter::default();
    let data = SerializationContextData::None;
    converter
        .from_payload::<UserData>(&SerializationContext::new(&data, &converter), payload)
        .map_err(|e| format!("{e}"))
}

fn main() -> ExitCode {
    run_pattern("typed-payloads", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<TypedPayloadsWorkflow>()?
        .register_activities(UserActivities)
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let users = sample_users()?;
    let client = &p.client;
    p.with_worker(options, async {
        let id = p.workflow_id("users");
        let report = p.start_and_wait(TypedPayloadsWorkflow::run, users.clone(), &id).await?;
        println!(
            "report: processed={}, total_balance={}, earliest_signup={:?}, premium={:?}",
            report.processed, report.total_balance, report.earliest_signup, report.premium_user_ids
        );

        ensure!(
            report.users == users,
            "the structs did not survive the round trip:\n sent {users:#?}\n got {:#?}",
            report.users
        );
        ensure!(
            report.total_balance == Decimal::from_str("0.30")?,
            "decimal arithmetic should be exact, got {}",
            report.total_balance
        );
        ensure!(
            report.processed == 2
                && report.earliest_signup == Some(users[1].signed_up_at)
                && report.premium_user_ids == vec![users[0].user_id],
            "unexpected report {report:?}"
        );

        // What the server stores: plain JSON, readable by any SDK.
        let events = history(client, &id, None).await?;
        let input = events
            .iter()
            .find_map(|e| match &e.attributes {
                Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                    a.input.as_ref().and_then(|p| p.payloads.first()).cloned()
                }
                _ => None,
            })
            .ok_or_else(|| anyhow!("no workflow input in the history"))?;
        let json = String::from_utf8_lossy(&input.data);
        let encoding = String::from_utf8_lossy(
            input.metadata.get("encoding").map(Vec::as_slice).unwrap_or_default(),
        )
        .into_owned();
        println!("workflow input as stored ({encoding}): {json}");
        ensure!(encoding == "json/plain", "expected json/plain, got {encoding}");
        ensure!(
            json.contains(r#""balance":"0.10""#)
                && json.contains(r#""signed_up_at":"2024-02-29T12:30:45.123456Z""#)
                && json.contains(r#""premium":{"since":"2024-03-01"}"#)
                && json.contains(r#""birthday":null"#),
            "unexpected JSON shape: {json}"
        );

        // Validation on decode: bad values are refused, good ones accepted.
        let good = r#"{"user_id":7,"ip_address":"127.0.0.1","signed_up_at":"2025-01-01T00:00:00Z","birthday":null,"tier":"standard","balance":"1.5","nickname":null}"#;
        let zero_id = good.replace(r#""user_id":7"#, r#""user_id":0"#);
        let bad_ip = good.replace("127.0.0.1", "127.0.0.300");
        ensure!(decode_user(good).is_ok(), "a valid user should decode");
        for (what, json) in [("user_id 0", zero_id), ("ip 127.0.0.300", bad_ip)] {
            match decode_user(&json) {
                Err(e) => println!("decoding a user with {what} is refused: {e}"),
                Ok(u) => return Err(anyhow!("a user with {what} was accepted: {u:?}")),
            }
        }
        Ok(())
    })
    .await
}
