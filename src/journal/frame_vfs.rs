//! The journal's SQLite VFS: the platform's default VFS, with each write-ahead-log frame written to
//! the file by one system call instead of two.
//!
//! SQLite appends a WAL frame as two writes: the 24-byte frame header, then the page right after it
//! (`walWriteOneFrame` in `wal.c`). Under intake load that is two `pwrite`s per frame, several frames
//! per delivery, all on the writer thread, the journal's serial stage; in its profile, `pwrite` took
//! a quarter of that thread's time. This VFS keeps a write of at most [`HELD_MAX`] bytes to a WAL
//! file back until the next call on that file: when the next call is a write that starts where the
//! held bytes end (the frame's page), both go to the file as one write. Any other call on the file
//! (a read, a sync, a truncation, its size, a file control, closing it), or a write elsewhere, first
//! writes the held bytes as they were. Every other file (the database, temporary files) goes straight
//! through.
//!
//! Nothing is reordered, and nothing is left behind where it matters:
//! - a frame's page always follows its header, so every frame is whole in the file before the commit
//!   publishes it in the WAL index. A reader on another connection (the checkpointer) reads only
//!   published frames, and only their pages;
//! - a commit can end on a header: when a transaction wrote a page twice (its cache spilled), SQLite
//!   rewrites the headers of the frames after the first rewritten one, each a 24-byte write after a
//!   read (`walRewriteChecksums`), so the last one is held when `COMMIT` returns. The writer therefore
//!   calls [`write_held_frames`] after every `COMMIT`, before the flusher's `fdatasync` (see
//!   [`super::writer`]), so an answered commit's every byte is on disk. The tests below check both
//!   with readers on the plain default VFS, one of them recovering the WAL from its file alone.
//!
//! The file object SQLite allocates for this VFS is the default VFS's own file object followed by
//! [`Held`]; a WAL file's method table is the default one with the calls above wrapped, so the
//! default VFS's code keeps working on its own structure. <https://www.sqlite.org/c3ref/vfs.html>,
//! <https://www.sqlite.org/c3ref/io_methods.html>, <https://www.sqlite.org/fileformat2.html#walformat>

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the journal's connections open their database with.
const NAME: &str = "coach-frames";
const NAME_C: &CStr = c"coach-frames";

/// Largest write held back: the WAL header (32 bytes) and the first frame's header (24) together.
const HELD_MAX: usize = 64;

/// What this VFS adds after the default VFS's file object.
#[repr(C)]
struct Held {
    /// The default VFS's methods for this file; null when the file is not wrapped.
    inner: *const ffi::sqlite3_io_methods,
    /// File offset of `bytes[0]`.
    at: i64,
    len: usize,
    bytes: [u8; HELD_MAX],
    /// Scratch for a held write joined with the write after it; kept for the file's lifetime.
    joined: Vec<u8>,
}

/// The registered VFS: where [`Held`] sits in its file objects, and the default VFS it wraps.
struct Registered {
    /// Offset of [`Held`] in the file object: the default VFS's size, rounded up for alignment.
    held_offset: usize,
    base: *mut ffi::sqlite3_vfs,
}

// SAFETY: `base` is SQLite's default VFS object, which lives as long as the process and is only read.
unsafe impl Send for Registered {}
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Result<Registered, String>> = OnceLock::new();

/// Registers the VFS (once per process) under [`NAME`]. It is not made the default.
fn register() -> Result<(), String> {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe; the VFS object is
            // leaked, as SQLite requires it to outlive every connection that uses it.
            unsafe {
                let base = ffi::sqlite3_vfs_find(std::ptr::null());
                if base.is_null() {
                    return Err("SQLite has no default VFS".to_owned());
                }
                let base_size = usize::try_from((*base).szOsFile).unwrap_or(0);
                let align = std::mem::align_of::<Held>();
                let held_offset = base_size.div_ceil(align) * align;
                let size = c_int::try_from(held_offset + std::mem::size_of::<Held>())
                    .map_err(|_| "the VFS file object is too large".to_owned())?;
                let mut vfs = *base;
                vfs.szOsFile = size;
                vfs.zName = NAME_C.as_ptr();
                vfs.pNext = std::ptr::null_mut();
                vfs.xOpen = Some(open);
                let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
                if rc != ffi::SQLITE_OK {
                    return Err(format!(
                        "cannot register the journal's VFS (SQLite code {rc})"
                    ));
                }
                Ok(Registered { held_offset, base })
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

fn registered() -> &'static Registered {
    match REGISTERED.get() {
        Some(Ok(registered)) => registered,
        // `open` is only reached through a VFS that `register` registered.
        _ => unreachable!("the journal's VFS is used before it is registered"),
    }
}

/// The wrapped method table, and the default one it was built from (the methods of the first WAL
/// file opened; a file with other methods is not wrapped).
static TABLE: OnceLock<(usize, ffi::sqlite3_io_methods)> = OnceLock::new();

/// Whether a file object has the wrapped methods (and so is followed by [`Held`]).
fn is_wrapped(methods: *const ffi::sqlite3_io_methods) -> bool {
    TABLE
        .get()
        .is_some_and(|(_, table)| std::ptr::eq(methods, table))
}

/// The wrapped method table for a WAL file whose default methods are `inner`.
fn wrapped(inner: *const ffi::sqlite3_io_methods) -> Option<&'static ffi::sqlite3_io_methods> {
    let (from, table) = TABLE.get_or_init(|| {
        // SAFETY: `inner` is the default VFS's static method table of an open file.
        let mut table = unsafe { *inner };
        table.xClose = Some(close);
        table.xRead = Some(read);
        table.xWrite = Some(write);
        table.xTruncate = Some(truncate);
        table.xSync = Some(sync);
        table.xFileSize = Some(file_size);
        table.xFileControl = Some(file_control);
        (inner as usize, table)
    });
    (*from == inner as usize).then_some(table)
}

/// # Safety
/// `file` must be a file object of this VFS.
unsafe fn held<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Held {
    // SAFETY: the caller's file object is `szOsFile` bytes, with `Held` at `held_offset`.
    unsafe {
        &mut *file
            .cast::<u8>()
            .add(registered().held_offset)
            .cast::<Held>()
    }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let reg = registered();
    // SAFETY: `file` has room for the default VFS's object and `Held` (`szOsFile`); it is
    // initialised here before SQLite or the wrapped methods read it.
    unsafe {
        std::ptr::write(
            file.cast::<u8>().add(reg.held_offset).cast::<Held>(),
            Held {
                inner: std::ptr::null(),
                at: 0,
                len: 0,
                bytes: [0; HELD_MAX],
                joined: Vec::new(),
            },
        );
        let Some(base_open) = (*reg.base).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let rc = base_open(reg.base, name, file, flags, out_flags);
        if rc != ffi::SQLITE_OK || flags & ffi::SQLITE_OPEN_WAL == 0 {
            return rc;
        }
        let inner = (*file).pMethods;
        if inner.is_null() {
            return rc;
        }
        if let Some(table) = wrapped(inner) {
            held(file).inner = inner;
            (*file).pMethods = table;
        }
        rc
    }
}

/// Writes the held bytes, if any, where they belong.
///
/// # Safety
/// `file` must be an open, wrapped file object of this VFS.
unsafe fn write_held(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the caller; `inner` is the default methods of this file.
    unsafe {
        let held = held(file);
        if held.len == 0 {
            return ffi::SQLITE_OK;
        }
        let len = held.len;
        held.len = 0;
        let Some(inner_write) = (*held.inner).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        inner_write(
            file,
            held.bytes.as_ptr().cast(),
            c_int::try_from(len).unwrap_or(0),
            held.at,
        )
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this with one of this VFS's wrapped files and a buffer of `amount` bytes.
    unsafe {
        let held = held(file);
        let Some(inner_write) = (*held.inner).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let data = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        if held.len > 0 && offset == held.at + held.len as i64 {
            if held.len + len <= HELD_MAX {
                held.bytes[held.len..held.len + len].copy_from_slice(data);
                held.len += len;
                return ffi::SQLITE_OK;
            }
            // The page after its frame header: one write for both.
            held.joined.clear();
            held.joined.extend_from_slice(&held.bytes[..held.len]);
            held.joined.extend_from_slice(data);
            held.len = 0;
            let Ok(joined_len) = c_int::try_from(held.joined.len()) else {
                return ffi::SQLITE_IOERR_WRITE;
            };
            return inner_write(file, held.joined.as_ptr().cast(), joined_len, held.at);
        }
        let rc = write_held(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if len <= HELD_MAX {
            held.bytes[..len].copy_from_slice(data);
            held.at = offset;
            held.len = len;
            return ffi::SQLITE_OK;
        }
        inner_write(file, buf, amount, offset)
    }
}

/// Generates a wrapped method that writes the held bytes, then calls the default method.
macro_rules! after_held {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite calls this with one of this VFS's wrapped files.
            unsafe {
                let rc = write_held(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match (*held(file).inner).$field {
                    Some(inner) => inner(file, $($arg),*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

after_held!(read, xRead, (buf: *mut c_void, amount: c_int, offset: i64));
after_held!(truncate, xTruncate, (size: i64));
after_held!(sync, xSync, (flags: c_int));
after_held!(file_size, xFileSize, (size: *mut i64));
after_held!(file_control, xFileControl, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each open file once; `Held` was initialised by `open`.
    unsafe {
        let written = write_held(file);
        let inner = held(file).inner;
        std::ptr::drop_in_place(held(file));
        let closed = match (*inner).xClose {
            Some(inner_close) => inner_close(file),
            None => ffi::SQLITE_OK,
        };
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

/// Writes the bytes the WAL file of `conn` holds back, if it holds any (see the module doc).
pub(super) fn write_held_frames(conn: &rusqlite::Connection) -> Result<(), super::JournalError> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_JOURNAL_POINTER stores the connection's WAL (or rollback journal) file
    // object, or null, in `file`; the connection is not used by another thread meanwhile (`&`
    // access on the writer thread, which owns it). Only a file with the wrapped methods has `Held`.
    let rc = unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            (&raw mut file).cast(),
        );
        if rc != ffi::SQLITE_OK || file.is_null() || !is_wrapped((*file).pMethods) {
            return Ok(());
        }
        write_held(file)
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(super::JournalError::Unavailable(format!(
            "cannot write the end of a commit to the write-ahead log (SQLite code {rc})"
        )))
    }
}

/// Opens `path` with the journal's VFS and the default flags.
pub(super) fn open_connection(
    path: &std::path::Path,
) -> Result<rusqlite::Connection, super::JournalError> {
    register().map_err(super::JournalError::Unavailable)?;
    Ok(rusqlite::Connection::open_with_flags_and_vfs(
        path,
        rusqlite::OpenFlags::default(),
        NAME,
    )?)
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    fn journal_like(path: &std::path::Path) -> Connection {
        let conn = super::open_connection(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        conn
    }

    /// Write system calls this process has made (Linux), from `/proc/self/io`.
    fn write_calls() -> u64 {
        let io = std::fs::read_to_string("/proc/self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("syscw: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn commit_rows(conn: &Connection, from: usize, count: usize) {
        for i in from..from + count {
            conn.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                params![format!("key-{:08}", i * 7919 % 100_003), "v".repeat(300)],
            )
            .unwrap();
        }
    }

    #[test]
    fn every_commit_is_whole_in_the_file_for_a_reader_on_the_default_vfs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let conn = journal_like(&path);
        // The plain reader opens the WAL with its own descriptor: a frame header still held back
        // by the writer's VFS would leave it a torn last frame, so it would miss the last commit.
        let reader = Connection::open(&path).unwrap();
        for round in 0..50 {
            conn.execute_batch("BEGIN").unwrap();
            commit_rows(&conn, round * 20, 20);
            conn.execute_batch("COMMIT").unwrap();
            let seen: usize = reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(seen, (round + 1) * 20, "after commit {round}");
        }
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        // A restart checkpoint and the WAL overwritten from its start go through the same calls.
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
            .unwrap();
        commit_rows(&conn, 5_000, 10);
        let seen: usize = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 1_010);
    }

    #[test]
    fn a_commit_that_rewrote_its_frames_is_recovered_from_the_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let conn = journal_like(&path);
        // A cache of 10 pages spills a transaction of about 40 into the WAL before its commit; the
        // UPDATE then writes those pages again, so the commit rewrites frame headers and ends on one.
        conn.pragma_update(None, "cache_size", 10).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        commit_rows(&conn, 0, 400);
        conn.execute("UPDATE t SET v = ?1", ["w".repeat(300)])
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        super::write_held_frames(&conn).unwrap();

        // Copies of the files as the OS has them, without the WAL index: opening them recovers the
        // WAL, checking every frame's checksum, as the next worker would after a crash.
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(&path, copy.path().join("j.db")).unwrap();
        std::fs::copy(
            super::super::writer::wal_path(&path),
            copy.path().join("j.db-wal"),
        )
        .unwrap();
        let recovered = Connection::open(copy.path().join("j.db")).unwrap();
        let updated: usize = recovered
            .query_row(
                "SELECT count(*) FROM t WHERE v = ?1",
                ["w".repeat(300)],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(updated, 400);
    }

    #[test]
    fn a_frame_is_written_by_one_system_call() {
        let dir = tempfile::tempdir().unwrap();
        let joined = journal_like(&dir.path().join("joined.db"));
        let plain = Connection::open(dir.path().join("plain.db")).unwrap();
        plain.pragma_update(None, "journal_mode", "WAL").unwrap();
        plain.pragma_update(None, "synchronous", "NORMAL").unwrap();
        plain.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        plain
            .execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();

        let before = write_calls();
        commit_rows(&plain, 0, 300);
        let by_plain = write_calls() - before;
        let before = write_calls();
        commit_rows(&joined, 0, 300);
        let by_joined = write_calls() - before;
        // Each commit writes about three frames: two writes each on the default VFS, one here.
        assert!(
            by_joined * 10 <= by_plain * 6,
            "{by_joined} writes through the journal's VFS against {by_plain} without it"
        );
        let rows: usize = joined
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 300);
    }
}
