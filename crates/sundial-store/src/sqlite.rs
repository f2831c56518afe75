//! SQLite implementation: WAL journal with `synchronous=FULL`, one writer thread that groups
//! every batch waiting at that moment into a single transaction (one fsync for many
//! transitions), a separate connection for reads, and checkpoints off the commit path
//! ([`crate::checkpoint`]).

use crate::checkpoint::Checkpoints;
use crate::{
    BATCH_JOB_RECORD, BatchJobRow, CommitObserver, CommitReceipt, Durability, ExecutionRow,
    NamespaceRow, ScheduleRow, SqlValue, Store, StoreError, VisibilityFilter, WriteBatch,
};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Most batches one transaction takes before it commits.
const MAX_GROUP: usize = 1024;

/// How long the writer gathers further batches before committing when the previous group
/// held more than one (the sign of concurrent work, as PostgreSQL's `commit_delay` with
/// `commit_siblings`). A lone transition never waits; under load a group then takes the
/// transitions of many executions, so one fsync and the shared WAL pages serve all of them.
const GATHER_UNDER_LOAD: std::time::Duration = std::time::Duration::from_micros(500);

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    state BLOB NOT NULL,
    next_event_id INTEGER,
    version INTEGER
);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions(namespace, workflow_id, seq);
DROP INDEX IF EXISTS executions_by_status;
CREATE INDEX IF NOT EXISTS executions_running ON executions(seq) WHERE status = 1;
CREATE TABLE IF NOT EXISTS visibility (
    run_id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    workflow_type TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    status INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    execution_time INTEGER NOT NULL,
    close_time INTEGER,
    history_length INTEGER NOT NULL,
    execution_duration INTEGER,
    parent_workflow_id TEXT,
    parent_run_id TEXT,
    root_workflow_id TEXT,
    root_run_id TEXT,
    search_attributes TEXT NOT NULL,
    info BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS visibility_by_start ON visibility(namespace, start_time);
CREATE INDEX IF NOT EXISTS visibility_by_status ON visibility(namespace, status, start_time);
CREATE INDEX IF NOT EXISTS visibility_by_type ON visibility(namespace, workflow_type, start_time);
CREATE INDEX IF NOT EXISTS visibility_by_id ON visibility(namespace, workflow_id);
DROP INDEX IF EXISTS visibility_by_close;
CREATE INDEX IF NOT EXISTS visibility_closed ON visibility(namespace, close_time)
    WHERE close_time IS NOT NULL;
CREATE TABLE IF NOT EXISTS search_attributes (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    value_type INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedules (
    namespace TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (namespace, schedule_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batch_jobs (
    namespace TEXT NOT NULL,
    job_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (namespace, job_id, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    run_id TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, event_id)
) WITHOUT ROWID;
";

type Job = (WriteBatch, oneshot::Sender<Result<(), StoreError>>);

/// The schema this build writes (`PRAGMA user_version`). 0: databases made before versions
/// were recorded (no row versions on executions); 2: conditional writes (`next_event_id`,
/// `version`) and one running run per workflow id; 3: batch operation jobs (`batch_jobs`).
const SCHEMA_VERSION: i64 = 3;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    jobs: mpsc::UnboundedSender<Job>,
    reader: Arc<Mutex<Connection>>,
    health: Arc<Health>,
    /// Held open with an exclusive lock for the store's lifetime: a second server on the same
    /// file refuses to start.
    _exclusive: Option<std::fs::File>,
}

/// Whether commits succeed, as the writer last saw it.
#[derive(Default)]
struct Health {
    /// The last group failed.
    failing: AtomicBool,
    /// A failure that may have lost pages: no write is accepted any more.
    failed: Mutex<Option<String>>,
}

/// Takes the exclusive lock on the database file (an advisory `flock`, separate from SQLite's
/// own locks), creating the file if needed.
fn lock_exclusively(path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Backend(format!(
            "database file {} is in use by another process (is another Sundial server running on it?)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Backend(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Creates the schema or brings an older one up to [`SCHEMA_VERSION`]; refuses a newer one.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database has schema version {found}, newer than this Sundial supports ({SCHEMA_VERSION}); use a newer release"
        )));
    }
    conn.execute_batch(SCHEMA)?;
    let mut columns = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('executions')")?;
        for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
            columns.push(name?);
        }
    }
    for column in ["next_event_id", "version"] {
        if !columns.iter().any(|c| c == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE executions ADD COLUMN {column} INTEGER"
            ))?;
        }
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS executions_one_running
             ON executions(namespace, workflow_id) WHERE status = 1;",
    )
    .map_err(|e| {
        StoreError::Backend(format!(
            "cannot enforce one running run per workflow id ({e}): the database holds two running runs of one workflow id"
        ))
    })?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, or an in-memory one for `None`.
    pub fn open(path: Option<&std::path::Path>) -> Result<Self, StoreError> {
        Self::open_observed(path, None)
    }

    /// Like [`SqliteStore::open`], with `observer` told about every group commit.
    pub fn open_observed(
        path: Option<&std::path::Path>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<Self, StoreError> {
        let exclusive = path.map(lock_exclusively).transpose()?;
        let (writer, reader, checkpoints) = match path {
            Some(path) => {
                let writer = Connection::open(path)?;
                writer.pragma_update(None, "journal_mode", "WAL")?;
                writer.pragma_update(None, "synchronous", "FULL")?;
                migrate(&writer)?;
                let checkpoints = Checkpoints::start(&writer, path)?;
                let reader = Connection::open(path)?;
                let writer = Arc::new(Mutex::new(writer));
                (writer, Arc::new(Mutex::new(reader)), Some(checkpoints))
            }
            None => {
                let conn = Connection::open_in_memory()?;
                migrate(&conn)?;
                let shared = Arc::new(Mutex::new(conn));
                (shared.clone(), shared, None)
            }
        };
        for conn in [&writer, &reader] {
            conn.lock()
                .busy_timeout(std::time::Duration::from_secs(10))?;
        }
        let health = Arc::new(Health::default());
        let (jobs, rx) = mpsc::unbounded_channel();
        {
            let health = health.clone();
            std::thread::Builder::new()
                .name("sundial-store-writer".into())
                .spawn(move || writer_loop(writer, rx, checkpoints, observer, health))
                .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        }
        Ok(SqliteStore {
            jobs,
            reader,
            health,
            _exclusive: exclusive,
        })
    }
}

fn writer_loop(
    conn: Arc<Mutex<Connection>>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    checkpoints: Option<Checkpoints>,
    observer: Option<Arc<dyn CommitObserver>>,
    health: Arc<Health>,
) {
    let mut last_group = 0;
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        take_waiting(&mut rx, &mut group);
        if last_group > 1 && group.len() < MAX_GROUP {
            std::thread::sleep(GATHER_UNDER_LOAD);
            take_waiting(&mut rx, &mut group);
        }
        last_group = group.len();
        let started = std::time::Instant::now();
        let failed_before = health.failed.lock().clone();
        let results = match failed_before {
            Some(reason) => Err(StoreError::Failed(reason)),
            None => {
                let mut conn = conn.lock();
                let sync = group
                    .iter()
                    .any(|(batch, _)| batch.durability == Durability::Synced);
                write_group(&mut conn, group.iter().map(|(batch, _)| batch), sync)
            }
        };
        let elapsed = started.elapsed();
        tracing::trace!(
            batches = group.len(),
            elapsed_us = elapsed.as_micros() as u64,
            "group commit"
        );
        let ok = results.is_ok();
        if let Err(e) = &results {
            tracing::error!(error = %e, "group commit failed");
            if let StoreError::Failed(reason) = e {
                health.failed.lock().get_or_insert_with(|| reason.clone());
            }
        }
        health.failing.store(!ok, Ordering::Release);
        let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        match results {
            Ok(each) => {
                for (reply, result) in replies.into_iter().zip(each) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        if let Some(observer) = &observer {
            observer.group_committed(&mut batches.iter(), elapsed, ok);
        }
        if let Some(checkpoints) = &checkpoints {
            checkpoints.after_commit(&conn.lock(), rx.is_empty());
        }
    }
}

/// Moves the batches already queued into `group`, up to [`MAX_GROUP`].
fn take_waiting(rx: &mut mpsc::UnboundedReceiver<Job>, group: &mut Vec<Job>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
}

/// A failure of the transaction as a whole: an I/O error (SQLite's `SQLITE_IOERR`, which
/// covers a failed fsync) may have lost pages, so the store stops; anything else (a full disk,
/// a busy database) leaves the database as it was and later commits may succeed.
fn group_error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::SystemIoFailure => {
            StoreError::Failed(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// An error of one batch inside the group: a constraint (a duplicate event, a second running
/// run) is that batch's conflict; an I/O error fails the group.
fn batch_error(e: rusqlite::Error) -> Result<StoreError, StoreError> {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Ok(StoreError::Conflict(e.to_string()))
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::DiskFull
            ) =>
        {
            Err(group_error(e))
        }
        _ => Ok(StoreError::Backend(e.to_string())),
    }
}

/// Writes every batch of a group in one transaction, each inside a savepoint: a batch that
/// fails is rolled back alone and reported to its own caller. `Err` when the transaction as a
/// whole failed (every caller gets it).
///
/// `sync`: whether the commit waits for the disk (`synchronous=FULL` syncs the WAL at commit).
/// A group of [`Durability::Written`] batches only is committed with `synchronous=NORMAL`,
/// which writes the WAL without syncing it; the next synced commit's sync covers those frames
/// too, since the WAL is one file written in order.
fn write_group<'a>(
    conn: &mut Connection,
    batches: impl Iterator<Item = &'a WriteBatch>,
    sync: bool,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    if !sync {
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(group_error)?;
    }
    let written = write_transaction(conn, batches);
    if !sync {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(group_error)?;
    }
    written
}

fn write_transaction<'a>(
    conn: &mut Connection,
    batches: impl Iterator<Item = &'a WriteBatch>,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let tx = conn.transaction().map_err(group_error)?;
    let mut results = Vec::new();
    for batch in batches {
        tx.execute_batch("SAVEPOINT batch").map_err(group_error)?;
        match write_batch(&tx, batch) {
            Ok(()) => {
                tx.execute_batch("RELEASE batch").map_err(group_error)?;
                results.push(Ok(()));
            }
            Err(e) => {
                let e = match e {
                    BatchError::Sql(e) => batch_error(e)?,
                    BatchError::Store(e) => e,
                };
                tx.execute_batch("ROLLBACK TO batch; RELEASE batch")
                    .map_err(group_error)?;
                results.push(Err(e));
            }
        }
    }
    tx.commit().map_err(group_error)?;
    Ok(results)
}

fn batch_job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BatchJobRow> {
    Ok(BatchJobRow {
        namespace: r.get(0)?,
        job_id: r.get(1)?,
        part: r.get(2)?,
        data: Some(r.get(3)?),
    })
}

/// Why one batch was not written.
enum BatchError {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for BatchError {
    fn from(e: rusqlite::Error) -> Self {
        BatchError::Sql(e)
    }
}

fn write_batch(tx: &rusqlite::Transaction<'_>, batch: &WriteBatch) -> Result<(), BatchError> {
    let mut create_execution = tx.prepare_cached(
        "INSERT INTO executions (run_id, namespace, workflow_id, status, next_event_id, version, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    // Most transitions change only a run's state. Setting `status` would make SQLite rewrite
    // the partial indexes on it even when the value stays, so the status is set only when it
    // changes. Rows written before versions were recorded have none and match any.
    let mut replace_state = tx.prepare_cached(
        "UPDATE executions SET next_event_id = ?2, version = ?3, state = ?4
         WHERE run_id = ?1 AND (version IS NULL OR (version = ?5 AND next_event_id = ?6))",
    )?;
    let mut replace_with_status = tx.prepare_cached(
        "UPDATE executions SET status = ?7, next_event_id = ?2, version = ?3, state = ?4
         WHERE run_id = ?1 AND (version IS NULL OR (version = ?5 AND next_event_id = ?6))",
    )?;
    let mut put_event =
        tx.prepare_cached("INSERT INTO history (run_id, event_id, data) VALUES (?1, ?2, ?3)")?;
    let mut put_namespace = tx.prepare_cached(
        "INSERT INTO namespaces (name, data) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET data = excluded.data",
    )?;
    // A run's identity, type, queue, start time and parents are fixed when it starts; a
    // later write updates only what can change, so the indexes on the rest stay untouched.
    let mut put_visibility = tx.prepare_cached(
        "INSERT INTO visibility (run_id, namespace, workflow_id, workflow_type, task_queue,
            status, start_time, execution_time, close_time, history_length, execution_duration,
            parent_workflow_id, parent_run_id, root_workflow_id, root_run_id, search_attributes, info)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT(run_id) DO UPDATE SET status = excluded.status,
            close_time = excluded.close_time, history_length = excluded.history_length,
            execution_duration = excluded.execution_duration,
            search_attributes = excluded.search_attributes, info = excluded.info",
    )?;
    let mut put_attribute = tx.prepare_cached(
        "INSERT OR REPLACE INTO search_attributes (namespace, name, value_type) VALUES (?1, ?2, ?3)",
    )?;
    let mut drop_attribute =
        tx.prepare_cached("DELETE FROM search_attributes WHERE namespace = ?1 AND name = ?2")?;
    let mut drop_run = tx.prepare_cached("DELETE FROM executions WHERE run_id = ?1")?;
    let mut drop_history = tx.prepare_cached("DELETE FROM history WHERE run_id = ?1")?;
    let mut drop_visibility = tx.prepare_cached("DELETE FROM visibility WHERE run_id = ?1")?;
    let mut put_schedule = tx.prepare_cached(
        "INSERT INTO schedules (namespace, schedule_id, data) VALUES (?1, ?2, ?3)
         ON CONFLICT(namespace, schedule_id) DO UPDATE SET data = excluded.data",
    )?;
    let mut drop_schedule =
        tx.prepare_cached("DELETE FROM schedules WHERE namespace = ?1 AND schedule_id = ?2")?;
    let mut put_batch_job = tx.prepare_cached(
        "INSERT INTO batch_jobs (namespace, job_id, part, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(namespace, job_id, part) DO UPDATE SET data = excluded.data",
    )?;
    let mut drop_batch_job = tx.prepare_cached(
        "DELETE FROM batch_jobs WHERE namespace = ?1 AND job_id = ?2 AND part = ?3",
    )?;
    for job in &batch.batch_jobs {
        match &job.data {
            Some(data) => {
                put_batch_job.execute(params![job.namespace, job.job_id, job.part, data])?
            }
            None => drop_batch_job.execute(params![job.namespace, job.job_id, job.part])?,
        };
    }
    for sc in &batch.schedules {
        match &sc.data {
            Some(data) => put_schedule.execute(params![sc.namespace, sc.schedule_id, data])?,
            None => drop_schedule.execute(params![sc.namespace, sc.schedule_id])?,
        };
    }
    for v in &batch.visibility {
        put_visibility.execute(params![
            v.run_id,
            v.namespace,
            v.workflow_id,
            v.workflow_type,
            v.task_queue,
            v.status,
            v.start_time_ms,
            v.execution_time_ms,
            v.close_time_ms,
            v.history_length,
            v.execution_duration_ns,
            v.parent_workflow_id,
            v.parent_run_id,
            v.root_workflow_id,
            v.root_run_id,
            v.search_attributes_json,
            v.info
        ])?;
    }
    for a in &batch.search_attributes {
        match a.value_type {
            Some(t) => put_attribute.execute(params![a.namespace, a.name, t])?,
            None => drop_attribute.execute(params![a.namespace, a.name])?,
        };
    }
    for run in &batch.deleted_runs {
        drop_run.execute([run])?;
        drop_history.execute([run])?;
        drop_visibility.execute([run])?;
    }
    for ns in &batch.namespaces {
        put_namespace.execute(params![ns.name, ns.data])?;
    }
    for e in &batch.executions {
        match e.previous {
            None => {
                create_execution.execute(params![
                    e.run_id,
                    e.namespace,
                    e.workflow_id,
                    e.status,
                    e.next_event_id,
                    e.version,
                    e.state
                ])?;
            }
            Some(previous) => {
                let written = if previous.status == e.status {
                    replace_state.execute(params![
                        e.run_id,
                        e.next_event_id,
                        e.version,
                        e.state,
                        previous.version,
                        previous.next_event_id
                    ])?
                } else {
                    replace_with_status.execute(params![
                        e.run_id,
                        e.next_event_id,
                        e.version,
                        e.state,
                        previous.version,
                        previous.next_event_id,
                        e.status
                    ])?
                };
                if written == 0 {
                    return Err(BatchError::Store(StoreError::Conflict(format!(
                        "run {} is not at version {} (next event id {}) in the store",
                        e.run_id, previous.version, previous.next_event_id
                    ))));
                }
            }
        }
    }
    for ev in &batch.events {
        put_event.execute(params![ev.run_id, ev.event_id, ev.data])?;
    }
    Ok(())
}

pub(crate) fn bind(namespace: &str, params: &[SqlValue]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    std::iter::once(V::Text(namespace.to_string()))
        .chain(params.iter().map(|p| match p {
            SqlValue::Text(s) => V::Text(s.clone()),
            SqlValue::Int(i) => V::Integer(*i),
            SqlValue::Float(f) => V::Real(*f),
        }))
        .collect()
}

/// Columns: namespace, workflow_id, run_id, status, next_event_id, version, state. A row
/// written before versions were recorded reads as version 0 / next event id 0; its first
/// write matches it whatever it expects.
fn execution_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
    let next_event_id = row.get::<_, Option<i64>>(4)?.unwrap_or(0);
    let version = row.get::<_, Option<i64>>(5)?.unwrap_or(0);
    let status = row.get(3)?;
    Ok(ExecutionRow {
        namespace: row.get(0)?,
        workflow_id: row.get(1)?,
        run_id: row.get(2)?,
        status,
        next_event_id,
        version,
        previous: None,
        state: row.get(6)?,
    })
}

impl Store for SqliteStore {
    fn commit(&self, batch: WriteBatch) -> CommitReceipt {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, reply))) = self.jobs.send((batch, tx)) {
            let _ = reply.send(Err(StoreError::Closed));
        }
        rx
    }

    fn healthy(&self) -> bool {
        !self.health.failing.load(Ordering::Acquire) && self.health.failed.lock().is_none()
    }

    fn load_namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached("SELECT name, data FROM namespaces ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(NamespaceRow {
                name: r.get(0)?,
                data: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn load_running_executions(&self) -> Result<Vec<ExecutionRow>, StoreError> {
        let conn = self.reader.lock();
        // The literal (not a parameter) lets SQLite use the partial index `executions_running`.
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, workflow_id, run_id, status, next_event_id, version, state FROM executions
             WHERE status = 1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([], execution_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn load_execution(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: Option<&str>,
    ) -> Result<Option<ExecutionRow>, StoreError> {
        let conn = self.reader.lock();
        let row = match run_id {
            Some(run_id) => conn
                .prepare_cached(
                    "SELECT namespace, workflow_id, run_id, status, next_event_id, version, state FROM executions
                     WHERE run_id = ?1 AND namespace = ?2 AND workflow_id = ?3",
                )?
                .query_row(params![run_id, namespace, workflow_id], execution_from_row)
                .optional()?,
            None => conn
                .prepare_cached(
                    "SELECT namespace, workflow_id, run_id, status, next_event_id, version, state FROM executions
                     WHERE namespace = ?1 AND workflow_id = ?2 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![namespace, workflow_id], execution_from_row)
                .optional()?,
        };
        Ok(row)
    }

    fn load_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, schedule_id, data FROM schedules ORDER BY namespace, schedule_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ScheduleRow {
                namespace: r.get(0)?,
                schedule_id: r.get(1)?,
                data: Some(r.get(2)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn load_batch_jobs(&self) -> Result<Vec<BatchJobRow>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, job_id, part, data FROM batch_jobs WHERE part = ?1
             ORDER BY namespace, job_id",
        )?;
        let rows = stmt.query_map(params![BATCH_JOB_RECORD], batch_job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn load_batch_job_pages(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Result<Vec<BatchJobRow>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, job_id, part, data FROM batch_jobs
             WHERE namespace = ?1 AND job_id = ?2 AND part > ?3 ORDER BY part",
        )?;
        let rows = stmt.query_map(
            params![namespace, job_id, BATCH_JOB_RECORD],
            batch_job_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn load_search_attributes(&self) -> Result<Vec<(String, String, i32)>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt =
            conn.prepare_cached("SELECT namespace, name, value_type FROM search_attributes")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn list_visibility(
        &self,
        namespace: &str,
        filter: &VisibilityFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let sql = format!(
            "SELECT info FROM visibility WHERE namespace = ? AND ({}) ORDER BY {} LIMIT {} OFFSET {}",
            filter.where_sql, filter.order_sql, limit, offset
        );
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(&sql)?;
        let params = bind(namespace, &filter.params);
        let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count_visibility(
        &self,
        namespace: &str,
        filter: &VisibilityFilter,
        by_status: bool,
    ) -> Result<Vec<(i32, i64)>, StoreError> {
        let sql = if by_status {
            format!(
                "SELECT status, COUNT(*) FROM visibility WHERE namespace = ? AND ({}) GROUP BY status ORDER BY status",
                filter.where_sql
            )
        } else {
            format!(
                "SELECT 0, COUNT(*) FROM visibility WHERE namespace = ? AND ({})",
                filter.where_sql
            )
        };
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(&sql)?;
        let params = bind(namespace, &filter.params);
        let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn closed_runs_before(
        &self,
        namespace: &str,
        closed_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT workflow_id, run_id FROM visibility
             WHERE namespace = ?1 AND close_time IS NOT NULL AND close_time < ?2
             ORDER BY close_time LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![namespace, closed_before_ms, limit], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn load_events(&self, run_id: &str, from_event_id: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT data FROM history WHERE run_id = ?1 AND event_id >= ?2 ORDER BY event_id",
        )?;
        let rows = stmt.query_map(params![run_id, from_event_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventRow, RUNNING_STATUS, RowVersion, VisibilityRow};

    /// A new run `run` of workflow "wf" (version 1, one event).
    fn row(run: &str, status: i32) -> ExecutionRow {
        ExecutionRow {
            namespace: "default".into(),
            workflow_id: "wf".into(),
            run_id: run.into(),
            status,
            next_event_id: 2,
            version: 1,
            previous: None,
            state: vec![status as u8],
        }
    }

    /// The write of `row` that follows `before` (one more version and event).
    fn next(before: &ExecutionRow, status: i32, state: u8) -> ExecutionRow {
        ExecutionRow {
            status,
            next_event_id: before.next_event_id + 1,
            version: before.version + 1,
            previous: Some(before.written_version()),
            state: vec![state],
            ..before.clone()
        }
    }

    fn only(row: ExecutionRow) -> WriteBatch {
        WriteBatch {
            executions: vec![row],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_run_closing_leaves_the_running_set_and_keeps_its_latest_state() {
        let store = SqliteStore::open(None).unwrap();
        let first = ExecutionRow {
            state: vec![10],
            ..row("r1", 1)
        };
        let second = next(&first, 1, 11);
        let third = next(&second, 2, 12);
        let exec = |row: ExecutionRow| WriteBatch {
            visibility: vec![VisibilityRow {
                run_id: "r1".into(),
                namespace: "default".into(),
                workflow_id: "wf".into(),
                workflow_type: "T".into(),
                status: row.status,
                start_time_ms: 5,
                close_time_ms: (row.status != RUNNING_STATUS).then_some(9),
                info: row.state.clone(),
                ..Default::default()
            }],
            executions: vec![row],
            ..Default::default()
        };
        for batch in [exec(first), exec(second), exec(third)] {
            store.commit(batch).await.unwrap().unwrap();
        }
        let latest = store.load_execution("default", "wf", Some("r1")).unwrap();
        assert_eq!(latest.map(|r| (r.status, r.state)), Some((2, vec![12])));
        assert!(store.load_running_executions().unwrap().is_empty());
        let all = VisibilityFilter {
            where_sql: "1".into(),
            params: vec![],
            order_sql: "start_time DESC".into(),
        };
        assert_eq!(
            store.list_visibility("default", &all, 10, 0).unwrap(),
            vec![vec![12]]
        );
        assert_eq!(
            store.closed_runs_before("default", 10, 10).unwrap(),
            vec![("wf".to_string(), "r1".to_string())]
        );
        assert!(
            store
                .closed_runs_before("default", 9, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn batch_jobs_keep_a_record_and_pages_apart() {
        let store = SqliteStore::open(None).unwrap();
        let row = |job: &str, part: i64, data: Option<Vec<u8>>| BatchJobRow {
            namespace: "default".into(),
            job_id: job.into(),
            part,
            data,
        };
        let batch = |rows: Vec<BatchJobRow>| WriteBatch {
            batch_jobs: rows,
            ..Default::default()
        };
        let first = batch(vec![
            row("j1", BATCH_JOB_RECORD, Some(vec![1])),
            row("j1", 2, Some(vec![12])),
            row("j1", 1, Some(vec![11])),
            row("j2", BATCH_JOB_RECORD, Some(vec![2])),
        ]);
        store.commit(first).await.unwrap().unwrap();
        let progress = batch(vec![row("j1", BATCH_JOB_RECORD, Some(vec![3]))]);
        store.commit(progress).await.unwrap().unwrap();
        let records = store.load_batch_jobs().unwrap();
        assert_eq!(
            records,
            vec![
                row("j1", BATCH_JOB_RECORD, Some(vec![3])),
                row("j2", BATCH_JOB_RECORD, Some(vec![2]))
            ]
        );
        let pages = store.load_batch_job_pages("default", "j1").unwrap();
        assert_eq!(
            pages,
            vec![row("j1", 1, Some(vec![11])), row("j1", 2, Some(vec![12]))]
        );
        let dropped = batch(vec![row("j2", BATCH_JOB_RECORD, None)]);
        store.commit(dropped).await.unwrap().unwrap();
        assert_eq!(store.load_batch_jobs().unwrap().len(), 1);
        assert!(
            store
                .load_batch_job_pages("default", "j2")
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn schedules_are_written_replaced_and_deleted() {
        let store = SqliteStore::open(None).unwrap();
        let put = |id: &str, data: Option<Vec<u8>>| WriteBatch {
            schedules: vec![ScheduleRow {
                namespace: "default".into(),
                schedule_id: id.into(),
                data,
            }],
            ..Default::default()
        };
        store
            .commit(put("a", Some(vec![1])))
            .await
            .unwrap()
            .unwrap();
        store
            .commit(put("b", Some(vec![2])))
            .await
            .unwrap()
            .unwrap();
        store
            .commit(put("a", Some(vec![3])))
            .await
            .unwrap()
            .unwrap();
        store.commit(put("b", None)).await.unwrap().unwrap();
        let rows = store.load_schedules().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].schedule_id, "a");
        assert_eq!(rows[0].data, Some(vec![3]));
    }

    /// An empty directory of this test process and a database path in it.
    fn fresh_db(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sundial-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        (dir, path)
    }

    #[tokio::test]
    async fn checkpoints_run_off_the_writer() {
        let (dir, path) = fresh_db("ckpt");
        let store = SqliteStore::open(Some(&path)).unwrap();
        // 40 MiB of state: past the checkpoint threshold, below the forced one.
        for i in 0..40 {
            let mut big = row(&format!("run-{i}"), 1);
            big.workflow_id = format!("wf-{i}");
            big.state = vec![7; 1 << 20];
            let batch = WriteBatch {
                executions: vec![big],
                ..Default::default()
            };
            store.commit(batch).await.unwrap().unwrap();
        }
        // Only the checkpointer copies the log into the database file.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let db_len = || std::fs::metadata(&path).map_or(0, |m| m.len());
        while db_len() < 16 << 20 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(db_len() >= 16 << 20, "database file is {} bytes", db_len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A batch committed without a sync is read back like any other, mixes with synced ones
    /// in a group, and is in the file once the store is reopened (a crash of the process
    /// does not lose what the operating system was given).
    #[tokio::test]
    async fn written_batches_commit_without_a_sync_and_are_read_back() {
        let (_dir, path) = fresh_db("written");
        {
            let store = SqliteStore::open(Some(&path)).unwrap();
            let written = |run: &str, workflow: &str| WriteBatch {
                executions: vec![ExecutionRow {
                    workflow_id: workflow.into(),
                    ..row(run, 1)
                }],
                durability: Durability::Written,
                ..Default::default()
            };
            let alone = store.commit(written("w1", "wf-w1"));
            alone.await.unwrap().unwrap();
            let mixed = [
                store.commit(written("w2", "wf-w2")),
                store.commit(WriteBatch {
                    executions: vec![ExecutionRow {
                        workflow_id: "wf-s1".into(),
                        ..row("s1", 1)
                    }],
                    ..Default::default()
                }),
            ];
            for receipt in mixed {
                receipt.await.unwrap().unwrap();
            }
        }
        let store = SqliteStore::open(Some(&path)).unwrap();
        let mut runs: Vec<_> = store
            .load_running_executions()
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        runs.sort();
        assert_eq!(runs, ["s1", "w1", "w2"]);
    }

    #[tokio::test]
    async fn commits_are_durable_and_readable() {
        let (_dir, path) = fresh_db("store");
        {
            let store = SqliteStore::open(Some(&path)).unwrap();
            let batch = WriteBatch {
                executions: vec![row("r1", 1)],
                events: vec![EventRow {
                    run_id: "r1".into(),
                    event_id: 1,
                    data: vec![7],
                }],
                namespaces: vec![NamespaceRow {
                    name: "default".into(),
                    data: vec![1],
                }],
                ..Default::default()
            };
            store.commit(batch).await.unwrap().unwrap();
            let second = WriteBatch {
                executions: vec![row("r2", 2)],
                ..Default::default()
            };
            store.commit(second).await.unwrap().unwrap();
        }
        let store = SqliteStore::open(Some(&path)).unwrap();
        assert_eq!(store.load_namespaces().unwrap().len(), 1);
        assert_eq!(store.load_running_executions().unwrap(), vec![row("r1", 1)]);
        let latest = store
            .load_execution("default", "wf", None)
            .unwrap()
            .unwrap();
        assert_eq!(latest.run_id, "r2");
        assert_eq!(store.load_events("r1", 1).unwrap(), vec![vec![7]]);
        // A duplicate event id is refused and the whole batch is rolled back.
        let bad = WriteBatch {
            executions: vec![ExecutionRow {
                workflow_id: "other".into(),
                ..row("r3", 1)
            }],
            events: vec![EventRow {
                run_id: "r1".into(),
                event_id: 1,
                data: vec![8],
            }],
            ..Default::default()
        };
        assert!(matches!(
            store.commit(bad).await.unwrap(),
            Err(StoreError::Conflict(_))
        ));
        assert!(
            store
                .load_execution("default", "other", Some("r3"))
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_write_expecting_another_version_is_refused_and_fails_alone() {
        let store = SqliteStore::open(None).unwrap();
        let first = row("r1", 1);
        store.commit(only(first.clone())).await.unwrap().unwrap();
        let second = next(&first, 1, 7);
        store.commit(only(second.clone())).await.unwrap().unwrap();
        // Queued together, so usually one group: the stale write (it expects `first` again)
        // fails; the others commit.
        let stale = next(&first, 1, 8);
        let other = ExecutionRow {
            workflow_id: "wf-2".into(),
            ..row("r2", 1)
        };
        let receipts = [
            store.commit(only(stale)),
            store.commit(only(other)),
            store.commit(only(next(&second, 1, 9))),
        ];
        let mut results = Vec::new();
        for r in receipts {
            results.push(r.await.unwrap());
        }
        assert!(
            matches!(results[0], Err(StoreError::Conflict(_))),
            "{results:?}"
        );
        assert!(results[1].is_ok() && results[2].is_ok(), "{results:?}");
        let stored = store.load_execution("default", "wf", Some("r1")).unwrap();
        assert_eq!(stored.map(|r| (r.version, r.state)), Some((3, vec![9])));
        assert!(store.healthy());
    }

    #[tokio::test]
    async fn a_workflow_id_has_at_most_one_running_run() {
        let store = SqliteStore::open(None).unwrap();
        let first = row("r1", 1);
        store.commit(only(first.clone())).await.unwrap().unwrap();
        let second = row("r2", 1);
        assert!(matches!(
            store.commit(only(second.clone())).await.unwrap(),
            Err(StoreError::Conflict(_))
        ));
        // Closing the first and creating the second in one batch (continue-as-new) works.
        let closes = WriteBatch {
            executions: vec![next(&first, 2, 2), second],
            ..Default::default()
        };
        store.commit(closes).await.unwrap().unwrap();
        let running = store.load_running_executions().unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].run_id, "r2");
    }

    #[tokio::test]
    async fn a_database_without_schema_version_is_upgraded_and_a_newer_one_refused() {
        let (dir, path) = fresh_db("migrate");
        {
            // The layout written before versions were recorded.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE executions (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE,
                    namespace TEXT NOT NULL, workflow_id TEXT NOT NULL, status INTEGER NOT NULL,
                    state BLOB NOT NULL);
                 INSERT INTO executions (run_id, namespace, workflow_id, status, state)
                    VALUES ('old', 'default', 'wf', 1, x'01');",
            )
            .unwrap();
        }
        {
            let store = SqliteStore::open(Some(&path)).unwrap();
            let old = store
                .load_execution("default", "wf", None)
                .unwrap()
                .unwrap();
            assert_eq!((old.run_id.as_str(), old.version), ("old", 0));
            // Its first write matches whatever version it names.
            let update = ExecutionRow {
                next_event_id: 5,
                version: 4,
                previous: Some(RowVersion {
                    version: 3,
                    next_event_id: 4,
                    status: 1,
                }),
                ..old
            };
            store.commit(only(update)).await.unwrap().unwrap();
            let now = store
                .load_execution("default", "wf", None)
                .unwrap()
                .unwrap();
            assert_eq!((now.version, now.next_event_id), (4, 5));
        }
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let refused = SqliteStore::open(Some(&path)).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.contains("newer than this Sundial supports")),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_file_is_refused() {
        let (dir, path) = fresh_db("exclusive");
        let first = SqliteStore::open(Some(&path)).unwrap();
        let second = SqliteStore::open(Some(&path)).err().map(|e| e.to_string());
        assert!(
            second
                .as_deref()
                .is_some_and(|m| m.contains("in use by another process")),
            "{second:?}"
        );
        drop(first);
        // The writer thread holds no lock; the store's file handle did.
        SqliteStore::open(Some(&path)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
