//! WAL checkpoints kept off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold (1,000
//! pages by default), so that commit's reply waits for it, and each checkpoint costs three
//! syncs (the WAL and the database file during the checkpoint, the WAL header when the log is
//! reused). Here the writer connection only records the WAL's size after each commit; once it
//! passes [`CHECKPOINT_PAGES`] a checkpointer thread with its own connection copies the log
//! into the database in PASSIVE mode, which never blocks the writer. The log is reused only
//! when a write begins with every frame copied; under steady load new frames keep arriving
//! while the checkpointer works, so once its pass is done the writer copies the remaining tail
//! itself at its next idle moment. Should the log still reach [`FORCE_PAGES`], the writer
//! checkpoints at once. The writer checkpoints only after it has replied to the commits in
//! hand.
//!
//! Durability is unchanged: every commit is synced to the WAL before it returns, and a
//! checkpoint syncs the WAL and the database file before the log is reused.

use rusqlite::Connection;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// WAL size (pages) past which the checkpointer is asked to run (32 MiB of 4 KiB pages).
pub const CHECKPOINT_PAGES: i32 = 8192;

/// WAL size (pages) past which the writer checkpoints itself.
pub const FORCE_PAGES: i32 = 4 * CHECKPOINT_PAGES;

thread_local! {
    /// Pages in the WAL after this thread's last commit (set by the WAL hook).
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn record_wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// Decides when the log of one database is checkpointed, and by whom. Lives on the writer
/// thread.
pub struct Checkpoints {
    wake: mpsc::SyncSender<()>,
    /// WAL size at which the checkpointer is woken next: one wake-up per [`CHECKPOINT_PAGES`]
    /// of growth, so commits that land while it works do not queue a second pass.
    wake_at: Cell<i32>,
    /// The checkpointer finished a pass since it was last woken.
    passed: Arc<AtomicBool>,
}

impl Checkpoints {
    /// Takes over checkpointing of `writer`'s database at `path` (its automatic checkpoint
    /// is replaced) and starts the checkpointer thread with a connection of its own.
    pub fn start(writer: &Connection, path: &std::path::Path) -> Result<Self, crate::StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Replaces SQLite's own autocheckpoint hook on the writer.
        writer.wal_hook(Some(record_wal_pages));
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let passed = Arc::new(AtomicBool::new(false));
        let done = passed.clone();
        std::thread::Builder::new()
            .name("sundial-store-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                    done.store(true, Ordering::Release);
                }
            })
            .map_err(|e| {
                crate::StoreError::Backend(format!("cannot start checkpoint thread: {e}"))
            })?;
        Ok(Checkpoints {
            wake,
            wake_at: Cell::new(CHECKPOINT_PAGES),
            passed,
        })
    }

    /// Called on the writer thread once the replies of a group commit are sent; `idle` says
    /// no further batch is waiting.
    pub fn after_commit(&self, writer: &Connection, idle: bool) {
        let pages = WAL_PAGES.with(Cell::get);
        if pages < CHECKPOINT_PAGES {
            // The log was reused after a checkpoint (or is still small).
            self.wake_at.set(CHECKPOINT_PAGES);
            self.passed.store(false, Ordering::Relaxed);
        } else if pages >= FORCE_PAGES || (idle && self.passed.swap(false, Ordering::Acquire)) {
            if let Err(e) = checkpoint(writer) {
                tracing::warn!(error = %e, pages, "WAL checkpoint on the writer failed");
            }
        } else if pages >= self.wake_at.get() {
            self.wake_at.set(pages + CHECKPOINT_PAGES);
            self.passed.store(false, Ordering::Relaxed);
            // A wake-up already pending covers this one too.
            let _ = self.wake.try_send(());
        }
    }
}
