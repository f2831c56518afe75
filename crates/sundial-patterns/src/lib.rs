//! Shared plumbing for the pattern programs in `src/bin/`.
//!
//! Every program is a worker and a starter in one process: it connects to the server given
//! by `--address` / `--namespace`, runs a worker on a task queue of its own, starts one or
//! more workflows, checks that the outcome is the one the pattern promises, and exits 0 only
//! then. [`run_pattern`] does the common part (argument parsing, connecting with a clear error,
//! the overall time limit, the exit code); [`Pattern::with_worker`] runs a worker next to the
//! starter code.

use std::{
    future::Future,
    process::ExitCode,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow};
use clap::Parser;
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, NamespacedClient,
    TlsOptions, Url, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowGetResultOptions,
    WorkflowHandle, WorkflowStartOptions,
};
use temporalio_common::{
    HasWorkflowDefinition,
    data_converters::DataConverter,
    protos::temporal::api::{
        enums::v1::EventType, failure::v1::Failure, history::v1::HistoryEvent,
    },
};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Each program must finish within this time (the catalogue promises 30 s); the pattern body
/// gets a little less so that the worker can still shut down.
pub const PATTERN_TIME_LIMIT: Duration = Duration::from_secs(27);

/// How long connecting to the server may take before the program gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a worker may take to shut down once the starter is done.
const WORKER_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Command-line arguments shared by every pattern program.
#[derive(Debug, Clone, Parser)]
pub struct Args {
    /// Address of the Temporal frontend (Sundial or any Temporal server), `HOST:PORT` or a URL.
    #[arg(long, default_value = "127.0.0.1:7233")]
    pub address: String,
    /// Namespace to run the workflows in.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// PEM client certificate for mutual TLS (with --tls-key). Any of the --tls-* flags
    /// switches the connection to TLS.
    #[arg(long)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM CA certificate that signed the server's certificate (else the system roots).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Name to verify the server certificate against (else the host of --address).
    #[arg(long)]
    pub server_name: Option<String>,
}

/// Pattern-specific flags next to the shared [`Args`].
#[derive(Debug, Clone, Parser)]
struct CommandLine<E: clap::Args> {
    #[command(flatten)]
    common: Args,
    #[command(flatten)]
    extra: E,
}

/// No pattern-specific flags.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct NoExtraArgs {}

impl Args {
    /// The server address as a URL (`http://` is assumed when no scheme is given).
    pub fn url(&self) -> anyhow::Result<Url> {
        let scheme = if self.uses_tls() { "https" } else { "http" };
        let with_scheme = if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("{scheme}://{}", self.address)
        };
        Url::from_str(&with_scheme)
            .with_context(|| format!("--address {:?} is not a valid HOST:PORT", self.address))
    }
}

impl Args {
    /// Whether any TLS flag was given.
    pub fn uses_tls(&self) -> bool {
        self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_ca.is_some()
            || self.server_name.is_some()
    }

    /// The SDK's TLS options from the --tls-* flags (`None` without them).
    pub fn tls_options(&self) -> anyhow::Result<Option<TlsOptions>> {
        if !self.uses_tls() {
            return Ok(None);
        }
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
        };
        let client = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                ClientTlsOptions::builder()
                    .client_cert(read("--tls-cert", cert)?)
                    .client_private_key(read("--tls-key", key)?)
                    .build(),
            ),
            (None, None) => None,
            _ => return Err(anyhow!("--tls-cert and --tls-key go together")),
        };
        let mut options = TlsOptions::default();
        options.server_root_ca_cert = match &self.tls_ca {
            Some(ca) => Some(read("--tls-ca", ca)?),
            None => None,
        };
        options.domain = self.server_name.clone();
        options.client_tls_options = client;
        Ok(Some(options))
    }
}

/// What a pattern program gets to work with.
pub struct Pattern {
    /// The parsed command line.
    pub args: Args,
    /// A client with the default (JSON) data converter.
    pub client: Client,
    /// A task queue used by this process only.
    pub task_queue: String,
    name: &'static str,
}

impl Pattern {
    /// The program's name, e.g. `entity`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A workflow id unique to this run, starting with the program name and `what`.
    pub fn workflow_id(&self, what: &str) -> String {
        unique(&format!("{}-{what}", self.name))
    }

    /// Connects another client to the same server, with the given data converter (the
    /// encryption pattern uses this for a client whose payloads go through a codec).
    pub async fn connect_with(&self, data_converter: DataConverter) -> anyhow::Result<Client> {
        connect(&self.args, Some(data_converter)).await
    }

    /// Runs a worker built from `options` on the default client while `body` runs, then
    /// shuts the worker down and returns what `body` returned.
    pub async fn with_worker<T>(
        &self,
        options: WorkerOptions,
        body: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        with_worker(&self.client, options, body).await
    }

    /// Starts `workflow` with `input` as workflow `id` on this process's task queue (default
    /// start options) and prints the id; see [`start_workflow`].
    pub async fn start<W: Startable>(
        &self,
        workflow: W,
        input: W::Input,
        id: &str,
    ) -> anyhow::Result<WorkflowHandle<Client, W>> {
        start_workflow(&self.client, &self.task_queue, workflow, input, id).await
    }

    /// [`Pattern::start`], then waits for the workflow's result (following continue-as-new
    /// runs, the SDK default). A run that does not succeed is an error.
    pub async fn start_and_wait<W: Startable>(
        &self,
        workflow: W,
        input: W::Input,
        id: &str,
    ) -> anyhow::Result<W::Output> {
        let handle = self.start(workflow, input, id).await?;
        Ok(handle
            .get_result(WorkflowGetResultOptions::default())
            .await?)
    }
}

/// A workflow (its `run` method, e.g. `GreetingWorkflow::run`) that a client can start: its
/// input can be sent to the task that starts it.
pub trait Startable: HasWorkflowDefinition<Input: Send> {}

impl<W: HasWorkflowDefinition<Input: Send>> Startable for W {}

/// Starts `workflow` with `input` as workflow `id` on `task_queue` through `client`, with the
/// default start options, and prints the id (see [`print_workflow_id`]) once the server has
/// accepted the start.
pub async fn start_workflow<W: Startable>(
    client: &Client,
    task_queue: &str,
    workflow: W,
    input: W::Input,
    id: &str,
) -> anyhow::Result<WorkflowHandle<Client, W>> {
    let handle = client
        .start_workflow(
            workflow,
            input,
            WorkflowStartOptions::new(task_queue, id).build(),
        )
        .await?;
    print_workflow_id(id);
    Ok(handle)
}

/// Parses the arguments, connects, runs `body` within [`PATTERN_TIME_LIMIT`] and turns the
/// outcome into the process exit code. Call it from `main`.
pub fn run_pattern<F, Fut>(name: &'static str, body: F) -> ExitCode
where
    F: FnOnce(Pattern) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_pattern_with(name, |pattern, _: NoExtraArgs| body(pattern))
}

/// [`run_pattern`] for a program with flags of its own (`E`), parsed next to the shared ones.
pub fn run_pattern_with<E, F, Fut>(name: &'static str, body: F) -> ExitCode
where
    E: clap::Args + Clone + std::fmt::Debug,
    F: FnOnce(Pattern, E) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let CommandLine {
        common: args,
        extra,
    } = CommandLine::<E>::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("FAIL {name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        let client = connect(&args, None).await?;
        let pattern = Pattern {
            task_queue: unique(&format!("{name}-tq")),
            args,
            client,
            name,
        };
        match tokio::time::timeout(PATTERN_TIME_LIMIT, body(pattern, extra)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow!(
                "the pattern did not finish within {PATTERN_TIME_LIMIT:?}"
            )),
        }
    });
    // Dropping the runtime would wait for blocking tasks (none of ours); don't hang on them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => {
            println!("PASS {name}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAIL {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects a client, failing with a message that says what to do when nothing answers.
pub async fn connect(args: &Args, data_converter: Option<DataConverter>) -> anyhow::Result<Client> {
    let url = args.url()?;
    let opts = ConnectionOptions::new(url)
        .identity(format!("sundial-patterns@{}", std::process::id()))
        .connect_timeout(CONNECT_TIMEOUT)
        .maybe_tls_options(args.tls_options()?)
        .build();
    let unreachable = |detail: String| {
        anyhow!(
            "cannot reach a Temporal server at {} ({detail}). Start one with \
             `sundial server start-dev` or point --address at a running server",
            args.address
        )
    };
    let connection =
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, Connection::connect(opts)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {:?}",
                    CONNECT_TIMEOUT * 2
                )));
            }
        };
    let client_options = match data_converter {
        Some(dc) => ClientOptions::new(args.namespace.clone())
            .data_converter(dc)
            .build(),
        None => ClientOptions::new(args.namespace.clone()).build(),
    };
    Client::new(connection, client_options).context("building the client")
}

/// Runs a worker built from `options` while `body` executes, then shuts the worker down. The
/// worker future is not `Send`, so it is driven on the current task next to `body`.
pub async fn with_worker<T>(
    client: &Client,
    options: WorkerOptions,
    body: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let runtime = Runtime::from_current_tokio(Default::default())
        .map_err(|e| anyhow!("creating the SDK runtime: {e}"))?;
    with_worker_on(&runtime, client, options, body).await
}

/// [`with_worker`] on a given SDK runtime (e.g. one whose telemetry exports metrics).
pub async fn with_worker_on<T>(
    runtime: &Runtime,
    client: &Client,
    options: WorkerOptions,
    body: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let mut worker = Worker::new(runtime, client.clone(), options)
        .map_err(|e| anyhow!("creating the worker: {e}"))?;
    let shutdown = worker.shutdown_handle();
    let run = worker.run();
    tokio::pin!(run);
    tokio::pin!(body);
    let out = tokio::select! {
        res = &mut run => {
            return Err(anyhow!("the worker stopped before the starter finished: {res:?}"));
        }
        out = &mut body => out,
    };
    shutdown();
    match tokio::time::timeout(WORKER_SHUTDOWN_TIMEOUT, run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: the worker stopped with an error: {e}"),
        Err(_) => {
            eprintln!("warning: the worker did not shut down within {WORKER_SHUTDOWN_TIMEOUT:?}")
        }
    }
    out
}

/// Prints the line that lets a user find a workflow with `temporal workflow show -w <id>`.
pub fn print_workflow_id(id: &str) {
    println!("workflow id: {id}");
}

/// A name unique across processes and repeated runs.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Fetches the full history of one run (or of the latest run when `run_id` is `None`) as the
/// server stores it: payloads are returned exactly as they are on the server, undecoded.
pub async fn history(
    client: &Client,
    workflow_id: &str,
    run_id: Option<&str>,
) -> anyhow::Result<Vec<HistoryEvent>> {
    let info = match run_id {
        Some(run_id) => WorkflowExecutionInfo::builder()
            .namespace(client_namespace(client))
            .workflow_id(workflow_id)
            .run_id(run_id.to_string())
            .build(),
        None => WorkflowExecutionInfo::builder()
            .namespace(client_namespace(client))
            .workflow_id(workflow_id)
            .build(),
    };
    let handle = info.bind_untyped(client.clone());
    let events = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .with_context(|| format!("fetching the history of {workflow_id}"))?;
    Ok(events)
}

fn client_namespace(client: &Client) -> String {
    client.namespace()
}

/// The type of an event (unknown numbers map to `Unspecified`).
pub fn event_type(event: &HistoryEvent) -> EventType {
    EventType::try_from(event.event_type).unwrap_or(EventType::Unspecified)
}

/// Number of events of the given type.
pub fn count_events(events: &[HistoryEvent], ty: EventType) -> usize {
    events.iter().filter(|e| event_type(e) == ty).count()
}

/// A failure followed by all of its causes.
pub fn failure_chain(failure: &Failure) -> Vec<&Failure> {
    let mut chain = vec![failure];
    let mut cur = failure;
    while let Some(cause) = cur.cause.as_deref() {
        chain.push(cause);
        cur = cause;
    }
    chain
}
