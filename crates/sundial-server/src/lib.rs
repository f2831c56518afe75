//! Sundial's server: the frontend (gRPC), history (execution owner), matching (task queues) and
//! timer roles of one process, wired together over one store.

pub mod around_layer;
pub mod authz;
pub mod batch;
pub mod clock;
pub mod detached;
pub mod error;
pub mod frontend;
pub mod fuzzing;
pub mod gzip_requests;
pub mod history;
pub mod http_api;
pub mod in_progress;
pub mod listener;
pub mod matching;
pub mod metrics;
pub mod metrics_endpoint;
pub mod metrics_layer;
pub mod namespaces;
pub mod nexus_endpoints;
pub mod outbound;
pub mod ownership;
pub mod peer;
pub mod request_filter;
pub mod responses;
pub mod retention;
pub mod run;
pub mod run_events;
pub mod scheduler;
pub mod timers;
pub mod tls;
pub mod tokens;
pub mod ui;
pub mod updates;
pub mod virtual_clock;
pub mod visibility;
pub mod wall_clock;

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use sundial_store::Store;
use tonic::codec::CompressionEncoding;

/// Idle time after which the server pings a connection (`frontend.keepAliveTime`).
pub const HTTP2_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// How long an unanswered ping may wait before the connection is closed
/// (`frontend.keepAliveTimeout`).
pub const HTTP2_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Age at which a connection is asked to go away (`frontend.keepAliveMaxConnectionAge`).
pub const MAX_CONNECTION_AGE: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// How long calls in flight may finish after that (`frontend.keepAliveMaxConnectionAgeGrace`).
pub const MAX_CONNECTION_AGE_GRACE: std::time::Duration = std::time::Duration::from_secs(70);

/// A namespace the server registers at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSpec {
    pub name: String,
    /// Retention of closed runs; `None` keeps an existing namespace's retention (and gives a
    /// new one Temporal's default).
    pub retention_ms: Option<i64>,
}

/// Frontend settings from dynamic configuration, with Temporal's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontendSettings {
    /// `frontend.enableCancelWorkerPollsOnShutdown` (default false): ShutdownWorker completes
    /// the worker's outstanding polls with empty responses, and namespaces report the
    /// `worker_poll_complete_on_shutdown` capability exactly while this is on.
    pub cancel_worker_polls_on_shutdown: bool,
    /// Batch operations: `worker.batcherRPS` and
    /// `frontend.MaxConcurrentBatchOperationPerNamespace`.
    pub batch: batch::BatchSettings,
}

/// What the server needs to start.
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub store: Arc<dyn Store>,
    /// Namespaces registered at start if missing (`default` and `--namespace` values).
    pub namespaces: Vec<NamespaceSpec>,
    /// Custom search attributes (name, `IndexedValueType`) registered at start in each of
    /// `namespaces` (`start-dev --search-attribute`); one already registered with the same
    /// type is left alone, with another type the start fails.
    pub search_attributes: Vec<(String, i32)>,
    /// Thresholds applied by the engine (continue-as-new suggestions).
    pub limits: sundial_engine::Limits,
    /// Frontend behaviour switched by dynamic configuration.
    pub frontend: FrontendSettings,
    /// How many runs stay in memory; idle running runs beyond it are evicted and loaded
    /// again on demand ([`history::DEFAULT_CACHE_SIZE`] by default).
    pub cache_size: usize,
    /// How far ahead of the clock the store's wake index is read (see `history::wakeups`).
    pub wake_lookahead: std::time::Duration,
    /// TLS on the gRPC frontend; plain TCP when `None`.
    pub tls: Option<tls::TlsSettings>,
    /// The authorization table; every identity may do everything when `None`.
    pub authorization: Option<authz::Policy>,
    /// The server's metrics (give the same registry to the store as its commit observer).
    pub metrics: Arc<metrics::Metrics>,
    /// Where `/metrics` is served; not served when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Where Temporal's HTTP/JSON API is served (with the same TLS as gRPC); not served when
    /// `None`.
    pub http_listen: Option<SocketAddr>,
    /// Where the web UI is served (a client of the HTTP API, which it serves under `/api/v1`
    /// on the same origin); not served when `None`.
    pub ui_listen: Option<SocketAddr>,
    /// How often closed runs past their namespace's retention are looked for.
    pub retention_scan: std::time::Duration,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: std::time::Duration,
    /// Where the server reads the time: the wall clock, or a virtual clock that skips ahead
    /// (the time-skipping test server, which also serves the TestService and deletes no
    /// closed runs: retention would age them out as time jumps).
    pub clock: clock::Clock,
}

/// Starts every role and serves gRPC until `shutdown` resolves. `ready` is called once the
/// listener is bound and recovery is done.
///
/// Shutdown: the listener closes, waiting long polls answer empty (as do new ones), requests
/// in flight get up to `shutdown_grace` to finish, and commits already queued are flushed
/// before this returns.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    // Bad TLS material fails the start, naming the file and the problem.
    let tls = match &config.tls {
        Some(settings) => Some(tls::ReloadingTls::new(settings.clone()).context("TLS")?),
        None => None,
    };
    let namespaces = Arc::new(namespaces::Namespaces::load(config.store.clone()).await?);
    for ns in &config.namespaces {
        namespaces
            .ensure(&ns.name, ns.retention_ms)
            .await
            .with_context(|| format!("registering namespace {}", ns.name))?;
    }
    // The cluster's Nexus endpoints (shared with whatever routes Nexus calls to them).
    let nexus_endpoints = Arc::new(
        nexus_endpoints::NexusEndpoints::load(
            config.store.clone(),
            namespaces.clone(),
            config.clock.clone(),
        )
        .await?,
    );
    let search_attributes =
        Arc::new(visibility::SearchAttributes::load(config.store.clone()).await?);
    if !config.search_attributes.is_empty() {
        let wanted: std::collections::HashMap<String, i32> =
            config.search_attributes.iter().cloned().collect();
        for ns in &config.namespaces {
            search_attributes
                .add(&ns.name, &wanted)
                .await
                .with_context(|| format!("registering search attributes in {}", ns.name))?;
        }
    }
    let matching = matching::Matching::new();
    let (timers, mut fired) = timers::Timers::start(config.clock.clone());
    let ownership = Arc::new(
        ownership::Ownership::take_all(&*config.store, config.clock.now_ms())
            .await
            .context("taking the database's shards")?,
    );
    let history = history::History::new(
        config.store.clone(),
        matching.clone(),
        timers,
        config.limits,
        search_attributes.clone(),
        config.clock.clone(),
        ownership,
    );
    history.limit_cache(config.cache_size);
    history.set_wake_lookahead(config.wake_lookahead);
    {
        let matching = matching.clone();
        let timers = history.timers().clone();
        let cached = Arc::downgrade(&history);
        config.metrics.set_snapshot(move || metrics::Snapshot {
            queues: matching.summary(),
            timers_pending: timers.pending(),
            cached_runs: cached.upgrade().map_or(0, |h| h.cached_runs()),
        });
    }
    outbound::start_worker(&history);
    let recovered = history.recover().await?;
    tracing::info!(recovered, "running executions recovered");
    let schedules = scheduler::Scheduler::start(history.clone(), config.store.clone()).await?;
    tracing::info!(schedules = schedules.len(), "schedules loaded");
    {
        let history = history.clone();
        tokio::spawn(async move {
            while let Some(f) = fired.recv().await {
                let history = history.clone();
                tokio::spawn(async move {
                    history.fire(&f.run_id, f.due).await;
                    drop(f.hold);
                });
            }
        });
    }

    if config.clock.as_virtual().is_none() {
        retention::start(history.clone(), namespaces.clone(), config.retention_scan);
    }

    let batches =
        batch::Batcher::start(history.clone(), config.store.clone(), config.frontend.batch).await?;
    let frontend = frontend::workflow_service::Frontend {
        batches,
        history,
        namespaces: namespaces.clone(),
        queries: frontend::queries::Queries::default(),
        schedules,
        metrics: config.metrics.clone(),
        authorization: config.authorization.clone().map(Arc::new),
        settings: config.frontend,
        nexus_endpoints: nexus_endpoints.clone(),
    };
    // Requests may be gzip-compressed (the Go clients send them so); replies are not: a gzip
    // encoder per response cost about a quarter of the server's CPU under load.
    let workflow =
        sundial_proto::workflowservice::workflow_service_server::WorkflowServiceServer::new(
            frontend,
        )
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(frontend::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(frontend::MAX_MESSAGE_SIZE);
    let operator =
        sundial_proto::operatorservice::operator_service_server::OperatorServiceServer::new(
            frontend::operator_service::Operator {
                namespaces: namespaces.clone(),
                search_attributes: search_attributes.clone(),
                nexus_endpoints: nexus_endpoints.clone(),
            },
        )
        .accept_compressed(CompressionEncoding::Gzip);
    let health =
        sundial_proto::health::health_server::HealthServer::new(frontend::health::HealthService {
            store: config.store.clone(),
        })
        .accept_compressed(CompressionEncoding::Gzip);

    // One set of routes behind both ports: the gRPC server, and the HTTP API's in-process
    // calls through the same layers (metrics, gzip, authorization).
    let mut routes = tonic::service::Routes::new(workflow)
        .add_service(operator)
        .add_service(health);
    if let Some(clock) = config.clock.as_virtual() {
        routes = routes.add_service(
            sundial_proto::testservice::test_service_server::TestServiceServer::new(
                frontend::test_service::TestService::new(clock.clone()),
            )
            .accept_compressed(CompressionEncoding::Gzip),
        );
    }
    let authorization = authz::Authz::layer(config.authorization, frontend::MAX_MESSAGE_SIZE);
    let http_api = match config.http_listen.or(config.ui_listen) {
        Some(_) => {
            use tower_layer::Layer;
            let stack = metrics_layer::RpcMetrics::layer(config.metrics.clone()).layer(
                gzip_requests::GzipRequests::layer(frontend::MAX_MESSAGE_SIZE)
                    .layer(authorization.layer(routes.clone())),
            );
            let api = http_api::HttpApi::new(http_api::grpc::Grpc::new(stack))?;
            Some(Arc::new(api))
        }
        None => None,
    };

    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if let Some(addr) = config.metrics_listen {
        let bound =
            metrics_endpoint::start(addr, config.metrics.clone(), stopped(stopping.clone()))
                .await?;
        tracing::info!(%bound, "metrics at /metrics");
    }
    let tcp = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = tcp.local_addr()?;
    if let Some(tls) = &tls {
        tls.watch(tls::RELOAD_POLL);
    }
    if let Some(api) = http_api {
        let http_tls = match &config.tls {
            Some(settings) => Some(
                tls::ReloadingTls::with_alpn(settings.clone(), &[tls::HTTP1])
                    .context("TLS of the HTTP API")?,
            ),
            None => None,
        };
        if let Some(http_tls) = &http_tls {
            http_tls.watch(tls::RELOAD_POLL);
        }
        let listen = |addr, tls| http_api::HttpListen {
            addr,
            tls,
            stop: stopping.clone(),
        };
        if let Some(addr) = config.http_listen {
            let bound = http_api::start(listen(addr, http_tls.clone()), api.clone()).await?;
            tracing::info!(%bound, "HTTP API at /api/v1");
        }
        if let Some(addr) = config.ui_listen {
            let bound = ui::start(listen(addr, http_tls), api).await?;
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(url = %format!("{scheme}://{bound}"), "web UI");
        }
    }
    // Waiting polls are answered at the stop on a task of their own: the server below may see
    // its incoming connections end first and then never poll its shutdown future again.
    {
        let matching = matching.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            stopped(stopping).await;
            matching.close();
        });
    }
    let incoming = listener::incoming(tcp, tls, stopped(stopping.clone()));
    ready(bound);
    let server = tonic::transport::Server::builder()
        // Temporal's frontend defaults: ping a quiet connection after a minute, drop it if the
        // ping is not answered within 10 s; recycle every connection after 5 minutes (GOAWAY,
        // then 70 s for calls in flight, longer than any long poll), which also bounds how
        // long an idle or silent connection is kept.
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(MAX_CONNECTION_AGE_GRACE)
        .layer(metrics_layer::RpcMetrics::layer(config.metrics.clone()))
        .layer(gzip_requests::GzipRequests::layer(
            frontend::MAX_MESSAGE_SIZE,
        ))
        .layer(authorization)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
    let grace = config.shutdown_grace;
    tokio::select! {
        served = server => served.context("gRPC server failed")?,
        _ = async { stopped(stopping).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "requests still open after the shutdown grace period; closing them");
        }
    }
    // The store's writer takes batches in order: once this empty one is committed, every
    // commit queued before it is on disk.
    let _ = config
        .store
        .commit(sundial_store::WriteBatch::default())
        .await;
    tracing::info!("shut down");
    Ok(())
}
