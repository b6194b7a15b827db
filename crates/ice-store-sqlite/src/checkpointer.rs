//! WAL checkpoints off the commit path.
//!
//! With SQLite's automatic checkpoints, the commit that pushes the WAL past its limit also copies the WAL into the
//! database file and fsyncs it, inside that commit: every few dozen group commits one took several times as long,
//! and every appender waiting on it with it. Here the writer only nudges this thread after each commit; it runs a
//! `PASSIVE` checkpoint on its own connection (which never blocks the writer or readers: it copies what no reader
//! still needs) at most every [`PAUSE`]. The writer keeps a much larger automatic limit as a backstop, should this
//! thread fall behind.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The writer's own automatic checkpoint limit, in WAL pages (SQLite's default is 1,000): reached only if the
/// checkpointer falls behind.
pub(crate) const BACKSTOP_PAGES: u32 = 16_384;

/// The least time between two checkpoints: nudges that arrive meanwhile are gathered into the next one.
const PAUSE: Duration = Duration::from_millis(100);

/// Checkpoints after each nudge (gathered, see [`PAUSE`]) until the writer, the only sender, is gone.
pub(crate) fn run(conn: &Connection, nudges: &Receiver<()>) {
    let mut nudged = nudges.recv().is_ok();
    while nudged {
        // A failed checkpoint (the file busy, an I/O error) is left to the next nudge, or to the backstop.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        // Commits during the pause are checkpointed right after it, without waiting for another.
        nudged = false;
        let until = Instant::now() + PAUSE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match nudges.recv_timeout(left) {
                Ok(()) => nudged = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if !nudged {
            nudged = nudges.recv().is_ok();
        }
    }
}
