//! Group commit for the SQLite journal, with the flush to disk and the checkpoints taken off the
//! writer thread.
//!
//! Three threads:
//! - the **writer** owns the connection. It drains whatever operations have queued up, runs them in
//!   one transaction (each in a savepoint, so one failing operation does not undo its neighbours) and
//!   commits. The connection runs with `synchronous = NORMAL`, so `COMMIT` writes the transaction's
//!   frames into the write-ahead log (the OS page cache) and returns without waiting for the disk.
//!   The journal's VFS writes each frame with one system call and may hold back the last few bytes
//!   of a commit, which the writer writes out right after `COMMIT` ([`super::frame_vfs`]);
//! - the **flusher** takes every committed batch that is waiting, calls `fdatasync` on the WAL file
//!   once for all of them, and only then answers their callers (through the inbox of each caller's
//!   thread, woken once per flush: [`super::inbox`]);
//! - the **checkpointer**, on a connection of its own, copies committed pages from the WAL into the
//!   database file while the writer goes on, and starts the WAL over once it has grown past
//!   [`RESTART_FRAMES`] (see [`checkpointer_loop`]).
//!
//! Why this is as durable as `synchronous = FULL`: FULL syncs the WAL after writing each commit
//! frame and before `COMMIT` returns. Here a caller is answered only after an `fdatasync` of the
//! whole WAL file that *began after* its batch's `COMMIT` had written the commit frame, so at the
//! moment of the answer the same bytes are on disk as under FULL. Checkpoints keep SQLite's own
//! ordering under NORMAL (the WAL is synced before pages are copied into the database file, and the
//! database file is synced before the WAL is reused: <https://www.sqlite.org/pragma.html#pragma_synchronous>,
//! <https://www.sqlite.org/wal.html>). A power loss can lose a committed batch whose flush had not
//! finished, but none of its callers had been answered, exactly as with a FULL commit that had not
//! returned.
//!
//! What it buys: the writer prepares and commits the next batch while the disk flushes the previous
//! one, instead of idling through every flush (a few milliseconds each on a virtual disk), so the
//! batches stay small and each caller waits for about one flush.
//!
//! A batch that wrote nothing (reads only) is answered at once when no earlier batch is still
//! waiting for its flush; otherwise it waits behind them, so no answer ever reveals a write that is
//! not yet durable. If the flush fails, the durability of the data written since the last good flush
//! is unknown (Linux may have dropped the dirty pages), so the journal stops: every waiting and later
//! caller is told to retry, and `/readyz` fails until the worker is restarted (the same choice
//! PostgreSQL makes on a failed fsync).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::JournalError;
use super::inbox::{Answer, Inbox, deliver};

pub(super) type Reply = Box<dyn FnOnce(bool) + Send>;
type Run = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// One operation: runs on the writer thread and says whether it succeeded, with the answer to give
/// once its batch is durable (or not).
pub(super) struct Op {
    run: Run,
    /// The inbox of the caller's thread, through which its answer is given (see [`super::inbox`]).
    inbox: Option<Arc<Inbox>>,
    /// In a savepoint of its own, so its failure undoes only its own writes. Without one, the
    /// operation promises to fail only before its first write; if it fails after writing anyway,
    /// the whole batch is rolled back.
    savepoint: bool,
}

impl Op {
    pub(super) fn new(
        savepoint: bool,
        run: impl FnOnce(&Connection) -> (bool, Reply) + Send + 'static,
    ) -> Op {
        Op {
            run: Box::new(run),
            inbox: super::inbox::current(),
            savepoint,
        }
    }
}

/// Largest number of operations committed in one transaction.
const MAX_BATCH: usize = 512;

/// How long the checkpointer lets commits accumulate before it copies them into the database file.
/// Pages written again within the interval are copied once: under intake load the random-key index
/// pages are written again every few tens of milliseconds, so 50 ms costs the checkpointer about
/// 7 µs of CPU per delivery against 12 µs at 20 ms (`examples/intake_load`, alternated), and 3.5 µs
/// against 5.1 µs with the journal alone (`examples/journal_intake`). Longer intervals save a little
/// more but let the WAL overshoot [`RESTART_FRAMES`] further before it is started over: it peaked at
/// 51 MiB at 20 ms, 58 MiB at 50 ms and 64 MiB, the journal's `journal_size_limit`, at 100 ms.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// WAL size (in frames, one page each) past which the checkpointer starts the WAL over, so that new
/// commits overwrite it from its beginning instead of growing it: 12,000 frames of 4 KiB is 47 MiB.
const RESTART_FRAMES: i64 = 12_000;

/// Frames committed during a passive checkpoint few enough for the restart to copy under the write
/// lock (a few batches).
const RESTART_TAIL_FRAMES: i64 = 200;

/// WAL size at which the writer checkpoints by itself, as SQLite's `wal_autocheckpoint` does: only
/// if the checkpointer has stopped or cannot keep up, since it starts the WAL over at
/// [`RESTART_FRAMES`].
pub(super) const WRITER_CHECKPOINT_FRAMES: i64 = 2 * RESTART_FRAMES;

/// Busy handler for the journal's two connections: retry every 100 µs, for up to 5 s. The writer
/// waits for the lock only while the checkpointer's restart holds it (about a millisecond), and
/// the restart waits only for the writer's current batch; SQLite's default handler sleeps 1 ms,
/// then 2, 5, 10 and up to 100 ms between tries, so each side would sleep long after the other
/// had let go.
pub(super) fn busy_retry(count: i32) -> bool {
    if count >= 50_000 {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_micros(100));
    true
}

/// A committed batch's answers, handed to the flusher.
struct Committed {
    replies: Vec<Answer>,
    /// False when the batch's commit failed: its callers are told to retry whatever the flush does.
    committed: bool,
    /// False for a batch that only read: it needs no flush of its own.
    wrote: bool,
}

/// Held by a test to stop the flusher before its next flush (production passes `None`).
pub(super) type FlushGate = Arc<std::sync::Mutex<()>>;

/// Starts the writer and flusher threads for `conn`, the journal at `path` (already in WAL mode).
/// `alive` goes false when either stops.
pub(super) fn start(
    conn: Connection,
    path: &Path,
    rx: mpsc::UnboundedReceiver<Op>,
    alive: Arc<AtomicBool>,
    gate: Option<FlushGate>,
) -> Result<(), JournalError> {
    let wal = WalFile::open(&conn, path)?;
    let checkpoints = super::frame_vfs::open_connection(path)?;
    checkpoints.busy_handler(Some(busy_retry))?;
    // The checkpointer is rung after each commit that wrote; one pending ring is enough.
    let (bell, rung) = std::sync::mpsc::sync_channel::<()>(1);
    let (flush_tx, flush_rx) = std::sync::mpsc::channel::<Committed>();
    let waiting = Arc::new(AtomicUsize::new(0));
    let spawn_err =
        |e: std::io::Error| JournalError::Unavailable(format!("cannot start the journal: {e}"));

    let flusher_alive = alive.clone();
    let flusher_waiting = waiting.clone();
    std::thread::Builder::new()
        .name("journal-flush".into())
        .spawn(move || flusher_loop(wal, flush_rx, flusher_waiting, &flusher_alive, gate))
        .map_err(spawn_err)?;

    let checkpointer_alive = alive.clone();
    std::thread::Builder::new()
        .name("journal-checkpoint".into())
        .spawn(move || checkpointer_loop(&checkpoints, &rung, &checkpointer_alive))
        .map_err(spawn_err)?;

    std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || {
            writer_loop(&conn, rx, &flush_tx, &bell, &waiting, &alive);
            alive.store(false, Ordering::SeqCst);
        })
        .map_err(spawn_err)?;
    Ok(())
}

/// Runs a transaction-control statement through the statement cache (these run several times per
/// batch, so parsing them each time would show in the intake profile).
fn run(conn: &Connection, sql: &str) -> bool {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .is_ok()
}

fn writer_loop(
    conn: &Connection,
    mut rx: mpsc::UnboundedReceiver<Op>,
    flush: &std::sync::mpsc::Sender<Committed>,
    checkpointer: &std::sync::mpsc::SyncSender<()>,
    waiting: &AtomicUsize,
    alive: &AtomicBool,
) {
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut replies: Vec<Answer> = Vec::with_capacity(batch.len());
        if !alive.load(Ordering::SeqCst) {
            // The flusher failed: nothing more is committed (see the module doc).
            // Dropping an operation drops its caller's answer channel: the caller gets "retry".
            batch.clear();
            continue;
        }
        let changes_before = conn.total_changes();
        let began = run(conn, "BEGIN IMMEDIATE");
        // An operation without a savepoint failed after writing: its writes cannot be undone alone.
        let mut torn = false;
        for op in batch.drain(..) {
            let reply = if op.savepoint {
                run(conn, "SAVEPOINT op");
                let (ok, reply) = (op.run)(conn);
                if !ok {
                    run(conn, "ROLLBACK TO op");
                }
                run(conn, "RELEASE op");
                reply
            } else {
                let before = conn.total_changes();
                let (ok, reply) = (op.run)(conn);
                torn |= !ok && conn.total_changes() != before;
                reply
            };
            replies.push(Answer {
                reply,
                inbox: op.inbox,
            });
        }
        if torn {
            tracing::error!(
                "a journal operation failed after writing; the batch is rolled back and its callers are told to retry"
            );
        }
        let mut committed = began && !torn && run(conn, "COMMIT");
        if committed && let Err(e) = super::frame_vfs::write_held_frames(conn) {
            // The commit is in the WAL index but its end is not in the file: like a failed flush,
            // its durability is unknown, so the journal stops (see the module doc).
            tracing::error!(error = %e, code = "JOURNAL_FLUSH_FAILED", "the journal stops taking work: check the disk, then restart the worker");
            alive.store(false, Ordering::SeqCst);
            committed = false;
        }
        if !committed {
            let _ = conn.execute_batch("ROLLBACK");
            if !torn && alive.load(Ordering::SeqCst) {
                tracing::error!("journal commit failed; the batch's callers are told to retry");
            }
        }
        let wrote = committed && conn.total_changes() != changes_before;
        if wrote {
            // Full means a ring is already pending; gone means the checkpointer stopped, and the
            // writer's own checkpoints take over (`WRITER_CHECKPOINT_FRAMES`).
            let _ = checkpointer.try_send(());
        }
        if !wrote && waiting.load(Ordering::SeqCst) == 0 {
            // Nothing to flush, and nothing earlier is still waiting for its flush.
            deliver(replies.into_iter().map(|a| (a, committed)));
            continue;
        }
        waiting.fetch_add(1, Ordering::SeqCst);
        if let Err(lost) = flush.send(Committed {
            replies,
            committed,
            wrote,
        }) {
            deliver(lost.0.replies.into_iter().map(|a| (a, false)));
            return;
        }
    }
}

fn flusher_loop(
    mut wal: WalFile,
    rx: std::sync::mpsc::Receiver<Committed>,
    waiting: Arc<AtomicUsize>,
    alive: &AtomicBool,
    gate: Option<FlushGate>,
) {
    let mut taken: Vec<Committed> = Vec::new();
    while let Ok(first) = rx.recv() {
        taken.push(first);
        while let Ok(more) = rx.try_recv() {
            taken.push(more);
        }
        let _held = gate.as_ref().map(|g| g.lock());
        // Every batch taken was committed before this flush begins, so the flush covers it.
        let flushed = if !alive.load(Ordering::SeqCst) {
            false
        } else if taken.iter().any(|c| c.wrote) {
            match wal.sync() {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        code = "JOURNAL_FLUSH_FAILED",
                        "the journal's write-ahead log could not be flushed to disk; the journal \
                         stops taking work (callers are told to retry): check the disk, then restart \
                         the worker"
                    );
                    alive.store(false, Ordering::SeqCst);
                    false
                }
            }
        } else {
            true
        };
        let batches = taken.len();
        deliver(taken.drain(..).flat_map(|batch| {
            let durable = batch.committed && flushed;
            batch.replies.into_iter().map(move |a| (a, durable))
        }));
        waiting.fetch_sub(batches, Ordering::SeqCst);
    }
}

/// Checkpoints on a connection of its own, so the writer seldom stalls for one.
///
/// A checkpoint copies the newest version of each page in the WAL into the database file and syncs
/// it; under load that is thousands of random page writes and a sync of several milliseconds. Run by
/// the writer (SQLite's `wal_autocheckpoint`), it held up every caller queued behind the commit
/// that triggered it. Here a `PASSIVE` checkpoint runs at most every [`CHECKPOINT_INTERVAL`] while
/// commits come in, without taking the write lock, so the writer commits alongside it.
///
/// A passive checkpoint never starts the WAL over while commits keep arriving: SQLite does that
/// only for a transaction that begins with every frame already copied. So once the WAL holds
/// [`RESTART_FRAMES`] frames, the checkpointer passes again until few frames were committed during
/// its last pass, then runs a `RESTART` checkpoint: it waits for the writer's current transaction
/// to end, holds the write lock while it copies those few frames and syncs the database file, and
/// leaves the WAL to be overwritten from its start by the next commit.
/// <https://www.sqlite.org/c3ref/wal_checkpoint_v2.html>, <https://www.sqlite.org/wal.html#ckpt>
///
/// A WAL started over by another connection makes the writer drop its page cache at its next
/// transaction, and read back the index pages it needs. That is why the restart waits for 12,000
/// frames rather than SQLite's default 1,000: measured with `examples/intake_load` (median of 4),
/// restarting at 16,000 frames gave 15.1k deliveries/s against 14.1k at 4,000, and the checkpointer
/// with no restart of its own (the writer restarting after a short checkpoint of the tail) gave
/// 13.9k/s. 12,000 measured the same as 16,000 and keeps the WAL file under the journal's 64 MiB
/// `journal_size_limit`, so it is reused in place rather than cut back and grown again.
///
/// SQLite orders the syncs of every checkpoint itself, whichever connection runs it (the WAL is
/// synced before its pages are copied, the database file before the WAL is reused), so this moves
/// no durability guarantee. A failed checkpoint is retried after the next commit; the writer
/// checkpoints by itself past [`WRITER_CHECKPOINT_FRAMES`] should the checkpointer ever fall that far
/// behind.
fn checkpointer_loop(conn: &Connection, rung: &std::sync::mpsc::Receiver<()>, alive: &AtomicBool) {
    let checkpoint = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            r.get::<_, i64>(1)
        })
    };
    // Ends when the writer stops (its side of the channel is dropped).
    while rung.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        while rung.try_recv().is_ok() {}
        if !alive.load(Ordering::SeqCst) {
            // The WAL could not be flushed: nothing more is copied out of it.
            return;
        }
        let result = checkpoint("PASSIVE").and_then(|mut frames| {
            if frames < RESTART_FRAMES {
                return Ok(());
            }
            for _ in 0..4 {
                let now = checkpoint("PASSIVE")?;
                let committed_meanwhile = now - frames;
                frames = now;
                if committed_meanwhile <= RESTART_TAIL_FRAMES {
                    break;
                }
            }
            checkpoint("RESTART").map(|_| ())
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "journal checkpoint failed; retried after the next commit");
        }
    }
}

/// The `-wal` file SQLite keeps beside the database at `db`.
pub(super) fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// The journal's `-wal` file, opened a second time so another thread can flush it.
struct WalFile {
    path: PathBuf,
    file: File,
    inode: u64,
}

impl WalFile {
    fn open(conn: &Connection, db: &Path) -> Result<WalFile, JournalError> {
        // Reading in WAL mode makes SQLite open (creating) the `-wal` file beside the database.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        let path = wal_path(db);
        let (file, inode) = Self::open_path(&path)?;
        Ok(WalFile { path, file, inode })
    }

    fn open_path(path: &Path) -> Result<(File, u64), JournalError> {
        let file = File::open(path).map_err(|e| {
            JournalError::Unavailable(format!(
                "cannot open the journal's write-ahead log {}: {e}",
                path.display()
            ))
        })?;
        let inode = file
            .metadata()
            .map_err(|e| JournalError::Unavailable(e.to_string()))?
            .ino();
        Ok((file, inode))
    }

    /// `fdatasync` of the WAL file. `fsync` acts on the file, not on the descriptor, so this
    /// descriptor flushes what the connection's own descriptor wrote. SQLite keeps the same file for
    /// as long as a connection is open (checkpoints restart or truncate it in place), but should it
    /// ever be replaced, the file now at the path is reopened first.
    fn sync(&mut self) -> std::io::Result<()> {
        let current = std::fs::metadata(&self.path)?.ino();
        if current != self.inode {
            let (file, inode) =
                Self::open_path(&self.path).map_err(|e| std::io::Error::other(e.to_string()))?;
            self.file = file;
            self.inode = inode;
        }
        self.file.sync_data()
    }
}

#[cfg(test)]
// Holding the flush gate across awaits is what these tests are about.
#[allow(clippy::await_holding_lock)]
mod tests {
    use super::super::{DeliveryOutcome, Journal, NewDelivery, NewJob};
    use super::{FlushGate, wal_path};
    use std::path::Path;
    use std::time::Duration;

    fn delivery(key: &str) -> NewDelivery {
        NewDelivery {
            key: key.into(),
            scenario: "r1".into(),
            body_hash: "h".into(),
            body: "{}".into(),
        }
    }

    /// Journals an R1 delivery under `key` with a job of its own.
    async fn accept(journal: &Journal, key: &str) -> Result<DeliveryOutcome, super::JournalError> {
        journal
            .accept_delivery(
                delivery(key),
                NewJob::new("single", "r1", serde_json::json!({})),
                202,
                |id| serde_json::json!({ "job": id }).to_string(),
            )
            .await
    }

    /// Counts deliveries through a connection of its own: what is committed, flushed or not.
    fn committed_deliveries(path: &Path) -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
            .unwrap()
    }

    /// Whether `rx` is still unanswered after a moment (the flusher is held, so it must be).
    async fn still_waiting<T>(rx: &mut tokio::task::JoinHandle<T>) -> bool {
        tokio::time::timeout(Duration::from_millis(150), rx)
            .await
            .is_err()
    }

    /// Sends a delivery and returns its pending answer once its row is committed (visible to
    /// another connection).
    async fn accept_until_committed(
        journal: &Journal,
        path: &Path,
        key: &'static str,
    ) -> tokio::task::JoinHandle<Result<DeliveryOutcome, super::JournalError>> {
        let j = journal.clone();
        let accept = tokio::spawn(async move { accept(&j, key).await });
        for _ in 0..200 {
            if committed_deliveries(path) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            committed_deliveries(path),
            1,
            "the delivery was not committed"
        );
        accept
    }

    fn gated(path: &Path) -> (Journal, FlushGate) {
        let gate = FlushGate::default();
        (Journal::open_gated(path, Some(gate.clone())).unwrap(), gate)
    }

    #[tokio::test]
    async fn a_delivery_is_answered_only_after_its_commit_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let (journal, gate) = gated(&path);
        let held = gate.lock().unwrap();
        // Committed (another connection sees it) but not yet flushed: no answer.
        let mut accept = accept_until_committed(&journal, &path, "d1").await;
        assert!(
            still_waiting(&mut accept).await,
            "answered before the flush"
        );
        drop(held);
        assert_eq!(accept.await.unwrap().unwrap(), DeliveryOutcome::New);
    }

    #[tokio::test]
    async fn a_read_waits_behind_an_unflushed_write_and_alone_needs_no_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let (journal, gate) = gated(&path);
        let count = |j: &Journal| {
            let j = j.clone();
            tokio::spawn(async move { j.delivery_count().await })
        };
        // Nothing is waiting for a flush: a read is answered although the flusher is held.
        let held = gate.lock().unwrap();
        assert_eq!(count(&journal).await.unwrap().unwrap(), 0);
        // A write waits for its flush, and a read after it must not reveal it before then.
        let mut accept = accept_until_committed(&journal, &path, "d2").await;
        let mut read = count(&journal);
        assert!(
            still_waiting(&mut read).await,
            "a read revealed an unflushed write"
        );
        assert!(still_waiting(&mut accept).await);
        drop(held);
        assert_eq!(read.await.unwrap().unwrap(), 1);
        assert_eq!(accept.await.unwrap().unwrap(), DeliveryOutcome::New);
    }

    #[tokio::test]
    async fn an_operation_that_fails_after_writing_without_a_savepoint_rolls_back_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path).unwrap();
        let insert = |conn: &rusqlite::Connection, key: &str| {
            conn.execute(
                "INSERT INTO analysis_cache (key, value, created_at) VALUES (?1, '{}', 0)",
                [key],
            )
        };
        // Holds the writer so that the next two operations queue up and share one batch.
        let j = journal.clone();
        let hold = tokio::spawn(async move {
            j.call(|_| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let j = journal.clone();
        let neighbour =
            tokio::spawn(async move { j.call(move |conn| Ok(insert(conn, "neighbour")?)).await });
        let j = journal.clone();
        let torn = tokio::spawn(async move {
            j.call_checks_first(move |conn| {
                insert(conn, "torn")?;
                Err::<(), _>(super::JournalError::Corrupt("fails after writing".into()))
            })
            .await
        });
        hold.await.unwrap().unwrap();
        assert!(torn.await.unwrap().is_err());
        assert!(
            matches!(
                neighbour.await.unwrap(),
                Err(super::JournalError::Unavailable(_))
            ),
            "the neighbour is told to retry, not that its write is done"
        );
        let conn = rusqlite::Connection::open(&path).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM analysis_cache", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "neither write of the batch was committed");
        // The journal goes on: the neighbour's retry succeeds.
        journal
            .call(move |conn| Ok(insert(conn, "neighbour")?))
            .await
            .unwrap();
    }

    /// Deliveries in the database file itself, leaving out the WAL: what checkpoints have copied.
    fn checkpointed_deliveries(path: &Path) -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        let conn = rusqlite::Connection::open_with_flags(
            uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        conn.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn the_checkpointer_copies_commits_into_the_database_file_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path).unwrap();
        // Far fewer frames than the writer's own checkpoint waits for.
        for n in 0..20 {
            accept(&journal, &format!("d{n}")).await.unwrap();
        }
        for _ in 0..500 {
            if checkpointed_deliveries(&path) == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            checkpointed_deliveries(&path),
            20,
            "the commits were not copied into the database file"
        );
        // The journal goes on after a checkpoint.
        assert_eq!(journal.delivery_count().await.unwrap(), 20);
    }

    /// The checkpoint sequence number in the WAL header (bytes 12..16, big-endian), which SQLite
    /// increments each time the WAL is started over: <https://www.sqlite.org/fileformat2.html#walformat>.
    fn wal_restarts(path: &Path) -> u32 {
        use std::io::Read;
        let mut header = [0u8; 16];
        std::fs::File::open(wal_path(path))
            .and_then(|mut f| f.read_exact(&mut header))
            .map_or(0, |()| {
                u32::from_be_bytes([header[12], header[13], header[14], header[15]])
            })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_steady_load_the_wal_is_started_over_before_the_writer_would_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path).unwrap();
        let wal = wal_path(&path);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // 32 callers that never pause: the writer always has a batch, so a passive checkpoint never
        // finds the WAL fully copied, and only the restart can start it over.
        let senders: Vec<_> = (0..32)
            .map(|c| {
                let (journal, stop) = (journal.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        accept(&journal, &format!("c{c}-{n}")).await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut largest = 0;
        for _ in 0..1200 {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            if wal_restarts(&path) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut sent = 0;
        for s in senders {
            sent += s.await.unwrap();
        }
        assert!(
            wal_restarts(&path) >= 2,
            "the WAL was not started over twice within a minute of steady load"
        );
        // The writer alone would let the WAL reach `WRITER_CHECKPOINT_FRAMES` frames first.
        let frame = 4096 + 24;
        assert!(
            largest < (super::RESTART_FRAMES as u64 + 4_000) * frame,
            "the WAL grew to {largest} bytes"
        );
        assert_eq!(journal.delivery_count().await.unwrap() as u64, sent);
    }
}
