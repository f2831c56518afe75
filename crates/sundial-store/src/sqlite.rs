//! SQLite implementation: WAL journal with `synchronous=FULL`, one writer thread that groups
//! every batch waiting at that moment into a single transaction (one fsync for many
//! transitions), a separate connection for reads, and checkpoints off the commit path
//! ([`crate::checkpoint`]).

use crate::checkpoint::Checkpoints;
use crate::group::{self, Health, Job};
use crate::query_sql;
use crate::sqlite_query::Sqlite;
use crate::{
    BATCH_JOB_RECORD, BatchJobRow, CommitObserver, CommitReceipt, ExecutionRow, NamespaceRow,
    NexusEndpointRow, PageKey, Predicate, RESUME_AT_START, ScheduleRow, ShardFence, ShardLease,
    SqlValue, Store, StoreError, VisibilityPage, VisibilityQuery, WakeKey, WriteBatch,
};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

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
    version INTEGER,
    slot INTEGER,
    wake_at INTEGER
);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions(namespace, workflow_id, seq);
CREATE TABLE IF NOT EXISTS current_executions (
    namespace TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    PRIMARY KEY (namespace, workflow_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shards (
    shard_id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
DROP INDEX IF EXISTS executions_by_status;
DROP INDEX IF EXISTS executions_running;
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
CREATE TABLE IF NOT EXISTS nexus_endpoints (
    name TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
";

/// Read connections of a database file.
const READERS: usize = 4;
/// Prepared statements each connection keeps: more than the writer uses in one group (about
/// two dozen), since with fewer the cache's LRU order evicts every statement before its next
/// use and each group prepares all of them again. (Measured with the Rust driver's
/// throughput run, the gain is within noise: preparing was not where the time went.)
const STATEMENT_CACHE: usize = 128;

/// The schema this build writes (`PRAGMA user_version`). 0: databases made before versions
/// were recorded (no row versions on executions); 2: conditional writes (`next_event_id`,
/// `version`) and one running run per workflow id; 3: batch operation jobs (`batch_jobs`);
/// 4: current-execution rows (`current_executions`, which replace the unique index on running
/// runs), slots on runs (`executions.slot`) and shard leases (`shards`); 5: the wake index
/// (`executions.wake_at`, see [`ExecutionRow::wake_at`]); 6: the Nexus endpoint registry
/// (`nexus_endpoints`, created by [`SCHEMA`] on an older file like every table).
const SCHEMA_VERSION: i64 = 6;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    jobs: mpsc::UnboundedSender<Job>,
    readers: Arc<Readers>,
    /// The writer thread's connection, also used (under its lock) for lease changes.
    writer: Arc<Mutex<Connection>>,
    shard_count: u32,
    health: Arc<Health>,
    /// Held open with an exclusive lock for the store's lifetime: a second server on the same
    /// file refuses to start.
    _exclusive: Option<std::fs::File>,
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
    for column in ["next_event_id", "version", "slot", "wake_at"] {
        if !columns.iter().any(|c| c == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE executions ADD COLUMN {column} INTEGER"
            ))?;
        }
    }
    if found < 4 {
        to_current_executions(conn)?;
    }
    if found < 5 {
        // Runs written before the index are loaded at start-up, as they always were; each
        // gets its own entry with its next write.
        conn.execute(
            "UPDATE executions SET wake_at = ?1 WHERE status = 1",
            [RESUME_AT_START],
        )?;
    }
    // The literals `status = 1` and `wake_at IS NOT NULL` in a query let SQLite use it.
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS executions_wake ON executions(wake_at, run_id)
            WHERE status = 1 AND wake_at IS NOT NULL",
    )?;
    conn.execute(
        "INSERT INTO shards (shard_id, owner, epoch, expires_ms)
         SELECT 0, '', 0, 0 WHERE NOT EXISTS (SELECT 1 FROM shards)",
        [],
    )?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

fn read_shard_count(conn: &Connection) -> Result<u32, StoreError> {
    let count: i64 = conn.query_row("SELECT count(*) FROM shards", [], |r| r.get(0))?;
    u32::try_from(count)
        .ok()
        .filter(|&c| c >= 1)
        .ok_or_else(|| StoreError::Backend(format!("the database has {count} shards")))
}

/// Schema 4: every run gets its slot, every workflow id a current-execution row naming its
/// latest run, and the unique index on running runs (which the current rows replace) goes.
fn to_current_executions(conn: &Connection) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut runs =
            tx.prepare("SELECT seq, namespace, workflow_id FROM executions WHERE slot IS NULL")?;
        let mut set_slot = tx.prepare("UPDATE executions SET slot = ?2 WHERE seq = ?1")?;
        let rows = runs.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (seq, namespace, workflow_id) = row?;
            set_slot.execute(params![
                seq,
                crate::shard::slot_of(&namespace, &workflow_id)
            ])?;
        }
    }
    // Two running runs of one workflow id cannot both be current: refuse rather than hide one.
    let doubled: Option<String> = tx
        .query_row(
            "SELECT workflow_id FROM executions WHERE status = 1
             GROUP BY namespace, workflow_id HAVING count(*) > 1 LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(workflow_id) = doubled {
        return Err(StoreError::Backend(format!(
            "the database holds two running runs of workflow id {workflow_id:?}; cannot upgrade it"
        )));
    }
    tx.execute_batch(
        "INSERT OR REPLACE INTO current_executions (namespace, workflow_id, run_id, status)
             SELECT namespace, workflow_id, run_id, status FROM executions e
             WHERE seq = (SELECT max(seq) FROM executions
                          WHERE namespace = e.namespace AND workflow_id = e.workflow_id);
         DROP INDEX IF EXISTS executions_one_running;",
    )?;
    tx.commit()?;
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
        let (writer, readers, checkpoints) = match path {
            Some(path) => {
                let writer = Connection::open(path)?;
                writer.pragma_update(None, "journal_mode", "WAL")?;
                writer.pragma_update(None, "synchronous", "FULL")?;
                migrate(&writer)?;
                let checkpoints = Checkpoints::start(&writer, path)?;
                let readers = (0..READERS)
                    .map(|_| Connection::open(path).map(|c| Arc::new(Mutex::new(c))))
                    .collect::<Result<Vec<_>, _>>()?;
                (Arc::new(Mutex::new(writer)), readers, Some(checkpoints))
            }
            None => {
                // One in-memory database is one connection: reads share the writer's.
                let conn = Connection::open_in_memory()?;
                migrate(&conn)?;
                let shared = Arc::new(Mutex::new(conn));
                (shared.clone(), vec![shared], None)
            }
        };
        for conn in std::iter::once(&writer).chain(&readers) {
            let conn = conn.lock();
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        }
        let shard_count = read_shard_count(&writer.lock())?;
        let readers = Arc::new(Readers {
            connections: readers,
            next: Default::default(),
        });
        let health = Arc::new(Health::default());
        let (jobs, rx) = mpsc::unbounded_channel();
        {
            let health = health.clone();
            let writer = writer.clone();
            std::thread::Builder::new()
                .name("sundial-store-writer".into())
                .spawn(move || writer_loop(writer, shard_count, rx, checkpoints, observer, health))
                .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        }
        Ok(SqliteStore {
            jobs,
            readers,
            writer,
            shard_count,
            health,
            _exclusive: exclusive,
        })
    }
}

fn writer_loop(
    conn: Arc<Mutex<Connection>>,
    shard_count: u32,
    mut rx: mpsc::UnboundedReceiver<Job>,
    checkpoints: Option<Checkpoints>,
    observer: Option<Arc<dyn CommitObserver>>,
    health: Arc<Health>,
) {
    let mut last_group = 0;
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        group::take_waiting(&mut rx, &mut group);
        if last_group > 1 && group.len() < group::MAX_GROUP {
            std::thread::sleep(GATHER_UNDER_LOAD);
            group::take_waiting(&mut rx, &mut group);
        }
        last_group = group.len();
        let started = std::time::Instant::now();
        let results = match health.failed_reason() {
            Some(reason) => Err(StoreError::Failed(reason)),
            None => {
                let mut conn = conn.lock();
                let sync = group::needs_sync(&group);
                write_group(
                    &mut conn,
                    group.iter().map(|(batch, _)| batch),
                    sync,
                    shard_count,
                )
            }
        };
        group::finish(
            group,
            results,
            started.elapsed(),
            &health,
            observer.as_ref(),
        );
        if let Some(checkpoints) = &checkpoints {
            checkpoints.after_commit(&conn.lock(), rx.is_empty());
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
/// A group of [`crate::Durability::Written`] batches only is committed with `synchronous=NORMAL`,
/// which writes the WAL without syncing it; the next synced commit's sync covers those frames
/// too, since the WAL is one file written in order.
fn write_group<'a>(
    conn: &mut Connection,
    batches: impl Iterator<Item = &'a WriteBatch>,
    sync: bool,
    shard_count: u32,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    if !sync {
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(group_error)?;
    }
    let written = write_transaction(conn, batches, shard_count);
    if !sync {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(group_error)?;
    }
    written
}

fn write_transaction<'a>(
    conn: &mut Connection,
    batches: impl Iterator<Item = &'a WriteBatch>,
    shard_count: u32,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let tx = conn.transaction().map_err(group_error)?;
    let mut results = Vec::new();
    for batch in batches {
        tx.execute_batch("SAVEPOINT batch").map_err(group_error)?;
        match write_batch(&tx, batch, shard_count) {
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

fn write_batch(
    tx: &rusqlite::Transaction<'_>,
    batch: &WriteBatch,
    shard_count: u32,
) -> Result<(), BatchError> {
    if let Some(fence) = crate::shard::fence_of(batch, shard_count).map_err(BatchError::Store)? {
        let held = tx
            .prepare_cached("SELECT 1 FROM shards WHERE shard_id = ?1 AND epoch = ?2")?
            .exists(params![fence.shard, fence.epoch])?;
        if !held {
            return Err(BatchError::Store(fence.lost()));
        }
    }
    // The workflow id's current row moves to a new run unless it names a running one.
    let mut make_current = tx.prepare_cached(
        "INSERT INTO current_executions (namespace, workflow_id, run_id, status)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(namespace, workflow_id) DO UPDATE
            SET run_id = excluded.run_id, status = excluded.status
            WHERE current_executions.status <> 1",
    )?;
    let mut set_current_status = tx.prepare_cached(
        "UPDATE current_executions SET status = ?4
         WHERE namespace = ?1 AND workflow_id = ?2 AND run_id = ?3",
    )?;
    let mut drop_current = tx.prepare_cached(
        "DELETE FROM current_executions WHERE run_id = ?1
            AND (namespace, workflow_id) IN
                (SELECT namespace, workflow_id FROM executions WHERE run_id = ?1)",
    )?;
    let mut create_execution = tx.prepare_cached(
        "INSERT INTO executions (run_id, namespace, workflow_id, status, next_event_id, version, state, slot, wake_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
    for endpoint in &batch.nexus_endpoints {
        match &endpoint.data {
            Some(data) => tx
                .prepare_cached(
                    "INSERT INTO nexus_endpoints (name, data) VALUES (?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET data = excluded.data",
                )?
                .execute(params![endpoint.name, data])?,
            None => tx
                .prepare_cached("DELETE FROM nexus_endpoints WHERE name = ?1")?
                .execute([&endpoint.name])?,
        };
    }
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
        drop_current.execute([run])?;
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
                let current = make_current.execute(params![
                    e.namespace,
                    e.workflow_id,
                    e.run_id,
                    e.status
                ])?;
                if current == 0 {
                    return Err(BatchError::Store(StoreError::Conflict(format!(
                        "workflow id {:?} of namespace {:?} already has a running run",
                        e.workflow_id, e.namespace
                    ))));
                }
                create_execution.execute(params![
                    e.run_id,
                    e.namespace,
                    e.workflow_id,
                    e.status,
                    e.next_event_id,
                    e.version,
                    e.state,
                    crate::shard::slot_of(&e.namespace, &e.workflow_id),
                    e.wake_at
                ])?;
            }
            Some(previous) => {
                let written = replace_execution(tx, e, &previous)?;
                if written == 0 {
                    let exists = tx
                        .prepare_cached("SELECT 1 FROM executions WHERE run_id = ?1")?
                        .exists([&e.run_id])?;
                    return Err(BatchError::Store(if exists {
                        StoreError::Conflict(format!(
                            "run {} is not at version {} (next event id {}) in the store",
                            e.run_id, previous.version, previous.next_event_id
                        ))
                    } else {
                        StoreError::NotFound(format!("run {} is not in the store", e.run_id))
                    }));
                }
                if previous.status != e.status {
                    set_current_status.execute(params![
                        e.namespace,
                        e.workflow_id,
                        e.run_id,
                        e.status
                    ])?;
                }
            }
        }
    }
    for ev in &batch.events {
        put_event.execute(params![ev.run_id, ev.event_id, ev.data])?;
    }
    Ok(())
}

/// Writes a run's new version over `previous`; 0 rows when the store holds another version.
///
/// Most transitions change only a run's state. Setting `status` or `wake_at` would make
/// SQLite rewrite the partial indexes on them even when the value stays, so each is set only
/// when it changes. Rows written before versions were recorded have none and match any.
fn replace_execution(
    tx: &rusqlite::Transaction<'_>,
    e: &ExecutionRow,
    previous: &crate::RowVersion,
) -> rusqlite::Result<usize> {
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &e.run_id,
        &e.next_event_id,
        &e.version,
        &e.state,
        &previous.version,
        &previous.next_event_id,
    ];
    let mut set = String::from("next_event_id = ?2, version = ?3, state = ?4");
    if previous.status != e.status {
        values.push(&e.status);
        set.push_str(&format!(", status = ?{}", values.len()));
    }
    if previous.wake_at != e.wake_at {
        values.push(&e.wake_at);
        set.push_str(&format!(", wake_at = ?{}", values.len()));
    }
    tx.prepare_cached(&format!(
        "UPDATE executions SET {set}
         WHERE run_id = ?1 AND (version IS NULL OR (version = ?5 AND next_event_id = ?6))"
    ))?
    .execute(values.as_slice())
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

/// A sort value read back from a list row (the dialect's sort values are never NULL).
fn sort_value(value: rusqlite::types::Value) -> SqlValue {
    use rusqlite::types::Value as V;
    match value {
        V::Integer(i) => SqlValue::Int(i),
        V::Real(f) => SqlValue::Float(f),
        V::Text(s) => SqlValue::Text(s),
        V::Null | V::Blob(_) => SqlValue::Int(0),
    }
}

/// Columns: [`EXECUTION_COLUMNS`]. A row written before versions were recorded reads as
/// version 0 / next event id 0; its first write matches it whatever it expects.
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
        wake_at: row.get(7)?,
    })
}

/// The columns [`execution_from_row`] reads, in its order.
const EXECUTION_COLUMNS: &str =
    "namespace, workflow_id, run_id, status, next_event_id, version, state, wake_at";

/// Read connections, used on tokio's blocking threads: a read never holds up an async worker,
/// and reads run concurrently with each other and with the writer (WAL readers do not block).
struct Readers {
    connections: Vec<Arc<Mutex<Connection>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Readers {
    /// Runs `read` on a free connection (or waits for the next in turn).
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        for i in 0..count {
            if let Some(conn) = self.connections[(start + i) % count].try_lock() {
                return Ok(read(&conn)?);
            }
        }
        let conn = self.connections[start].lock();
        Ok(read(&conn)?)
    }
}

fn lease_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShardLease> {
    Ok(ShardLease {
        shard: r.get(0)?,
        owner: r.get(1)?,
        epoch: r.get(2)?,
        expires_ms: r.get(3)?,
    })
}

impl SqliteStore {
    /// Runs `change` on the writer's connection (between group commits) on a blocking thread.
    async fn change_lease<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || Ok(change(&mut writer.lock())?))
            .await
            .map_err(|e| StoreError::Backend(format!("lease task failed: {e}")))?
    }

    /// Runs `read` on a reader connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(read))
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn commit(&self, batch: WriteBatch) -> CommitReceipt {
        group::enqueue(&self.jobs, batch)
    }

    fn healthy(&self) -> bool {
        self.health.healthy()
    }

    async fn load_namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT name, data FROM namespaces ORDER BY name")?;
            let rows = stmt.query_map([], |r| {
                Ok(NamespaceRow {
                    name: r.get(0)?,
                    data: r.get(1)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn load_runs_to_resume(
        &self,
        slots: std::ops::RangeInclusive<u32>,
        after_run_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        let after_run_id = after_run_id.unwrap_or_default().to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // The literals (not parameters) let SQLite use the partial index `executions_wake`
            // (wake_at, run_id): a page is a range of it.
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions
                 WHERE status = 1 AND wake_at IS NOT NULL AND wake_at = {RESUME_AT_START}
                    AND run_id > ?3 AND slot BETWEEN ?1 AND ?2 ORDER BY run_id LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![slots.start(), slots.end(), after_run_id, limit],
                execution_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn load_wakeups(
        &self,
        slots: std::ops::RangeInclusive<u32>,
        after: Option<&WakeKey>,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<WakeKey>, StoreError> {
        let (after_ms, after_run) = WakeKey::page_start(after);
        let after_run = after_run.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT wake_at, run_id FROM executions
                 WHERE status = 1 AND wake_at IS NOT NULL AND wake_at >= ?1
                    AND (wake_at, run_id) > (?1, ?2) AND wake_at <= ?3
                    AND slot BETWEEN ?4 AND ?5
                 ORDER BY wake_at, run_id LIMIT ?6",
            )?;
            let rows = stmt.query_map(
                params![
                    after_ms,
                    after_run,
                    until_ms,
                    slots.start(),
                    slots.end(),
                    limit
                ],
                |r| {
                    Ok(WakeKey {
                        at_ms: r.get(0)?,
                        run_id: r.get(1)?,
                    })
                },
            )?;
            rows.collect()
        })
        .await
    }

    fn shard_count(&self) -> u32 {
        self.shard_count
    }

    async fn load_shard_leases(&self) -> Result<Vec<ShardLease>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT shard_id, owner, epoch, expires_ms FROM shards ORDER BY shard_id",
            )?;
            let rows = stmt.query_map([], lease_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn acquire_shard(
        &self,
        shard: u32,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ShardFence>, StoreError> {
        let owner = owner.to_string();
        self.change_lease(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let lease = tx
                .query_row(
                    "SELECT shard_id, owner, epoch, expires_ms FROM shards WHERE shard_id = ?1",
                    [shard],
                    lease_from_row,
                )
                .optional()?;
            let Some(lease) = lease.filter(|l| l.can_be_taken_by(&owner, now_ms)) else {
                return Ok(None);
            };
            let epoch = lease.epoch + 1;
            tx.execute(
                "UPDATE shards SET owner = ?2, epoch = ?3, expires_ms = ?4 WHERE shard_id = ?1",
                params![shard, owner, epoch, now_ms.saturating_add(lease_ms)],
            )?;
            tx.commit()?;
            Ok(Some(ShardFence { shard, epoch }))
        })
        .await
    }

    async fn renew_shard(
        &self,
        fence: ShardFence,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        let renewed = self
            .change_lease(move |conn| {
                conn.execute(
                    "UPDATE shards SET expires_ms = ?3 WHERE shard_id = ?1 AND epoch = ?2",
                    params![fence.shard, fence.epoch, now_ms.saturating_add(lease_ms)],
                )
            })
            .await?;
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
        let (namespace, workflow_id) = (namespace.to_string(), workflow_id.to_string());
        let run_id = run_id.map(str::to_string);
        self.read(move |conn| match run_id {
            Some(run_id) => conn
                .prepare_cached(
                    &format!("SELECT {EXECUTION_COLUMNS} FROM executions
                     WHERE run_id = ?1 AND namespace = ?2 AND workflow_id = ?3"),
                )?
                .query_row(params![run_id, namespace, workflow_id], execution_from_row)
                .optional(),
            None => conn
                .prepare_cached(
                    "SELECT e.namespace, e.workflow_id, e.run_id, e.status, e.next_event_id, e.version, e.state, e.wake_at
                     FROM current_executions c JOIN executions e ON e.run_id = c.run_id
                     WHERE c.namespace = ?1 AND c.workflow_id = ?2",
                )?
                .query_row(params![namespace, workflow_id], execution_from_row)
                .optional(),
        })
        .await
    }

    async fn load_run(&self, run_id: &str) -> Result<Option<ExecutionRow>, StoreError> {
        let run_id = run_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE run_id = ?1"
            ))?
            .query_row(params![run_id], execution_from_row)
            .optional()
        })
        .await
    }

    async fn load_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        self.read(|conn| {
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
            rows.collect()
        })
        .await
    }

    async fn load_search_attributes(&self) -> Result<Vec<(String, String, i32)>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT namespace, name, value_type FROM search_attributes")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
        .await
    }

    async fn load_nexus_endpoints(&self) -> Result<Vec<NexusEndpointRow>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT name, data FROM nexus_endpoints ORDER BY name")?;
            let rows = stmt.query_map([], |r| {
                Ok(NexusEndpointRow {
                    name: r.get(0)?,
                    data: Some(r.get(1)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn load_batch_jobs(&self) -> Result<Vec<BatchJobRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT namespace, job_id, part, data FROM batch_jobs WHERE part = ?1
                 ORDER BY namespace, job_id",
            )?;
            let rows = stmt.query_map(params![BATCH_JOB_RECORD], batch_job_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn load_batch_job_pages(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Result<Vec<BatchJobRow>, StoreError> {
        let (namespace, job_id) = (namespace.to_string(), job_id.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT namespace, job_id, part, data FROM batch_jobs
                 WHERE namespace = ?1 AND job_id = ?2 AND part > ?3 ORDER BY part",
            )?;
            let rows = stmt.query_map(
                params![namespace, job_id, BATCH_JOB_RECORD],
                batch_job_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn list_visibility(
        &self,
        namespace: &str,
        query: &VisibilityQuery,
        limit: usize,
        after: Option<&PageKey>,
    ) -> Result<VisibilityPage, StoreError> {
        let keys = query.sort_keys().len();
        let sql = query_sql::list(&Sqlite, query, limit.saturating_add(1), after);
        let params = bind(namespace, &sql.params);
        let mut rows: Vec<(Vec<u8>, PageKey)> = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql.text)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    let mut values = Vec::with_capacity(keys);
                    for i in 0..keys {
                        values.push(sort_value(r.get(2 + i)?));
                    }
                    Ok((
                        r.get(0)?,
                        PageKey {
                            values,
                            run_id: r.get(1)?,
                        },
                    ))
                })?;
                rows.collect()
            })
            .await?;
        Ok(page_of(&mut rows, limit))
    }

    async fn count_visibility(
        &self,
        namespace: &str,
        filter: Option<&Predicate>,
        by_status: bool,
    ) -> Result<Vec<(i32, i64)>, StoreError> {
        let sql = query_sql::count(&Sqlite, filter, by_status);
        let params = bind(namespace, &sql.params);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql.text)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect()
        })
        .await
    }

    async fn closed_runs_before(
        &self,
        namespace: &str,
        closed_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let namespace = namespace.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT workflow_id, run_id FROM visibility
                 WHERE namespace = ?1 AND close_time IS NOT NULL AND close_time < ?2
                 ORDER BY close_time LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![namespace, closed_before_ms, limit], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect()
        })
        .await
    }

    async fn load_events(
        &self,
        run_id: &str,
        from_event_id: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let run_id = run_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT data FROM history WHERE run_id = ?1 AND event_id >= ?2 ORDER BY event_id",
            )?;
            let rows = stmt.query_map(params![run_id, from_event_id], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }
}

/// A page from up to `limit + 1` rows in order: the first `limit`, and the key of the last of
/// them when there were more.
pub(crate) fn page_of(rows: &mut Vec<(Vec<u8>, PageKey)>, limit: usize) -> VisibilityPage {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|(_, key)| key.clone())
    } else {
        None
    };
    VisibilityPage {
        infos: rows.drain(..).map(|(info, _)| info).collect(),
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract_tests::{
        ALL_SLOTS, TEST_FENCE, holding_the_shard, only, row, running_run_ids,
    };
    use crate::{Durability, EventRow, RowVersion};

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
        let store = holding_the_shard(SqliteStore::open(Some(&path)).unwrap()).await;
        // 40 MiB of state: past the checkpoint threshold, below the forced one.
        for i in 0..40 {
            let mut big = row(&format!("run-{i}"), 1);
            big.workflow_id = format!("wf-{i}");
            big.state = vec![7; 1 << 20];
            let batch = WriteBatch {
                executions: vec![big],
                fence: TEST_FENCE,
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
            let store = holding_the_shard(SqliteStore::open(Some(&path)).unwrap()).await;
            let written = |run: &str, workflow: &str| WriteBatch {
                executions: vec![ExecutionRow {
                    workflow_id: workflow.into(),
                    ..row(run, 1)
                }],
                durability: Durability::Written,
                fence: TEST_FENCE,
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
                    fence: TEST_FENCE,
                    ..Default::default()
                }),
            ];
            for receipt in mixed {
                receipt.await.unwrap().unwrap();
            }
        }
        let store = SqliteStore::open(Some(&path)).unwrap();
        assert_eq!(running_run_ids(&store).await, ["s1", "w1", "w2"]);
    }

    /// What is committed is in the file when it is opened again (the contract suite covers
    /// the rest of commit and read semantics on every backend).
    #[tokio::test]
    async fn commits_are_durable_across_reopening() {
        let (_dir, path) = fresh_db("store");
        {
            let store = holding_the_shard(SqliteStore::open(Some(&path)).unwrap()).await;
            let batch = WriteBatch {
                executions: vec![row("r1", 1)],
                events: vec![EventRow {
                    run_id: "r1".into(),
                    event_id: 1,
                    data: vec![7],
                }],
                fence: TEST_FENCE,
                ..Default::default()
            };
            store.commit(batch).await.unwrap().unwrap();
        }
        let store = SqliteStore::open(Some(&path)).unwrap();
        assert_eq!(
            crate::contract_tests::resume_all(&store, ALL_SLOTS).await,
            vec![row("r1", 1)]
        );
        assert_eq!(store.load_events("r1", 1).await.unwrap(), vec![vec![7]]);
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
            let store = holding_the_shard(SqliteStore::open(Some(&path)).unwrap()).await;
            let old = store
                .load_execution("default", "wf", None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((old.run_id.as_str(), old.version), ("old", 0));
            // A running run of before the wake index is resumed at start-up.
            assert_eq!(old.wake_at, Some(RESUME_AT_START));
            // Its first write matches whatever version it names.
            let update = ExecutionRow {
                next_event_id: 5,
                version: 4,
                previous: Some(RowVersion {
                    version: 3,
                    next_event_id: 4,
                    status: 1,
                    wake_at: Some(RESUME_AT_START),
                }),
                ..old
            };
            store.commit(only(update)).await.unwrap().unwrap();
            let now = store
                .load_execution("default", "wf", None)
                .await
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

    /// A file of schema 5 (before the Nexus endpoint registry) gains the registry's table on
    /// open and records schema 6.
    #[tokio::test]
    async fn a_schema_5_file_gains_the_nexus_endpoint_registry() {
        let (dir, path) = fresh_db("schema5");
        drop(SqliteStore::open(Some(&path)).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("DROP TABLE nexus_endpoints; PRAGMA user_version = 5;")
                .unwrap();
        }
        let store = SqliteStore::open(Some(&path)).unwrap();
        let batch = WriteBatch {
            nexus_endpoints: vec![crate::NexusEndpointRow {
                name: "after-upgrade".into(),
                data: Some(vec![1]),
            }],
            ..Default::default()
        };
        store.commit(batch).await.unwrap().unwrap();
        let rows = store.load_nexus_endpoints().await.unwrap();
        assert_eq!(rows.len(), 1);
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
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
