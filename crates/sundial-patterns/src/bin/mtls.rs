//! Authenticate using mTLS: the client and its worker connect over TLS, verify the server's
//! certificate against a CA of their own, and prove who they are with a client certificate.
//!
//! Run it against a server that requires client certificates, e.g. Sundial started with
//! `sundial server start --config sundial.toml` and a `[tls]` table with `client_ca`:
//!
//! ```sh
//! cargo run -p sundial-patterns --bin mtls -- --address 127.0.0.1:7233 \
//!     --tls-cert client.pem --tls-key client.key --tls-ca ca.pem --server-name localhost
//! ```
//!
//! The same `--tls-*` flags work for every pattern program; this one insists on a client
//! certificate, runs the catalogue's `SecureWorkflow` and checks its result.

use std::{process::ExitCode, time::Duration};

use anyhow::ensure;
use sundial_patterns::{Pattern, run_pattern};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkerOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
struct SecureWorkflow;

#[workflow_methods]
impl SecureWorkflow {
    #[run]
    async fn run(_ctx: &mut WorkflowContext<Self>, data: String) -> WorkflowResult<String> {
        Ok(format!("Securely processed: {data}"))
    }
}

fn main() -> ExitCode {
    run_pattern("mtls", run)
}

async fn run(p: Pattern) -> anyhow::Result<()> {
    ensure!(
        p.args.tls_cert.is_some() && p.args.tls_key.is_some(),
        "mtls needs a client certificate: --tls-cert FILE --tls-key FILE (and usually --tls-ca FILE)"
    );
    println!(
        "connected over TLS to {} with client certificate {}",
        p.args.address,
        p.args
            .tls_cert
            .as_deref()
            .map(|c| c.display().to_string())
            .unwrap_or_default()
    );
    // The worker polls through the same (mutually authenticated) client.
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<SecureWorkflow>()?
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    p.with_worker(options, async {
        let id = p.workflow_id("secure");
        let result = p
            .start_and_wait(SecureWorkflow::run, "sensitive-data".to_string(), &id)
            .await?;
        println!("result: {result}");
        ensure!(
            result == "Securely processed: sensitive-data",
            "unexpected result {result:?}"
        );
        Ok(())
    })
    .await
}
