//! Shared harness for the integration tests that drive a server with the official
//! Temporal Rust SDK (`temporalio-sdk` / `temporalio-client`).
//!
//! By default every test spawns its own `sundial server start-dev` process on a free
//! loopback port with a database in a temporary directory, and kills it when the
//! [`TestServer`] is dropped. If the `SUNDIAL_ADDRESS` environment variable is set
//! (e.g. `127.0.0.1:7233`), no process is spawned and the tests talk to that address
//! instead, so the same tests can run against any Temporal-compatible server.
//!
//! `SUNDIAL_TEST_BACKEND=postgres` keeps each spawned server's state in a PostgreSQL database
//! of its own (`sundial_store::testing::TestDatabase`, dropped with the server); an unreachable
//! PostgreSQL fails the test.
#![allow(dead_code)]

use std::{
    fs::File,
    future::Future,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    str::FromStr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowFetchHistoryOptions,
    WorkflowGetResultOptions, WorkflowHandle, WorkflowStartOptions, errors::WorkflowGetResultError,
};
use temporalio_common::{
    HasWorkflowDefinition, WorkflowDefinition,
    data_converters::TemporalDeserializable,
    protos::temporal::api::{
        enums::v1::EventType, failure::v1::Failure, history::v1::HistoryEvent,
    },
};
use temporalio_sdk::{
    Runtime, Worker, WorkerOptions, activities::ActivityImplementer,
    workflows::WorkflowImplementation,
};

/// Namespace used by every test; `start-dev` servers create it at startup.
pub const NAMESPACE: &str = "default";

/// How long to keep trying to connect to a freshly spawned (or external) server.
const CONNECT_DEADLINE: Duration = Duration::from_secs(15);

/// Upper bound for any single wait on a workflow result, so a broken server makes a
/// test fail instead of hanging forever.
pub const RESULT_TIMEOUT: Duration = Duration::from_secs(20);

/// A server for one test: either a spawned `sundial` process or an external address.
pub struct TestServer {
    address: String,
    child: Mutex<Option<Child>>,
    log_path: Option<PathBuf>,
    // Held so the database directory lives as long as the server does.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database of this server, dropped with it.
    postgres: Option<sundial_store::testing::TestDatabase>,
}

impl TestServer {
    /// Starts a server (or uses `SUNDIAL_ADDRESS`) and returns once a client can connect.
    pub async fn start() -> (TestServer, Client) {
        let server = match std::env::var("SUNDIAL_ADDRESS") {
            Ok(addr) if !addr.trim().is_empty() => TestServer {
                address: addr.trim().to_string(),
                child: Mutex::new(None),
                log_path: None,
                _dir: None,
                postgres: None,
            },
            _ => Self::spawn(),
        };
        let client = server.connect().await;
        (server, client)
    }

    fn spawn() -> TestServer {
        let dir = tempfile::tempdir().expect("create temp dir for the server database");
        let port = free_port();
        let db = dir.path().join("sundial.db");
        let log_path = dir.path().join("server.log");
        let log = File::create(&log_path).expect("create server log file");
        let log_err = log.try_clone().expect("clone server log handle");
        let port_arg = port.to_string();
        let postgres = sundial_store::testing::TestDatabase::requested().then(|| {
            sundial_store::testing::TestDatabase::create("rs")
                .unwrap_or_else(|e| panic!("SUNDIAL_TEST_BACKEND=postgres: {e}"))
        });
        let storage: Vec<std::ffi::OsString> = match &postgres {
            Some(db) => vec!["--db-url".into(), (&db.url).into()],
            None => vec!["--db-filename".into(), db.into()],
        };
        let child = Command::new(env!("CARGO_BIN_EXE_sundial"))
            .args([
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--port",
            ])
            .arg(&port_arg)
            .args(&storage)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .expect("spawn the sundial binary");
        TestServer {
            address: format!("127.0.0.1:{port}"),
            child: Mutex::new(Some(child)),
            log_path: Some(log_path),
            _dir: Some(dir),
            postgres,
        }
    }

    /// `host:port` of the server.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn url(&self) -> Url {
        let with_scheme = if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("http://{}", self.address)
        };
        Url::from_str(&with_scheme).expect("server address must form a valid URL")
    }

    /// Connects a new client, retrying until [`CONNECT_DEADLINE`].
    pub async fn connect(&self) -> Client {
        let deadline = Instant::now() + CONNECT_DEADLINE;
        loop {
            let opts = ConnectionOptions::new(self.url())
                .identity("sundial-sdk-rust-tests".to_string())
                .connect_timeout(Duration::from_secs(2))
                .build();
            let last_err =
                match tokio::time::timeout(Duration::from_secs(5), Connection::connect(opts)).await
                {
                    Ok(Ok(conn)) => {
                        return Client::new(conn, ClientOptions::new(NAMESPACE).build())
                            .expect("build client");
                    }
                    Ok(Err(e)) => format!("{e:?}"),
                    Err(_) => "connect attempt timed out".to_string(),
                };
            if let Some(status) = self.exited() {
                panic!(
                    "server process exited early ({status}) before accepting connections.\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "could not connect to the server at {} within {CONNECT_DEADLINE:?}: {last_err}\n{}",
                    self.address,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Exit status of the spawned server if it has already exited.
    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last part of the spawned server's log (empty for an external server).
    pub fn log_tail(&self) -> String {
        let Some(path) = &self.log_path else {
            return String::new();
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let start = text.len().saturating_sub(4000);
                let start = (start..text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                format!("--- server log (tail) ---\n{}", &text[start..])
            }
            Err(e) => format!("(server log unavailable: {e})"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = child {
            if std::thread::panicking() {
                eprintln!("{}", self.log_tail());
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The database goes once the server is gone.
        self.postgres.take();
    }
}

/// Asks the OS for a free loopback port (bind to port 0, read it back, release it).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A name that is unique across tests, processes and repeated runs.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// How long a worker may take to shut down once a test body is done.
const WORKER_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a worker built from `options` while `body` executes, then shuts the worker down
/// and returns `body`'s output. The worker future is not `Send`, so it is driven on the
/// current task next to `body` rather than spawned. A worker that stops on its own
/// before `body` finishes fails the test with the worker's error.
pub async fn with_worker<T, F>(client: &Client, options: WorkerOptions, body: F) -> T
where
    F: Future<Output = T>,
{
    let runtime = Runtime::from_current_tokio(Default::default()).expect("create SDK runtime");
    let mut worker = Worker::new(&runtime, client.clone(), options).expect("create worker");
    let shutdown = worker.shutdown_handle();
    let run = worker.run();
    tokio::pin!(run);
    tokio::pin!(body);
    let out = tokio::select! {
        res = &mut run => panic!("worker stopped before the test body finished: {res:?}"),
        out = &mut body => out,
    };
    shutdown();
    tokio::time::timeout(WORKER_SHUTDOWN_TIMEOUT, run)
        .await
        .expect("worker did not shut down in time")
        .expect("worker run failed");
    out
}

/// Fetches the full history of the handle's run (GetWorkflowExecutionHistory).
pub async fn history<W: HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
) -> Vec<HistoryEvent> {
    handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .expect("fetch workflow history")
}

/// Awaits a workflow result, bounded by [`RESULT_TIMEOUT`] (a result that never comes fails
/// the test).
pub async fn result_of<W>(
    handle: &WorkflowHandle<Client, W>,
) -> Result<W::Output, WorkflowGetResultError>
where
    W: HasWorkflowDefinition,
    W::Output: TemporalDeserializable + 'static,
{
    tokio::time::timeout(
        RESULT_TIMEOUT,
        handle.get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("timed out waiting for the workflow result")
}

/// How long a worker made by [`WorkflowTest::worker_with_activities`] lets running activities
/// finish when it shuts down.
pub const ACTIVITY_SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// A test that runs one workflow on a server of its own: the server, a client, and a task
/// queue and workflow id used by this test only.
pub struct WorkflowTest {
    /// Kept so that the server lives as long as the test.
    pub server: TestServer,
    pub client: Client,
    /// `rs-<name>-tq-…`, unique to this test run.
    pub task_queue: String,
    /// `rs-<name>-wf-…`, unique to this test run.
    pub workflow_id: String,
}

/// How a workflow run started by [`WorkflowTest::run`] ended.
pub struct CompletedRun<T> {
    pub result: Result<T, WorkflowGetResultError>,
    /// From just before the start request until the result arrived.
    pub elapsed: Duration,
    /// The run's full history, fetched after the result.
    pub events: Vec<HistoryEvent>,
}

impl WorkflowTest {
    /// Starts a server (see [`TestServer::start`]) and names the task queue and workflow id
    /// after `name`.
    pub async fn start(name: &str) -> WorkflowTest {
        let (server, client) = TestServer::start().await;
        WorkflowTest {
            server,
            client,
            task_queue: unique(&format!("rs-{name}-tq")),
            workflow_id: unique(&format!("rs-{name}-wf")),
        }
    }

    /// Options for a worker on this test's task queue that runs workflow `W`.
    pub fn worker<W>(&self) -> WorkerOptions
    where
        W: WorkflowImplementation,
        <W::Run as WorkflowDefinition>::Input: Send,
    {
        let mut options = WorkerOptions::new(self.task_queue.clone()).build();
        options.register_workflow::<W>().expect("register workflow");
        options
    }

    /// [`Self::worker`] that also runs `activities`, giving running activities
    /// [`ACTIVITY_SHUTDOWN_GRACE`] to finish when the worker shuts down.
    pub fn worker_with_activities<W>(&self, activities: impl ActivityImplementer) -> WorkerOptions
    where
        W: WorkflowImplementation,
        <W::Run as WorkflowDefinition>::Input: Send,
    {
        let mut options = self.worker::<W>();
        options.register_activities(activities);
        options.graceful_shutdown_period = Some(ACTIVITY_SHUTDOWN_GRACE);
        options
    }

    /// Runs a worker built from `worker_options` (which should poll [`Self::task_queue`]) and,
    /// while it runs, starts `workflow` with `input` as [`Self::workflow_id`], waits for the
    /// result (see [`result_of`]) and fetches the history.
    pub async fn run<W>(
        &self,
        worker_options: WorkerOptions,
        workflow: W,
        input: W::Input,
    ) -> CompletedRun<W::Output>
    where
        W: HasWorkflowDefinition,
        W::Input: Send,
        W::Output: TemporalDeserializable + 'static,
    {
        with_worker(&self.client, worker_options, async {
            let started_at = Instant::now();
            let handle = self
                .client
                .start_workflow(
                    workflow,
                    input,
                    WorkflowStartOptions::new(self.task_queue.clone(), self.workflow_id.clone())
                        .build(),
                )
                .await
                .expect("start workflow");
            let result = result_of(&handle).await;
            let elapsed = started_at.elapsed();
            CompletedRun {
                result,
                elapsed,
                events: history(&handle).await,
            }
        })
        .await
    }
}

/// Event types of a history, in order.
pub fn event_types(events: &[HistoryEvent]) -> Vec<EventType> {
    events
        .iter()
        .map(|e| EventType::try_from(e.event_type).unwrap_or(EventType::Unspecified))
        .collect()
}

/// Number of events of the given type.
pub fn count_events(events: &[HistoryEvent], ty: EventType) -> usize {
    events.iter().filter(|e| e.event_type == ty as i32).count()
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
