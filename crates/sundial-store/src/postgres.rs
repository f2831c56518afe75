//! PostgreSQL implementation: one writer task on a connection of its own that groups every
//! batch waiting at that moment into one transaction (a savepoint per batch, so a refused
//! batch fails alone), and a pool of connections for reads. The statements of one batch are
//! pipelined (sent together, answered together), so a batch costs one round trip.
//!
//! Single writer: the writer's connection holds a session advisory lock for as long as it
//! lives. A second server on the same database refuses to start; a server whose connection was
//! lost and whose lock another server took since stops writing for good
//! ([`StoreError::Failed`]). While the database cannot be reached, commits and reads fail with
//! [`StoreError::Unavailable`], health is false, and the writer reconnects every second.

use crate::group::{self, Health, Job};
use crate::postgres_query::Postgres;
use crate::query_sql;
use crate::sqlite::page_of;
use crate::{
    BATCH_JOB_RECORD, BatchJobRow, CommitObserver, CommitReceipt, ExecutionRow, NamespaceRow,
    NexusEndpointRow, PageKey, Predicate, RESUME_AT_START, ScheduleRow, ShardFence, ShardLease,
    SqlValue, Store, StoreError, VisibilityPage, VisibilityQuery, WakeKey, WriteBatch,
};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

/// The schema this build writes (the row of `sundial_schema`).
/// 1: the first layout; 2: current-execution rows (replacing the unique index on running
/// runs), slots on runs, shard leases and the fence check; 3: the wake index
/// (`executions.wake_at`, see [`ExecutionRow::wake_at`]); 4: the Nexus endpoint registry
/// (`nexus_endpoints`).
const SCHEMA_VERSION: i64 = 4;
/// Advisory lock keys: schema migrations, and the one writer of a database.
const MIGRATION_LOCK: i64 = 0x5375_6e64_0001;
const WRITER_LOCK: i64 = 0x5375_6e64_0002;

/// Migrations, in order: entry `i` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE namespaces (
    name TEXT COLLATE \"C\" PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE executions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT COLLATE \"C\" NOT NULL UNIQUE,
    namespace TEXT COLLATE \"C\" NOT NULL,
    workflow_id TEXT COLLATE \"C\" NOT NULL,
    status INTEGER NOT NULL,
    next_event_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    state BYTEA NOT NULL
);
CREATE INDEX executions_by_workflow ON executions(namespace, workflow_id, seq);
CREATE INDEX executions_running ON executions(seq) WHERE status = 1;
CREATE UNIQUE INDEX executions_one_running ON executions(namespace, workflow_id) WHERE status = 1;
CREATE TABLE visibility (
    run_id TEXT COLLATE \"C\" PRIMARY KEY,
    namespace TEXT COLLATE \"C\" NOT NULL,
    workflow_id TEXT COLLATE \"C\" NOT NULL,
    workflow_type TEXT COLLATE \"C\" NOT NULL,
    task_queue TEXT COLLATE \"C\" NOT NULL,
    status INTEGER NOT NULL,
    start_time BIGINT NOT NULL,
    execution_time BIGINT NOT NULL,
    close_time BIGINT,
    history_length BIGINT NOT NULL,
    execution_duration BIGINT,
    parent_workflow_id TEXT COLLATE \"C\",
    parent_run_id TEXT COLLATE \"C\",
    root_workflow_id TEXT COLLATE \"C\",
    root_run_id TEXT COLLATE \"C\",
    search_attributes JSONB NOT NULL,
    info BYTEA NOT NULL
);
CREATE INDEX visibility_by_start ON visibility(namespace, start_time);
CREATE INDEX visibility_by_status ON visibility(namespace, status, start_time);
CREATE INDEX visibility_by_type ON visibility(namespace, workflow_type, start_time);
CREATE INDEX visibility_by_id ON visibility(namespace, workflow_id);
CREATE INDEX visibility_closed ON visibility(namespace, close_time) WHERE close_time IS NOT NULL;
CREATE INDEX visibility_attributes ON visibility USING gin (search_attributes jsonb_path_ops);
CREATE TABLE search_attributes (
    namespace TEXT COLLATE \"C\" NOT NULL,
    name TEXT COLLATE \"C\" NOT NULL,
    value_type INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE schedules (
    namespace TEXT COLLATE \"C\" NOT NULL,
    schedule_id TEXT COLLATE \"C\" NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (namespace, schedule_id)
);
CREATE TABLE history (
    run_id TEXT COLLATE \"C\" NOT NULL,
    event_id BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (run_id, event_id)
);
CREATE TABLE batch_jobs (
    namespace TEXT COLLATE \"C\" NOT NULL,
    job_id TEXT COLLATE \"C\" NOT NULL,
    part BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (namespace, job_id, part)
);
CREATE FUNCTION sundial_expect_row(matched BIGINT, message TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF matched = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'SD409', MESSAGE = message;
    END IF;
    RETURN matched;
END $$;
",
    "
ALTER TABLE executions ADD COLUMN slot INTEGER;
CREATE TABLE current_executions (
    namespace TEXT COLLATE \"C\" NOT NULL,
    workflow_id TEXT COLLATE \"C\" NOT NULL,
    run_id TEXT COLLATE \"C\" NOT NULL,
    status INTEGER NOT NULL,
    PRIMARY KEY (namespace, workflow_id)
);
INSERT INTO current_executions (namespace, workflow_id, run_id, status)
    SELECT DISTINCT ON (namespace, workflow_id) namespace, workflow_id, run_id, status
    FROM executions ORDER BY namespace, workflow_id, seq DESC;
DROP INDEX executions_one_running;
CREATE TABLE shards (
    shard_id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
INSERT INTO shards (shard_id, owner, epoch, expires_ms) VALUES (0, '', 0, 0);
CREATE FUNCTION sundial_check_fence(fenced_shard INTEGER, fenced_epoch BIGINT) RETURNS INTEGER
LANGUAGE plpgsql AS $$
BEGIN
    -- The share lock makes a concurrent takeover (an update of the row) wait for this
    -- transaction, and this transaction see the takeover if it came first.
    PERFORM 1 FROM shards WHERE shard_id = fenced_shard AND epoch = fenced_epoch FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'SD410', MESSAGE = format(
            'shard %s is no longer held at epoch %s', fenced_shard, fenced_epoch);
    END IF;
    RETURN 1;
END $$;
CREATE FUNCTION sundial_expect_version(matched BIGINT, present BOOLEAN, message TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF matched = 0 AND present THEN
        RAISE EXCEPTION USING ERRCODE = 'SD409', MESSAGE = message;
    ELSIF matched = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'SD404', MESSAGE = message;
    END IF;
    RETURN matched;
END $$;
",
    // 3: the wake index, which replaces the index of running runs. Runs written before it are
    // loaded at start-up, as they always were; each gets its own entry with its next write.
    "
ALTER TABLE executions ADD COLUMN wake_at BIGINT;
UPDATE executions SET wake_at = 0 WHERE status = 1;
CREATE INDEX executions_wake ON executions(wake_at, run_id) WHERE status = 1 AND wake_at IS NOT NULL;
DROP INDEX executions_running;
",
    // 4: the Nexus endpoint registry, one row per endpoint name (cluster-wide, unfenced).
    "
CREATE TABLE nexus_endpoints (
    name TEXT COLLATE \"C\" PRIMARY KEY,
    data BYTEA NOT NULL
);
",
];

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// A libpq-style URL or key-value string (`postgres://user@host:5432/db`).
    pub url: String,
    /// Connections for reads (the writer has one more of its own).
    pub pool_size: usize,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// TLS to the database: `None` connects without TLS unless the URL says `sslmode=require`
    /// (then the system's roots verify the server); `Some(ca)` always uses TLS, verified
    /// against the PEM certificates in that file.
    pub ca_file: Option<std::path::PathBuf>,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// The `slot` column's value for a run (slots fit an INTEGER).
fn slot_column(namespace: &str, workflow_id: &str) -> i32 {
    crate::shard::slot_of(namespace, workflow_id) as i32
}

/// Opens a new connection (with TLS if configured) and drives it on a task of its own.
type Connect = Arc<dyn Fn() -> BoxFuture<'static, Result<Client, StoreError>> + Send + Sync>;

/// PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    jobs: mpsc::UnboundedSender<Job>,
    pool: deadpool_postgres::Pool,
    shard_count: u32,
    health: Arc<Health>,
}

/// Where the URL points, for messages (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// True for errors that mean the connection (or the server) is gone rather than that the
/// statement was wrong: the same statement may succeed on a new connection.
fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || code.starts_with("57P") || code == "53300";
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

fn read_error(where_: &str, e: tokio_postgres::Error) -> StoreError {
    if is_connection_error(&e) {
        StoreError::Unavailable(format!("{where_}: {e}"))
    } else if let Some(invalid) = invalid_input(&e) {
        invalid
    } else {
        StoreError::Backend(format!("{where_}: {}", error_text(&e)))
    }
}

/// A value PostgreSQL refuses to store or compare (SQLSTATE class 22, data exception: above
/// all the NUL character, which its text and JSON types cannot hold) as the request's error.
fn invalid_input(e: &tokio_postgres::Error) -> Option<StoreError> {
    let code = e.code()?.code();
    if !code.starts_with("22") {
        return None;
    }
    let hint = if matches!(code, "22021" | "22P05") {
        ": PostgreSQL cannot store the NUL character (U+0000) in names, ids and search attributes"
    } else {
        ""
    };
    Some(StoreError::InvalidInput(format!(
        "the database refused a value of the request ({}){hint}",
        error_text(e)
    )))
}

/// The server's message and detail when it sent one, else the client's.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            // The client's errors wrap their cause (a refused certificate, a reset
            // connection): name it too.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Backend(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    StoreError::Backend(format!("bad certificate in {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    StoreError::Backend(format!("bad certificate in {}: {e}", path.display()))
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The connection factory and pool for `config` with connector `tls`.
fn connect_with<T>(
    config: tokio_postgres::Config,
    tls: T,
    pool_size: usize,
    timeout: Duration,
) -> Result<(Connect, deadpool_postgres::Pool), StoreError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    let target = describe(&config);
    let manager = deadpool_postgres::Manager::from_config(
        config.clone(),
        tls.clone(),
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(pool_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}")))?;
    let connect: Connect = Arc::new(move || {
        let (config, tls, target) = (config.clone(), tls.clone(), target.clone());
        Box::pin(async move {
            let (client, connection) = tokio::time::timeout(timeout, config.connect(tls))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "cannot connect to PostgreSQL at {target}: timed out after {timeout:?}"
                    ))
                })?
                .map_err(|e| {
                    StoreError::Unavailable(format!(
                        "cannot connect to PostgreSQL at {target}: {}",
                        error_text(&e)
                    ))
                })?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "PostgreSQL connection ended");
                }
            });
            Ok(client)
        })
    });
    Ok((connect, pool))
}

/// Creates the schema or brings an older one up to [`SCHEMA_VERSION`]; refuses a newer one.
/// Runs under an advisory lock, so servers starting together migrate once.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let failed = |e: tokio_postgres::Error| read_error("schema migration", e);
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sundial_schema (version BIGINT NOT NULL)")
        .await
        .map_err(failed)?;
    let found: i64 = match tx
        .query_opt("SELECT version FROM sundial_schema", &[])
        .await
        .map_err(failed)?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO sundial_schema (version) VALUES (0)", &[])
                .await
                .map_err(failed)?;
            0
        }
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database has schema version {found}, newer than this Sundial supports ({SCHEMA_VERSION}); use a newer release"
        )));
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(migration).await.map_err(failed)?;
        tracing::info!(from, to = from + 1, "PostgreSQL schema migrated");
    }
    if found < 2 {
        // Slots of the runs written before version 2 (computed here, as for every new run).
        let runs = tx
            .query(
                "SELECT seq, namespace, workflow_id FROM executions WHERE slot IS NULL",
                &[],
            )
            .await
            .map_err(failed)?;
        let set_slot = tx
            .prepare("UPDATE executions SET slot = $2 WHERE seq = $1")
            .await
            .map_err(failed)?;
        for run in runs {
            let slot = slot_column(run.get(1), run.get(2));
            tx.execute(&set_slot, &[&run.get::<_, i64>(0), &slot])
                .await
                .map_err(failed)?;
        }
    }
    tx.execute("UPDATE sundial_schema SET version = $1", &[&SCHEMA_VERSION])
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)
}

impl PostgresStore {
    /// Connects, migrates the schema and starts the writer; fails naming the database and the
    /// reason when it cannot be reached or is in use by another server.
    pub async fn open(
        options: &PostgresOptions,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = options.url.parse().map_err(|e| {
            StoreError::Backend(format!("invalid PostgreSQL URL {:?}: {e}", options.url))
        })?;
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("sundial");
        }
        let wants_tls = options.ca_file.is_some()
            || config.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
        let (connect, pool) = if wants_tls {
            if options.ca_file.is_some() {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
            }
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
                options.ca_file.as_deref(),
            )?);
            connect_with(config, tls, options.pool_size, options.connect_timeout)?
        } else {
            connect_with(
                config,
                tokio_postgres::NoTls,
                options.pool_size,
                options.connect_timeout,
            )?
        };
        let mut first = connect().await?;
        migrate(&mut first).await?;
        let shard_count: i64 = first
            .query_one("SELECT count(*) FROM shards", &[])
            .await
            .map_err(|e| read_error("shard count", e))?
            .get(0);
        let shard_count = u32::try_from(shard_count)
            .ok()
            .filter(|&c| c >= 1)
            .ok_or_else(|| StoreError::Backend(format!("the database has {shard_count} shards")))?;
        drop(first);
        let writer = Writer::connect(&connect).await?;
        let health = Arc::new(Health::default());
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer_loop(
            Some(writer),
            connect,
            shard_count,
            rx,
            observer,
            health.clone(),
        ));
        Ok(PostgresStore {
            jobs,
            pool,
            shard_count,
            health,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("no PostgreSQL connection: {e}")))
    }

    /// Runs a fixed statement (prepared once per pooled connection) and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| read_error("prepare", e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| read_error("read", e))
    }
}

/// The writer's connection and its prepared statements.
struct Writer {
    client: Client,
    check_fence: Statement,
    make_current: Statement,
    set_current_status: Statement,
    drop_current: Statement,
    create_execution: Statement,
    replace_execution: Statement,
    put_event: Statement,
    put_events: Statement,
    put_namespace: Statement,
    put_visibility: Statement,
    put_attribute: Statement,
    drop_attribute: Statement,
    drop_run: Statement,
    drop_history: Statement,
    drop_visibility: Statement,
    put_schedule: Statement,
    drop_schedule: Statement,
    put_batch_job: Statement,
    drop_batch_job: Statement,
    put_nexus_endpoint: Statement,
    drop_nexus_endpoint: Statement,
}

impl Writer {
    async fn connect(connect: &Connect) -> Result<Writer, StoreError> {
        let client = connect().await?;
        let failed = |e: tokio_postgres::Error| read_error("writer set-up", e);
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
            .await
            .map_err(failed)?
            .get(0);
        if !locked {
            return Err(StoreError::Backend(
                "the database is in use by another Sundial server (it holds the writer lock)"
                    .into(),
            ));
        }
        let prepare = |sql: &'static str| {
            let client = &client;
            async move { client.prepare(sql).await.map_err(failed) }
        };
        Ok(Writer {
            check_fence: prepare("SELECT sundial_check_fence($1, $2)").await?,
            // The workflow id's current row moves to the new run unless it names a running
            // one (then the batch fails with SD409).
            make_current: prepare(
                "WITH made AS (
                    INSERT INTO current_executions (namespace, workflow_id, run_id, status)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (namespace, workflow_id) DO UPDATE
                        SET run_id = excluded.run_id, status = excluded.status
                        WHERE current_executions.status <> 1
                    RETURNING 1)
                 SELECT sundial_expect_row((SELECT count(*) FROM made), format(
                    'workflow id %s of namespace %s already has a running run', $2, $1))",
            )
            .await?,
            set_current_status: prepare(
                "UPDATE current_executions SET status = $4
                 WHERE namespace = $1 AND workflow_id = $2 AND run_id = $3",
            )
            .await?,
            drop_current: prepare(
                "DELETE FROM current_executions WHERE run_id = $1
                    AND (namespace, workflow_id) IN
                        (SELECT namespace, workflow_id FROM executions WHERE run_id = $1)",
            )
            .await?,
            create_execution: prepare(
                "INSERT INTO executions (run_id, namespace, workflow_id, status, next_event_id, version, state, slot, wake_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await?,
            // Setting an unchanged status or wake costs nothing: PostgreSQL compares indexed
            // values and keeps the update in place (HOT) when they are equal. No row at the expected
            // version fails the statement (and so the batch) with SD409, no row at all with
            // SD404.
            replace_execution: prepare(
                "WITH written AS (
                    UPDATE executions SET status = $7, next_event_id = $2, version = $3, state = $4,
                        wake_at = $8
                    WHERE run_id = $1 AND version = $5 AND next_event_id = $6 RETURNING 1)
                 SELECT sundial_expect_version((SELECT count(*) FROM written),
                    EXISTS (SELECT 1 FROM executions WHERE run_id = $1),
                    format('run %s is not at version %s (next event id %s) in the store', $1, $5, $6))",
            )
            .await?,
            put_event: prepare("INSERT INTO history (run_id, event_id, data) VALUES ($1, $2, $3)")
                .await?,
            // A batch's events in one statement: three arrays, one row per element.
            put_events: prepare(
                "INSERT INTO history (run_id, event_id, data)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])",
            )
            .await?,
            put_namespace: prepare(
                "INSERT INTO namespaces (name, data) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET data = excluded.data",
            )
            .await?,
            put_visibility: prepare(
                "INSERT INTO visibility (run_id, namespace, workflow_id, workflow_type, task_queue,
                    status, start_time, execution_time, close_time, history_length, execution_duration,
                    parent_workflow_id, parent_run_id, root_workflow_id, root_run_id, search_attributes, info)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, coalesce(nullif($16::text, ''), '{}')::jsonb, $17)
                 ON CONFLICT (run_id) DO UPDATE SET status = excluded.status,
                    close_time = excluded.close_time, history_length = excluded.history_length,
                    execution_duration = excluded.execution_duration,
                    search_attributes = excluded.search_attributes, info = excluded.info",
            )
            .await?,
            put_attribute: prepare(
                "INSERT INTO search_attributes (namespace, name, value_type) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, name) DO UPDATE SET value_type = excluded.value_type",
            )
            .await?,
            drop_attribute: prepare(
                "DELETE FROM search_attributes WHERE namespace = $1 AND name = $2",
            )
            .await?,
            drop_run: prepare("DELETE FROM executions WHERE run_id = $1").await?,
            drop_history: prepare("DELETE FROM history WHERE run_id = $1").await?,
            drop_visibility: prepare("DELETE FROM visibility WHERE run_id = $1").await?,
            put_schedule: prepare(
                "INSERT INTO schedules (namespace, schedule_id, data) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, schedule_id) DO UPDATE SET data = excluded.data",
            )
            .await?,
            drop_schedule: prepare(
                "DELETE FROM schedules WHERE namespace = $1 AND schedule_id = $2",
            )
            .await?,
            put_batch_job: prepare(
                "INSERT INTO batch_jobs (namespace, job_id, part, data) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (namespace, job_id, part) DO UPDATE SET data = excluded.data",
            )
            .await?,
            drop_batch_job: prepare(
                "DELETE FROM batch_jobs WHERE namespace = $1 AND job_id = $2 AND part = $3",
            )
            .await?,
            put_nexus_endpoint: prepare(
                "INSERT INTO nexus_endpoints (name, data) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET data = excluded.data",
            )
            .await?,
            drop_nexus_endpoint: prepare("DELETE FROM nexus_endpoints WHERE name = $1").await?,
            client,
        })
    }
}

/// Why a group was not committed as a whole.
enum GroupError {
    /// The connection failed: the outcome of the transaction is unknown to this side only if
    /// the failure came during COMMIT; the writer reconnects.
    Connection(String),
}

async fn writer_loop(
    mut writer: Option<Writer>,
    connect: Connect,
    shard_count: u32,
    mut rx: mpsc::UnboundedReceiver<Job>,
    observer: Option<Arc<dyn CommitObserver>>,
    health: Arc<Health>,
) {
    let mut probe = tokio::time::interval(Duration::from_secs(1));
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = probe.tick() => {
                if health.failed.lock().is_some() {
                    continue;
                }
                // Idle: notice a lost database (health) and reconnect when it is back.
                let alive = match &writer {
                    Some(w) => !w.client.is_closed() && w.client.simple_query("").await.is_ok(),
                    None => false,
                };
                if !alive {
                    writer = reconnect(&connect, &health).await;
                }
                health.failing.store(writer.is_none(), Ordering::Release);
                continue;
            }
        };
        let mut group = vec![first];
        group::take_waiting(&mut rx, &mut group);
        let started = std::time::Instant::now();
        if writer.as_ref().is_none_or(|w| w.client.is_closed()) {
            writer = reconnect(&connect, &health).await;
        }
        let results = match (health.failed_reason(), &writer) {
            (Some(reason), _) => Err(StoreError::Failed(reason)),
            (None, None) => Err(StoreError::Unavailable(
                "the PostgreSQL database cannot be reached".into(),
            )),
            (None, Some(w)) => {
                let sync = group::needs_sync(&group);
                match write_group(w, group.iter().map(|(b, _)| b), sync, shard_count).await {
                    Ok(results) => Ok(results),
                    Err(GroupError::Connection(e)) => {
                        writer = None;
                        Err(StoreError::Unavailable(e))
                    }
                }
            }
        };
        group::finish(
            group,
            results,
            started.elapsed(),
            &health,
            observer.as_ref(),
        );
    }
}

/// A new writer connection, or `None` (logged) when the database is still unreachable. A
/// writer lock held by someone else now means another server took over: the store stops.
async fn reconnect(connect: &Connect, health: &Health) -> Option<Writer> {
    match Writer::connect(connect).await {
        Ok(w) => {
            tracing::info!("PostgreSQL writer connected");
            Some(w)
        }
        Err(StoreError::Backend(reason)) if reason.contains("writer lock") => {
            health.failed.lock().get_or_insert(reason);
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "PostgreSQL unreachable");
            None
        }
    }
}

/// One pipelined statement's outcome: rows affected, or the error.
type Outcome = Result<u64, tokio_postgres::Error>;

/// Writes the batches of a group in one transaction sent at once: `BEGIN`, every statement of
/// every batch, `COMMIT`, pipelined on the connection, so a group costs one round trip. Every
/// statement that cannot apply fails (a conditional update that finds another version raises
/// `SD409` through `sundial_expect_row`), and a failure aborts the transaction, so the
/// `COMMIT` rolls it back: the batch of the first failure gets its error and the others are
/// sent again in a new transaction. A batch thus fails alone, as the contract asks.
async fn write_group<'a>(
    w: &Writer,
    batches: impl Iterator<Item = &'a WriteBatch>,
    sync: bool,
    shard_count: u32,
) -> Result<Vec<Result<(), StoreError>>, GroupError> {
    let batches: Vec<&WriteBatch> = batches.collect();
    // A batch whose rows do not match its fence fails before anything is sent.
    let mut results: Vec<Option<Result<(), StoreError>>> = batches
        .iter()
        .map(|b| crate::shard::fence_of(b, shard_count).err().map(Err))
        .collect();
    let begin = if sync {
        "BEGIN"
    } else {
        // The batches are recoverable if lost with a crash of the database's machine (see
        // `Durability::Written`): the commit does not wait for the WAL flush.
        "BEGIN; SET LOCAL synchronous_commit TO OFF"
    };
    let c = &w.client;
    loop {
        let pending: Vec<usize> = (0..batches.len())
            .filter(|&i| results[i].is_none())
            .collect();
        if pending.is_empty() {
            break;
        }
        // `owner[k]`: the batch of the k-th statement (`None` for BEGIN and COMMIT).
        let mut ops: Vec<BoxFuture<'_, Outcome>> = Vec::new();
        let mut owner = Vec::new();
        ops.push(Box::pin(
            async move { c.batch_execute(begin).await.map(|_| 0) },
        ));
        owner.push(None);
        for &b in &pending {
            let before = ops.len();
            batch_statements(w, batches[b], &mut ops);
            owner.extend(std::iter::repeat_n(Some(b), ops.len() - before));
        }
        ops.push(Box::pin(async move {
            c.batch_execute("COMMIT").await.map(|_| 0)
        }));
        owner.push(None);
        let outcomes = futures::future::join_all(ops).await;
        let failure = outcomes
            .into_iter()
            .zip(owner)
            .find_map(|(outcome, owner)| outcome.err().map(|e| (e, owner)));
        match failure {
            None => {
                for b in pending {
                    results[b] = Some(Ok(()));
                }
            }
            Some((e, _)) if is_connection_error(&e) => {
                return Err(GroupError::Connection(format!(
                    "PostgreSQL connection lost: {e}"
                )));
            }
            Some((e, Some(b))) => results[b] = Some(Err(batch_error(&e))),
            Some((e, None)) => {
                return Err(GroupError::Connection(format!(
                    "PostgreSQL transaction failed: {}",
                    error_text(&e)
                )));
            }
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
}

/// The error a batch gets for a statement of it that failed: a duplicate key or a run at
/// another version is a conflict, a run gone NotFound, a lost fence OwnershipLost, a value
/// PostgreSQL cannot hold InvalidInput; anything else a backend error of that batch.
fn batch_error(e: &tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(error_text(e)),
        Some(code) if code.code() == "SD409" => StoreError::Conflict(error_text(e)),
        Some(code) if code.code() == "SD404" => StoreError::NotFound(error_text(e)),
        Some(code) if code.code() == "SD410" => StoreError::OwnershipLost(error_text(e)),
        _ => invalid_input(e).unwrap_or_else(|| StoreError::Backend(error_text(e))),
    }
}

/// Appends one future per statement of `batch` to `ops` (each sends its request when first
/// polled, so polling them in order pipelines them in order).
fn batch_statements<'a>(
    w: &'a Writer,
    batch: &'a WriteBatch,
    ops: &mut Vec<BoxFuture<'a, Outcome>>,
) {
    let c = &w.client;
    // Each statement in a future that owns its parameter list (sent when first polled).
    macro_rules! op {
        ($statement:expr, [$($param:expr),* $(,)?] $(,)?) => {{
            let statement = $statement;
            Box::pin(async move { c.execute(statement, &[$($param),*]).await }) as BoxFuture<'a, Outcome>
        }};
    }
    if let Some(fence) = batch.fence {
        let shard = fence.shard as i32;
        ops.push(op!(&w.check_fence, [&shard, &fence.epoch]));
    }
    for sc in &batch.schedules {
        ops.push(match &sc.data {
            Some(data) => op!(&w.put_schedule, [&sc.namespace, &sc.schedule_id, data]),
            None => op!(&w.drop_schedule, [&sc.namespace, &sc.schedule_id]),
        });
    }
    for job in &batch.batch_jobs {
        ops.push(match &job.data {
            Some(data) => op!(
                &w.put_batch_job,
                [&job.namespace, &job.job_id, &job.part, data]
            ),
            None => op!(&w.drop_batch_job, [&job.namespace, &job.job_id, &job.part]),
        });
    }
    for endpoint in &batch.nexus_endpoints {
        ops.push(match &endpoint.data {
            Some(data) => op!(&w.put_nexus_endpoint, [&endpoint.name, data]),
            None => op!(&w.drop_nexus_endpoint, [&endpoint.name]),
        });
    }
    for v in &batch.visibility {
        ops.push(op!(
            &w.put_visibility,
            [
                &v.run_id,
                &v.namespace,
                &v.workflow_id,
                &v.workflow_type,
                &v.task_queue,
                &v.status,
                &v.start_time_ms,
                &v.execution_time_ms,
                &v.close_time_ms,
                &v.history_length,
                &v.execution_duration_ns,
                &v.parent_workflow_id,
                &v.parent_run_id,
                &v.root_workflow_id,
                &v.root_run_id,
                &v.search_attributes_json,
                &v.info,
            ],
        ));
    }
    for a in &batch.search_attributes {
        ops.push(match &a.value_type {
            Some(t) => op!(&w.put_attribute, [&a.namespace, &a.name, t]),
            None => op!(&w.drop_attribute, [&a.namespace, &a.name]),
        });
    }
    for run in &batch.deleted_runs {
        ops.push(op!(&w.drop_current, [run]));
        ops.push(op!(&w.drop_run, [run]));
        ops.push(op!(&w.drop_history, [run]));
        ops.push(op!(&w.drop_visibility, [run]));
    }
    for ns in &batch.namespaces {
        ops.push(op!(&w.put_namespace, [&ns.name, &ns.data]));
    }
    for e in &batch.executions {
        match &e.previous {
            None => {
                ops.push(op!(
                    &w.make_current,
                    [&e.namespace, &e.workflow_id, &e.run_id, &e.status]
                ));
                let slot = slot_column(&e.namespace, &e.workflow_id);
                ops.push(op!(
                    &w.create_execution,
                    [
                        &e.run_id,
                        &e.namespace,
                        &e.workflow_id,
                        &e.status,
                        &e.next_event_id,
                        &e.version,
                        &e.state,
                        &slot,
                        &e.wake_at,
                    ],
                ));
            }
            Some(previous) => {
                ops.push(op!(
                    &w.replace_execution,
                    [
                        &e.run_id,
                        &e.next_event_id,
                        &e.version,
                        &e.state,
                        &previous.version,
                        &previous.next_event_id,
                        &e.status,
                        &e.wake_at,
                    ],
                ));
                if previous.status != e.status {
                    ops.push(op!(
                        &w.set_current_status,
                        [&e.namespace, &e.workflow_id, &e.run_id, &e.status]
                    ));
                }
            }
        }
    }
    match batch.events.as_slice() {
        [] => {}
        [ev] => ops.push(op!(&w.put_event, [&ev.run_id, &ev.event_id, &ev.data])),
        events => {
            let run_ids: Vec<&str> = events.iter().map(|e| e.run_id.as_str()).collect();
            let event_ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
            let data: Vec<&[u8]> = events.iter().map(|e| e.data.as_slice()).collect();
            ops.push(op!(&w.put_events, [&run_ids, &event_ids, &data]));
        }
    }
}

/// Columns: namespace, workflow_id, run_id, status, next_event_id, version, state, wake_at.
const EXECUTION_COLUMNS: &str =
    "namespace, workflow_id, run_id, status, next_event_id, version, state, wake_at";

fn execution_from_row(row: &tokio_postgres::Row) -> ExecutionRow {
    ExecutionRow {
        namespace: row.get(0),
        workflow_id: row.get(1),
        run_id: row.get(2),
        status: row.get(3),
        next_event_id: row.get(4),
        version: row.get(5),
        previous: None,
        state: row.get(6),
        wake_at: row.get(7),
    }
}

fn lease_from_row(row: &tokio_postgres::Row) -> ShardLease {
    ShardLease {
        shard: row.get::<_, i32>(0) as u32,
        owner: row.get(1),
        epoch: row.get(2),
        expires_ms: row.get(3),
    }
}

fn batch_job_from_row(row: &tokio_postgres::Row) -> BatchJobRow {
    BatchJobRow {
        namespace: row.get(0),
        job_id: row.get(1),
        part: row.get(2),
        data: Some(row.get(3)),
    }
}

/// Query parameters for `values` after the namespace.
fn bound<'a>(namespace: &'a String, values: &'a [SqlValue]) -> Vec<&'a (dyn ToSql + Sync)> {
    std::iter::once(namespace as &(dyn ToSql + Sync))
        .chain(values.iter().map(|v| match v {
            SqlValue::Text(s) => s as &(dyn ToSql + Sync),
            SqlValue::Int(i) => i as &(dyn ToSql + Sync),
            SqlValue::Float(f) => f as &(dyn ToSql + Sync),
        }))
        .collect()
}

/// A sort value read back from a list row: the dialect casts every sort value to bigint,
/// float8 or text.
fn sort_value(row: &tokio_postgres::Row, index: usize) -> Result<SqlValue, StoreError> {
    use tokio_postgres::types::Type;
    let ty = row.columns()[index].type_().clone();
    let failed = |e: tokio_postgres::Error| StoreError::Backend(format!("sort value: {e}"));
    Ok(match ty {
        Type::INT8 => SqlValue::Int(row.try_get(index).map_err(failed)?),
        Type::FLOAT8 => SqlValue::Float(row.try_get(index).map_err(failed)?),
        _ => SqlValue::Text(row.try_get(index).map_err(failed)?),
    })
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn commit(&self, batch: WriteBatch) -> CommitReceipt {
        group::enqueue(&self.jobs, batch)
    }

    fn healthy(&self) -> bool {
        self.health.healthy()
    }

    async fn load_namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        let rows = self
            .query("SELECT name, data FROM namespaces ORDER BY name", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| NamespaceRow {
                name: r.get(0),
                data: r.get(1),
            })
            .collect())
    }

    async fn load_runs_to_resume(
        &self,
        slots: std::ops::RangeInclusive<u32>,
        after_run_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions
             WHERE status = 1 AND wake_at IS NOT NULL AND wake_at = {RESUME_AT_START}
                AND run_id > $3 AND slot BETWEEN $1 AND $2 ORDER BY run_id LIMIT $4"
        );
        let (first, last) = (*slots.start() as i32, *slots.end() as i32);
        let after_run_id = after_run_id.unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(&sql, &[&first, &last, &after_run_id, &limit])
            .await?;
        Ok(rows.iter().map(execution_from_row).collect())
    }

    async fn load_wakeups(
        &self,
        slots: std::ops::RangeInclusive<u32>,
        after: Option<&WakeKey>,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<WakeKey>, StoreError> {
        let (after_ms, after_run) = WakeKey::page_start(after);
        let (first, last) = (*slots.start() as i32, *slots.end() as i32);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = "SELECT wake_at, run_id FROM executions
             WHERE status = 1 AND wake_at IS NOT NULL AND wake_at >= $1
                AND (wake_at, run_id) > ($1, $2) AND wake_at <= $3 AND slot BETWEEN $4 AND $5
             ORDER BY wake_at, run_id LIMIT $6";
        let rows = self
            .query(
                sql,
                &[&after_ms, &after_run, &until_ms, &first, &last, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| WakeKey {
                at_ms: r.get(0),
                run_id: r.get(1),
            })
            .collect())
    }

    fn shard_count(&self) -> u32 {
        self.shard_count
    }

    async fn load_shard_leases(&self) -> Result<Vec<ShardLease>, StoreError> {
        let rows = self
            .query(
                "SELECT shard_id, owner, epoch, expires_ms FROM shards ORDER BY shard_id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(lease_from_row).collect())
    }

    async fn acquire_shard(
        &self,
        shard: u32,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ShardFence>, StoreError> {
        let failed = |e: tokio_postgres::Error| read_error("shard lease", e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(failed)?;
        let shard_id = shard as i32;
        let lease = tx
            .query_opt(
                "SELECT shard_id, owner, epoch, expires_ms FROM shards WHERE shard_id = $1 FOR UPDATE",
                &[&shard_id],
            )
            .await
            .map_err(failed)?
            .map(|r| lease_from_row(&r));
        let Some(lease) = lease.filter(|l| l.can_be_taken_by(owner, now_ms)) else {
            return Ok(None);
        };
        let epoch = lease.epoch + 1;
        tx.execute(
            "UPDATE shards SET owner = $2, epoch = $3, expires_ms = $4 WHERE shard_id = $1",
            &[&shard_id, &owner, &epoch, &now_ms.saturating_add(lease_ms)],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(Some(ShardFence { shard, epoch }))
    }

    async fn renew_shard(
        &self,
        fence: ShardFence,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let renewed = client
            .execute(
                "UPDATE shards SET expires_ms = $3 WHERE shard_id = $1 AND epoch = $2",
                &[
                    &(fence.shard as i32),
                    &fence.epoch,
                    &now_ms.saturating_add(lease_ms),
                ],
            )
            .await
            .map_err(|e| read_error("shard lease", e))?;
        if renewed == 0 {
            return Err(fence.lost());
        }
        Ok(())
    }

    async fn load_execution(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: Option<&str>,
    ) -> Result<Option<ExecutionRow>, StoreError> {
        let rows = match run_id {
            Some(run_id) => {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions
                     WHERE run_id = $1 AND namespace = $2 AND workflow_id = $3"
                );
                self.query(&sql, &[&run_id, &namespace, &workflow_id])
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions WHERE run_id =
                        (SELECT run_id FROM current_executions WHERE namespace = $1 AND workflow_id = $2)"
                );
                self.query(&sql, &[&namespace, &workflow_id]).await?
            }
        };
        Ok(rows.first().map(execution_from_row))
    }

    async fn load_run(&self, run_id: &str) -> Result<Option<ExecutionRow>, StoreError> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE run_id = $1");
        let rows = self.query(&sql, &[&run_id]).await?;
        Ok(rows.first().map(execution_from_row))
    }

    async fn load_events(
        &self,
        run_id: &str,
        from_event_id: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .query(
                "SELECT data FROM history WHERE run_id = $1 AND event_id >= $2 ORDER BY event_id",
                &[&run_id, &from_event_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn load_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = self
            .query(
                "SELECT namespace, schedule_id, data FROM schedules ORDER BY namespace, schedule_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ScheduleRow {
                namespace: r.get(0),
                schedule_id: r.get(1),
                data: Some(r.get(2)),
            })
            .collect())
    }

    async fn load_batch_jobs(&self) -> Result<Vec<BatchJobRow>, StoreError> {
        let rows = self
            .query(
                "SELECT namespace, job_id, part, data FROM batch_jobs WHERE part = $1
                 ORDER BY namespace, job_id",
                &[&BATCH_JOB_RECORD],
            )
            .await?;
        Ok(rows.iter().map(batch_job_from_row).collect())
    }

    async fn load_batch_job_pages(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Result<Vec<BatchJobRow>, StoreError> {
        let rows = self
            .query(
                "SELECT namespace, job_id, part, data FROM batch_jobs
                 WHERE namespace = $1 AND job_id = $2 AND part > $3 ORDER BY part",
                &[&namespace, &job_id, &BATCH_JOB_RECORD],
            )
            .await?;
        Ok(rows.iter().map(batch_job_from_row).collect())
    }

    async fn load_nexus_endpoints(&self) -> Result<Vec<NexusEndpointRow>, StoreError> {
        let rows = self
            .query("SELECT name, data FROM nexus_endpoints ORDER BY name", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| NexusEndpointRow {
                name: r.get(0),
                data: Some(r.get(1)),
            })
            .collect())
    }

    async fn load_search_attributes(&self) -> Result<Vec<(String, String, i32)>, StoreError> {
        let rows = self
            .query(
                "SELECT namespace, name, value_type FROM search_attributes",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    async fn list_visibility(
        &self,
        namespace: &str,
        query: &VisibilityQuery,
        limit: usize,
        after: Option<&PageKey>,
    ) -> Result<VisibilityPage, StoreError> {
        let keys = query.sort_keys().len();
        let sql = query_sql::list(&Postgres, query, limit.saturating_add(1), after);
        let namespace = namespace.to_string();
        let client = self.client().await?;
        let rows = client
            .query(&sql.text, &bound(&namespace, &sql.params))
            .await
            .map_err(|e| read_error("list", e))?;
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(keys);
            for i in 0..keys {
                values.push(sort_value(row, 2 + i)?);
            }
            page.push((
                row.get::<_, Vec<u8>>(0),
                PageKey {
                    values,
                    run_id: row.get(1),
                },
            ));
        }
        Ok(page_of(&mut page, limit))
    }

    async fn count_visibility(
        &self,
        namespace: &str,
        filter: Option<&Predicate>,
        by_status: bool,
    ) -> Result<Vec<(i32, i64)>, StoreError> {
        let sql = query_sql::count(&Postgres, filter, by_status);
        let namespace = namespace.to_string();
        let client = self.client().await?;
        let rows = client
            .query(&sql.text, &bound(&namespace, &sql.params))
            .await
            .map_err(|e| read_error("count", e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn closed_runs_before(
        &self,
        namespace: &str,
        closed_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT workflow_id, run_id FROM visibility
                 WHERE namespace = $1 AND close_time IS NOT NULL AND close_time < $2
                 ORDER BY close_time LIMIT $3",
                &[&namespace, &closed_before_ms, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
