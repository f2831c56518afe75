//! `sundial-test-server PORT [flags]`: Sundial as the SDKs' time-skipping test server.
//!
//! The SDKs start it as they start Temporal's Java test server (the port first, then any
//! extra arguments), wait until a client connects, and kill it when the test environment
//! shuts down. It serves everything `sundial server start-dev` serves over gRPC, in memory
//! (nothing is left behind when it is killed), on a virtual clock that skips ahead whenever
//! time skipping is unlocked and no workflow task or activity is in progress, plus
//! `temporal.api.testservice.v1.TestService` to lock, unlock and sleep.

mod dev_namespaces;
mod logging;
mod shutdown;

use anyhow::Context;
use clap::Parser;
use dev_namespaces::dev_namespaces;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sundial-test-server",
    version,
    about = "Sundial's time-skipping test server (in memory, namespace `default`)"
)]
struct Args {
    /// Port of the gRPC frontend.
    port: u16,
    /// Accepted for compatibility with Temporal's test server: time skipping is always on.
    #[arg(long)]
    enable_time_skipping: bool,
    /// IP address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Extra namespace to register at start (repeatable).
    #[arg(short = 'n', long = "namespace")]
    namespaces: Vec<String>,
    /// Log level: debug, info, warn, error.
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// Log format: text, pretty or json.
    #[arg(long, default_value = "text")]
    log_format: String,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sundial-test-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    logging::init_logging(
        &args.log_level,
        logging::LogFormat::parse(&args.log_format)?,
    )?;
    let metrics = Arc::new(
        sundial_server::metrics::Metrics::new().context("registering the server's metrics")?,
    );
    let observer: Arc<dyn sundial_store::CommitObserver> = metrics.clone();
    let store = sundial_store::SqliteStore::open_observed(None, Some(observer))
        .context("opening the in-memory database")?;
    let config = sundial_server::ServerConfig {
        listen: SocketAddr::new(args.ip, args.port),
        store: Arc::new(store),
        namespaces: dev_namespaces(args.namespaces),
        search_attributes: Vec::new(),
        limits: sundial_engine::Limits::default(),
        frontend: sundial_server::FrontendSettings::default(),
        cache_size: sundial_server::history::DEFAULT_CACHE_SIZE,
        wake_lookahead: sundial_server::history::DEFAULT_WAKE_LOOKAHEAD,
        tls: None,
        authorization: None,
        metrics,
        metrics_listen: None,
        http_listen: None,
        ui_listen: None,
        // Not used: a virtual clock deletes no closed runs.
        retention_scan: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
        clock: sundial_server::clock::Clock::new_virtual(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        sundial_server::serve(config, shutdown::interrupted()?, |addr| {
            tracing::info!(%addr, "Sundial test server started (time skipping)");
        })
        .await
    })
}
