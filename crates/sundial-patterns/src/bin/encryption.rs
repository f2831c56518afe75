//! Encryption: payloads are encrypted with AES-256-GCM before they leave the client or the
//! worker, so the server only ever stores ciphertext.
//!
//! The Rust SDK's counterpart of Python's `PayloadCodec` is
//! `temporalio_common::data_converters::PayloadCodec`, plugged into a `DataConverter` that is
//! set on the client (`ClientOptions::data_converter`); a worker built from that client uses
//! the same converter. Each payload is serialised (protobuf), encrypted with a random 96-bit
//! nonce, and wrapped in a new payload with `encoding: binary/encrypted` and an
//! `encryption-key-id`, exactly as the catalogue's Python codec does, so the two interoperate.
//!
//! The program then reads the history with a plain client (no codec) and checks that every
//! payload the server holds is `binary/encrypted` and does not contain the secret.

use std::{process::ExitCode, sync::Arc, time::Duration};

use aes_gcm::{
    Aes256Gcm, Key, Nonce,
    aead::{Aead, AeadCore, KeyInit, OsRng},
};
use anyhow::{Context, anyhow, ensure};
use futures::{FutureExt, future::BoxFuture};
use prost::Message;
use sundial_patterns::{Pattern, history, run_pattern, start_workflow, with_worker};
use temporalio_client::WorkflowGetResultOptions;
use temporalio_common::{
    data_converters::{
        DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError,
        PayloadConverter, SerializationContextData,
    },
    protos::temporal::api::{common::v1::Payload, history::v1::history_event::Attributes},
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

const ENCODING: &str = "binary/encrypted";
const KEY_ID: &str = "sundial-patterns-demo-key";
/// Environment variable with the key as 64 hex digits (32 bytes).
const KEY_ENV: &str = "SUNDIAL_PATTERNS_ENCRYPTION_KEY";
/// DEMO ONLY: the key used when the environment variable is not set. A real deployment loads
/// its key from a secret store or key-management system, never from source code, and rotates
/// it under new key ids.
const DEMO_KEY: [u8; 32] = *b"sundial-patterns-demo-key-32byte";

const SECRET: &str = "card 4111-1111-1111-1111 belongs to Ada Lovelace";

/// Encrypts every payload with AES-256-GCM; decrypts payloads marked `binary/encrypted`.
struct EncryptionCodec {
    key_id: String,
    cipher: Arc<Aes256Gcm>,
}

impl EncryptionCodec {
    fn new(key_id: &str, key: &[u8; 32]) -> Self {
        Self {
            key_id: key_id.to_string(),
            cipher: Arc::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))),
        }
    }

    fn encrypt(&self, payload: Payload) -> Result<Payload, PayloadConversionError> {
        let plaintext = payload.encode_to_vec();
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_slice())
            .map_err(|e| codec_error(format!("encryption failed: {e}")))?;
        let mut data = nonce.to_vec();
        data.extend_from_slice(&ciphertext);
        Ok(Payload {
            metadata: [
                ("encoding".to_string(), ENCODING.as_bytes().to_vec()),
                (
                    "encryption-key-id".to_string(),
                    self.key_id.as_bytes().to_vec(),
                ),
            ]
            .into_iter()
            .collect(),
            data,
            ..Default::default()
        })
    }

    fn decrypt(&self, payload: Payload) -> Result<Payload, PayloadConversionError> {
        if payload.metadata.get("encoding").map(Vec::as_slice) != Some(ENCODING.as_bytes()) {
            return Ok(payload); // not ours: pass through
        }
        let key_id = payload
            .metadata
            .get("encryption-key-id")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        if key_id != self.key_id {
            return Err(codec_error(format!("unknown encryption key id {key_id:?}")));
        }
        if payload.data.len() < 12 {
            return Err(codec_error("encrypted payload is too short".to_string()));
        }
        let (nonce, ciphertext) = payload.data.split_at(12);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|e| codec_error(format!("decryption failed: {e}")))?;
        Payload::decode(plaintext.as_slice())
            .map_err(|e| codec_error(format!("decrypted bytes are not a payload: {e}")))
    }
}

fn codec_error(msg: String) -> PayloadConversionError {
    PayloadConversionError::EncodingError(msg.into())
}

impl PayloadCodec for EncryptionCodec {
    fn encode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let result = payloads.into_iter().map(|p| self.encrypt(p)).collect();
        futures::future::ready(result).boxed()
    }

    fn decode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let result = payloads.into_iter().map(|p| self.decrypt(p)).collect();
        futures::future::ready(result).boxed()
    }
}

/// The key from the environment, or the demo key.
fn load_key() -> anyhow::Result<[u8; 32]> {
    let Ok(hex) = std::env::var(KEY_ENV) else {
        return Ok(DEMO_KEY);
    };
    let hex = hex.trim();
    ensure!(
        hex.len() == 64,
        "{KEY_ENV} must be 64 hex digits (32 bytes), got {} characters",
        hex.len()
    );
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .with_context(|| format!("{KEY_ENV} is not hex"))?;
    }
    Ok(key)
}

struct SecretActivities;

#[activities]
impl SecretActivities {
    #[activity]
    async fn process_secret(
        _ctx: ActivityContext,
        secret: String,
    ) -> Result<String, ActivityError> {
        // The activity sees plaintext: the worker decrypted its input.
        Ok(format!("processed: {secret}"))
    }
}

#[workflow]
#[derive(Default)]
struct EncryptedWorkflow;

#[workflow_methods]
impl EncryptedWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, secret: String) -> WorkflowResult<String> {
        let out = ctx
            .execute_activity(
                SecretActivities::process_secret,
                secret,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(5)),
            )
            .await?;
        Ok(out)
    }
}

fn main() -> ExitCode {
    run_pattern("encryption", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    let key = load_key()?;
    let converter = DataConverter::new(
        PayloadConverter::default(),
        DefaultFailureConverter::default(),
        EncryptionCodec::new(KEY_ID, &key),
    );
    let encrypted_client = p.connect_with(converter).await?;
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<EncryptedWorkflow>()?
        .register_activities(SecretActivities)
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();

    let id = p.workflow_id("secret");
    let result = with_worker(&encrypted_client, options, async {
        let handle = start_workflow(
            &encrypted_client,
            &p.task_queue,
            EncryptedWorkflow::run,
            SECRET.to_string(),
            &id,
        )
        .await?;
        Ok(handle
            .get_result(WorkflowGetResultOptions::default())
            .await?)
    })
    .await?;
    println!("result decrypted by the client: {result:?}");
    ensure!(
        result == format!("processed: {SECRET}"),
        "unexpected result {result:?}"
    );

    // What the server stores, read with a plain client that has no codec.
    let events = history(&p.client, &id, None).await?;
    let mut payloads: Vec<(&str, &Payload)> = Vec::new();
    for event in &events {
        let (label, list) = match &event.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                ("workflow input", &a.input)
            }
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                ("activity input", &a.input)
            }
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
                ("activity result", &a.result)
            }
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => {
                ("workflow result", &a.result)
            }
            _ => continue,
        };
        for payload in list.iter().flat_map(|l| l.payloads.iter()) {
            payloads.push((label, payload));
        }
    }
    ensure!(
        payloads.len() == 4,
        "expected 4 payloads in the history (workflow input/result, activity input/result), found {}",
        payloads.len()
    );
    for (label, payload) in &payloads {
        let encoding = payload
            .metadata
            .get("encoding")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let leaks = payload
            .data
            .windows(b"4111-1111".len())
            .any(|w| w == b"4111-1111");
        println!(
            "server holds {label}: encoding={encoding}, {} bytes of ciphertext",
            payload.data.len()
        );
        ensure!(
            encoding == ENCODING && !leaks,
            "the server holds a readable {label}: encoding {encoding:?}"
        );
    }

    // Without the key, the result cannot be read.
    let plain_handle = p
        .client
        .get_workflow_handle::<EncryptedWorkflow>(id.clone());
    match plain_handle
        .get_result(WorkflowGetResultOptions::default())
        .await
    {
        Err(e) => println!("a client without the codec cannot read the result: {e}"),
        Ok(v) => {
            return Err(anyhow!(
                "a client without the key decoded the result: {v:?}"
            ));
        }
    }
    Ok(())
}
