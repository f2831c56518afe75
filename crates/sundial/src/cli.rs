//! Command-line interface. `sundial server start-dev` takes the flags of
//! `temporal server start-dev` that matter, with the same meanings.

use crate::config::StoreChoice;
use crate::dev_namespaces::dev_namespaces;
use crate::logging::{LogFormat, init_logging};
use crate::shutdown::interrupted;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sundial",
    version,
    about = "A durable-execution server that speaks Temporal's gRPC API"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Server {
        #[command(subcommand)]
        command: ServerCommand,
    },
}

#[derive(Subcommand)]
enum ServerCommand {
    /// Start a development server: one process, embedded SQLite (in memory unless
    /// --db-filename is given), namespace `default` registered.
    StartDev(StartDev),
    /// Start a server as configured by a TOML file (listen addresses, storage, TLS,
    /// authorization, namespaces, logs, limits); see the README.
    Start(Start),
}

#[derive(Args)]
struct Start {
    /// The configuration file.
    #[arg(long, short = 'c')]
    config: PathBuf,
}

#[derive(Args)]
struct StartDev {
    /// Port of the gRPC frontend.
    #[arg(short = 'p', long, default_value_t = 7233)]
    port: u16,
    /// IP address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// SQLite file that keeps everything across restarts; without it, state is in memory.
    #[arg(short = 'f', long, conflicts_with = "db_url")]
    db_filename: Option<PathBuf>,
    /// PostgreSQL database instead of SQLite, e.g. `postgres://postgres@127.0.0.1:5432/sundial`
    /// (created schema and migrations on start).
    #[arg(long)]
    db_url: Option<String>,
    /// Extra namespace to register at start (repeatable).
    #[arg(short = 'n', long = "namespace")]
    namespaces: Vec<String>,
    /// Log level: debug, info, warn, error.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Do not serve the web UI.
    #[arg(long)]
    headless: bool,
    /// Port for the HTTP API service (`/api/v1/...`, on --ip). Defaults to a random free
    /// port (logged at start); 0 turns the HTTP API off.
    #[arg(long)]
    http_port: Option<u16>,
    /// Port for the Web UI. Defaults to '--port' value + 1000.
    #[arg(long)]
    ui_port: Option<u16>,
    /// IP address of the web UI (default: --ip).
    #[arg(long)]
    ui_ip: Option<IpAddr>,
    /// Port of the Prometheus endpoint (`/metrics`, on --ip); off when absent.
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Dynamic configuration KEY=VALUE (repeatable). Keys Sundial does not use are accepted
    /// and ignored; see the README for the keys it honours.
    #[arg(long = "dynamic-config-value")]
    dynamic_config: Vec<String>,
    /// Search attribute to register at start, KEY=TYPE (repeatable), in every namespace
    /// served: TYPE is Text, Keyword, Int, Double, Bool, Datetime or KeywordList (any case).
    #[arg(long = "search-attribute", value_name = "KEY=TYPE")]
    search_attributes: Vec<String>,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Server {
                command: ServerCommand::StartDev(args),
            } => start_dev(args),
            Command::Server {
                command: ServerCommand::Start(args),
            } => start(args),
        }
    }
}

fn start_dev(args: StartDev) -> anyhow::Result<()> {
    init_logging(&args.log_level, args.log_format)?;
    let limits = dynamic_config_limits(&args.dynamic_config)?;
    let frontend = dynamic_config_frontend(&args.dynamic_config)?;
    let cache_size = dynamic_config_positive(
        &args.dynamic_config,
        CACHE_SIZE_KEY,
        sundial_server::history::DEFAULT_CACHE_SIZE,
    )?;
    let wake_lookahead = Duration::from_millis(dynamic_config_positive(
        &args.dynamic_config,
        WAKE_LOOKAHEAD_KEY,
        sundial_server::history::DEFAULT_WAKE_LOOKAHEAD.as_millis() as usize,
    )? as u64);
    let search_attributes = search_attribute_types(&args.search_attributes)?;
    run(Settings {
        listen: SocketAddr::new(args.ip, args.port),
        store: match args.db_url {
            Some(url) => StoreChoice::Postgres(sundial_store::PostgresOptions::new(url)),
            None => StoreChoice::Sqlite(args.db_filename),
        },
        namespaces: dev_namespaces(args.namespaces),
        search_attributes,
        limits,
        frontend,
        cache_size,
        wake_lookahead,
        tls: None,
        authorization: None,
        metrics_listen: args.metrics_port.map(|p| SocketAddr::new(args.ip, p)),
        http_listen: match args.http_port {
            Some(0) => None,
            Some(port) => Some(SocketAddr::new(args.ip, port)),
            None => Some(SocketAddr::new(args.ip, 0)),
        },
        ui_listen: if args.headless {
            None
        } else {
            let port = match args.ui_port {
                Some(port) => port,
                None => args.port.checked_add(1000).with_context(|| {
                    format!(
                        "--port {} leaves no default UI port; pass --ui-port",
                        args.port
                    )
                })?,
            };
            Some(SocketAddr::new(args.ui_ip.unwrap_or(args.ip), port))
        },
        retention_scan: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(10),
    })
}

fn start(args: Start) -> anyhow::Result<()> {
    let config = crate::config::Config::load(&args.config)?;
    init_logging(&config.log.level, LogFormat::parse(&config.log.format)?)?;
    run(Settings {
        listen: config.server.listen,
        store: config.storage.choice()?,
        namespaces: config.namespace_specs()?,
        search_attributes: Vec::new(),
        limits: config.engine_limits(),
        frontend: sundial_server::FrontendSettings::default(),
        cache_size: config.server.cache_size,
        wake_lookahead: sundial_server::history::DEFAULT_WAKE_LOOKAHEAD,
        tls: config.tls_settings()?,
        authorization: config.policy(),
        metrics_listen: config.server.metrics_listen,
        http_listen: config.server.http_listen,
        ui_listen: config.ui.as_ref().map(|ui| ui.listen),
        retention_scan: crate::config::parse_duration(&config.server.retention_scan_interval)?,
        shutdown_grace: crate::config::parse_duration(&config.server.shutdown_grace)?,
    })
}

/// Everything both start commands decide.
struct Settings {
    listen: SocketAddr,
    store: StoreChoice,
    namespaces: Vec<sundial_server::NamespaceSpec>,
    search_attributes: Vec<(String, i32)>,
    limits: sundial_engine::Limits,
    frontend: sundial_server::FrontendSettings,
    cache_size: usize,
    wake_lookahead: Duration,
    tls: Option<sundial_server::tls::TlsSettings>,
    authorization: Option<sundial_server::authz::Policy>,
    metrics_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    ui_listen: Option<SocketAddr>,
    retention_scan: Duration,
    shutdown_grace: Duration,
}

/// Opens the store and serves until SIGTERM or Ctrl-C, then shuts down gracefully.
fn run(settings: Settings) -> anyhow::Result<()> {
    let metrics = Arc::new(
        sundial_server::metrics::Metrics::new().context("registering the server's metrics")?,
    );
    let observer: Arc<dyn sundial_store::CommitObserver> = metrics.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store: Arc<dyn sundial_store::Store> = match &settings.store {
            StoreChoice::Sqlite(path) => Arc::new(
                sundial_store::SqliteStore::open_observed(path.as_deref(), Some(observer))
                    .with_context(|| format!("opening the database {path:?}"))?,
            ),
            StoreChoice::Postgres(options) => Arc::new(
                sundial_store::PostgresStore::open(options, Some(observer))
                    .await
                    .context("opening the PostgreSQL database")?,
            ),
        };
        let config = sundial_server::ServerConfig {
            listen: settings.listen,
            store,
            namespaces: settings.namespaces,
            search_attributes: settings.search_attributes,
            limits: settings.limits,
            frontend: settings.frontend,
            cache_size: settings.cache_size,
            wake_lookahead: settings.wake_lookahead,
            tls: settings.tls,
            authorization: settings.authorization,
            metrics,
            metrics_listen: settings.metrics_listen,
            http_listen: settings.http_listen,
            ui_listen: settings.ui_listen,
            retention_scan: settings.retention_scan,
            shutdown_grace: settings.shutdown_grace,
            clock: sundial_server::clock::Clock::Wall,
        };
        let interrupted = interrupted()?;
        let shutdown = async move {
            interrupted.await;
            tracing::info!("shutting down");
        };
        sundial_server::serve(config, shutdown, |addr| {
            tracing::info!(%addr, "Sundial server started");
        })
        .await
    })
}

/// `--search-attribute KEY=TYPE` values as (name, `IndexedValueType`), refused with the
/// reference CLI's messages. The type name is matched without regard to case.
fn search_attribute_types(values: &[String]) -> anyhow::Result<Vec<(String, i32)>> {
    use sundial_engine::api::enums::v1::IndexedValueType;
    const TYPES: [(&str, IndexedValueType); 7] = [
        ("Text", IndexedValueType::Text),
        ("Keyword", IndexedValueType::Keyword),
        ("Int", IndexedValueType::Int),
        ("Double", IndexedValueType::Double),
        ("Bool", IndexedValueType::Bool),
        ("Datetime", IndexedValueType::Datetime),
        ("KeywordList", IndexedValueType::KeywordList),
    ];
    let mut out: Vec<(String, i32)> = Vec::new();
    for item in values {
        let Some((name, type_name)) = item.split_once('=') else {
            bail!("invalid search attributes: missing expected '=' in {item:?}");
        };
        let Some((_, value_type)) = TYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(type_name))
        else {
            bail!("invalid search attribute value type {type_name:?}");
        };
        // A repeated name keeps its last type, as the reference's map does.
        out.retain(|(n, _)| n != name);
        out.push((name.to_string(), *value_type as i32));
    }
    Ok(out)
}

/// The frontend's dynamic configuration keys Sundial honours
/// (`frontend.enableCancelWorkerPollsOnShutdown`, and for batch operations `worker.batcherRPS`
/// and `frontend.MaxConcurrentBatchOperationPerNamespace`).
fn dynamic_config_frontend(values: &[String]) -> anyhow::Result<sundial_server::FrontendSettings> {
    let mut settings = sundial_server::FrontendSettings::default();
    for kv in values {
        let Some((key, value)) = kv.split_once('=') else {
            continue; // refused with its message by `dynamic_config_limits`
        };
        let number = || parse_positive(key, value);
        match key {
            "frontend.enableCancelWorkerPollsOnShutdown" => {
                settings.cancel_worker_polls_on_shutdown = parse_bool(key, value)?
            }
            "worker.batcherRPS" => {
                settings.batch.max_rps = u32::try_from(number()?).unwrap_or(u32::MAX)
            }
            "frontend.MaxConcurrentBatchOperationPerNamespace" => {
                settings.batch.max_concurrent_jobs =
                    usize::try_from(number()?).unwrap_or(usize::MAX)
            }
            _ => {}
        }
    }
    Ok(settings)
}

/// `history.hostLevelCacheMaxSize`: how many runs stay in memory (Temporal's key for its
/// host-wide mutable-state cache; Sundial's default is [`DEFAULT_CACHE_SIZE`]).
///
/// [`DEFAULT_CACHE_SIZE`]: sundial_server::history::DEFAULT_CACHE_SIZE
const CACHE_SIZE_KEY: &str = "history.hostLevelCacheMaxSize";
/// `sundial.wakeIndexLookaheadMs`: how far ahead the wake index is read (Sundial's own key;
/// tests shorten it so that sleeping runs leave memory and come back within seconds).
const WAKE_LOOKAHEAD_KEY: &str = "sundial.wakeIndexLookaheadMs";

/// The last value of `key` among the dynamic configuration values, a positive integer, or
/// `default`.
fn dynamic_config_positive(values: &[String], key: &str, default: usize) -> anyhow::Result<usize> {
    let mut found = default;
    for kv in values {
        if let Some((k, value)) = kv.split_once('=')
            && k == key
        {
            found = usize::try_from(parse_positive(key, value)?).unwrap_or(usize::MAX);
        }
    }
    Ok(found)
}

/// A dynamic configuration value that must be a positive integer (quotes allowed).
fn parse_positive(key: &str, value: &str) -> anyhow::Result<i64> {
    value
        .trim()
        .trim_matches('"')
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| {
            format!("--dynamic-config-value {key}: {value:?} is not a positive integer")
        })
}

fn parse_bool(key: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().trim_matches('"') {
        "true" => Ok(true),
        "false" => Ok(false),
        other => bail!("--dynamic-config-value {key}: {other:?} is not a boolean (true or false)"),
    }
}

/// The dynamic configuration keys Sundial honours (continue-as-new suggestion thresholds);
/// every other well-formed key is accepted and ignored.
fn dynamic_config_limits(values: &[String]) -> anyhow::Result<sundial_engine::Limits> {
    let mut limits = sundial_engine::Limits::default();
    for kv in values {
        let Some((key, value)) = kv.split_once('=') else {
            bail!("--dynamic-config-value {kv:?} must be KEY=VALUE");
        };
        let number = || -> anyhow::Result<i64> {
            value
                .trim()
                .trim_matches('"')
                .parse::<i64>()
                .with_context(|| {
                    format!("--dynamic-config-value {key}: {value:?} is not an integer")
                })
        };
        match key {
            "limit.historyCount.suggestContinueAsNew" => {
                limits.suggest_continue_as_new_events = number()?
            }
            "limit.historySize.suggestContinueAsNew" => {
                limits.suggest_continue_as_new_bytes = number()?
            }
            "limit.historyCount.error" => limits.history_count_error = number()?,
            "limit.historySize.error" => limits.history_size_error_bytes = number()?,
            "limit.blobSize.error" => limits.blob_size_limit_bytes = number()?,
            "limit.numPendingActivities.error" => limits.pending_activities = number()?,
            "limit.numPendingChildExecutions.error" => limits.pending_child_executions = number()?,
            "limit.numPendingSignals.error" => limits.pending_signals = number()?,
            "limit.numPendingCancelRequests.error" => limits.pending_cancel_requests = number()?,
            "history.maxInFlightUpdates" => limits.max_in_flight_updates = number()?,
            "history.maxTotalUpdates" => limits.max_total_updates = number()?,
            "system.enableCrossNamespaceCommands" => {
                limits.cross_namespace_commands = parse_bool(key, value)?
            }
            "frontend.enableCancelWorkerPollsOnShutdown"
            | "worker.batcherRPS"
            | "frontend.MaxConcurrentBatchOperationPerNamespace" => {} // dynamic_config_frontend
            CACHE_SIZE_KEY | WAKE_LOOKAHEAD_KEY => {} // dynamic_config_positive
            _ => tracing::debug!(key, "dynamic config key not used by Sundial"),
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_attribute_flags_name_their_types_in_any_case() {
        let parsed = search_attribute_types(&[
            "Color=keyword".into(),
            "Size=Int".into(),
            "Color=KEYWORDLIST".into(),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            vec![("Size".to_string(), 3), ("Color".to_string(), 7)]
        );
        let err = search_attribute_types(&["Color".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid search attributes: missing expected '=' in \"Color\""
        );
        let err = search_attribute_types(&["Color=Colour".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid search attribute value type \"Colour\""
        );
    }

    #[test]
    fn batch_limits_default_to_the_references_and_can_be_raised() {
        let defaults = dynamic_config_frontend(&[]).unwrap().batch;
        assert_eq!(defaults, sundial_server::batch::BatchSettings::default());
        assert_eq!((defaults.max_rps, defaults.max_concurrent_jobs), (50, 1));
        let raised = [
            "worker.batcherRPS=2000".to_string(),
            "frontend.MaxConcurrentBatchOperationPerNamespace=3".to_string(),
        ];
        let batch = dynamic_config_frontend(&raised).unwrap().batch;
        assert_eq!((batch.max_rps, batch.max_concurrent_jobs), (2000, 3));
        assert!(dynamic_config_limits(&raised).is_ok());
        for bad in ["worker.batcherRPS=0", "worker.batcherRPS=fast"] {
            assert!(
                dynamic_config_frontend(&[bad.to_string()]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn poll_cancellation_on_shutdown_is_off_unless_configured() {
        assert!(
            !dynamic_config_frontend(&[])
                .unwrap()
                .cancel_worker_polls_on_shutdown
        );
        let on = ["frontend.enableCancelWorkerPollsOnShutdown=true".to_string()];
        assert!(
            dynamic_config_frontend(&on)
                .unwrap()
                .cancel_worker_polls_on_shutdown
        );
        assert!(
            dynamic_config_limits(&on).is_ok(),
            "a known key, not a limit"
        );
        let bad = ["frontend.enableCancelWorkerPollsOnShutdown=yes".to_string()];
        assert!(dynamic_config_frontend(&bad).is_err());
    }

    #[test]
    fn honoured_dynamic_config_keys_set_limits() {
        let limits = dynamic_config_limits(&[
            "limit.historyCount.suggestContinueAsNew=20".into(),
            "frontend.enableUpdateWorkflowExecution=true".into(),
        ])
        .unwrap();
        assert_eq!(limits.suggest_continue_as_new_events, 20);
        let limits = dynamic_config_limits(&[
            "limit.numPendingActivities.error=3".into(),
            "limit.numPendingChildExecutions.error=4".into(),
            "limit.numPendingSignals.error=5".into(),
            "limit.numPendingCancelRequests.error=6".into(),
            "history.maxInFlightUpdates=2".into(),
            "history.maxTotalUpdates=7".into(),
            "system.enableCrossNamespaceCommands=true".into(),
        ])
        .unwrap();
        assert_eq!(
            (
                limits.pending_activities,
                limits.pending_child_executions,
                limits.pending_signals,
                limits.pending_cancel_requests,
                limits.max_in_flight_updates,
                limits.max_total_updates,
                limits.cross_namespace_commands,
            ),
            (3, 4, 5, 6, 2, 7, true)
        );
        assert!(
            dynamic_config_limits(&["system.enableCrossNamespaceCommands=yes".into()]).is_err()
        );
        assert!(
            dynamic_config_limits(&["limit.historyCount.suggestContinueAsNew=x".into()]).is_err()
        );
        assert!(dynamic_config_limits(&["novalue".into()]).is_err());
    }
}
