//! Sundial's server: the frontend (gRPC), history (execution owner), matching (task queues) and
//! timer roles of one process, wired together over one store.

pub mod clock;
pub mod error;
pub mod frontend;
pub mod history;
pub mod matching;
pub mod namespaces;
pub mod outbound;
pub mod run_events;
pub mod scheduler;
pub mod timers;
pub mod tokens;
pub mod updates;
pub mod visibility;

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use sundial_store::Store;
use tonic::codec::CompressionEncoding;

/// What the server needs to start.
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub store: Arc<dyn Store>,
    /// Namespaces registered at start if missing (`default` and `--namespace` values).
    pub namespaces: Vec<String>,
    /// Thresholds applied by the engine (continue-as-new suggestions).
    pub limits: sundial_engine::Limits,
}

/// Starts every role and serves gRPC until `shutdown` resolves. `ready` is called once the
/// listener is bound and recovery is done.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let namespaces = Arc::new(namespaces::Namespaces::load(config.store.clone())?);
    for name in &config.namespaces {
        namespaces
            .ensure(name)
            .await
            .with_context(|| format!("registering namespace {name}"))?;
    }
    let search_attributes = Arc::new(visibility::SearchAttributes::load(config.store.clone())?);
    let matching = matching::Matching::new();
    let (timers, mut fired) = timers::Timers::start(clock::now_ms);
    let history = history::History::new(
        config.store.clone(),
        matching.clone(),
        timers,
        config.limits,
        search_attributes.clone(),
    );
    let recovered = history.recover().await?;
    tracing::info!(recovered, "running executions recovered");
    let schedules = scheduler::Scheduler::start(history.clone(), config.store.clone())?;
    tracing::info!(schedules = schedules.len(), "schedules loaded");
    {
        let history = history.clone();
        tokio::spawn(async move {
            while let Some(f) = fired.recv().await {
                let history = history.clone();
                tokio::spawn(async move { history.fire_deadline(&f.run_id, f.kind).await });
            }
        });
    }

    let frontend = frontend::workflow_service::Frontend {
        history,
        namespaces: namespaces.clone(),
        queries: frontend::queries::Queries::default(),
        schedules,
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
            },
        )
        .accept_compressed(CompressionEncoding::Gzip);
    let health =
        sundial_proto::health::health_server::HealthServer::new(frontend::health::HealthService)
            .accept_compressed(CompressionEncoding::Gzip);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    ready(bound);
    // Nagle's algorithm with delayed ACKs adds ~40 ms to small request/response exchanges.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            if let Ok(stream) = &conn {
                let _ = stream.set_nodelay(true);
            }
            conn
        },
    );
    tonic::transport::Server::builder()
        .add_service(workflow)
        .add_service(operator)
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, {
            let matching = matching.clone();
            async move {
                shutdown.await;
                matching.release_pollers();
            }
        })
        .await
        .context("gRPC server failed")?;
    Ok(())
}
