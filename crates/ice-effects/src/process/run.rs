//! Running one child process under limits: a clean environment, its own process group, stdin fed and stdout and
//! stderr drained concurrently (so the child never blocks on a full pipe), output kept up to a cap and hashed in
//! full, and a wall-clock timeout after which the whole group is killed.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};

/// The only `PATH` a child gets unless `PATH` itself is allowlisted.
pub(crate) const DEFAULT_PATH: &str = "/usr/bin:/bin";

/// How long output readers may take after the child ended before the result is taken as it stands.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// What to run.
pub(crate) struct Spec<'a> {
    /// Resolved absolute program path.
    pub program: &'a Path,
    /// The full argv (argv[0] is passed as the child's argv[0]).
    pub argv: &'a [String],
    /// Working directory.
    pub cwd: &'a Path,
    /// Extra environment (already checked against the allowlist).
    pub env: &'a BTreeMap<String, String>,
    /// Bytes written to stdin, which is then closed.
    pub stdin: &'a [u8],
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Bytes kept per output stream.
    pub max_output: u64,
}

/// One output stream: what was kept, how much there was, and the hash of all of it.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    /// The first `max_output` bytes.
    pub kept: Vec<u8>,
    /// Bytes the stream carried in total.
    pub total: u64,
    /// Hex blake3 of the whole stream, kept and discarded parts alike.
    pub hash: String,
    /// More than `max_output` bytes came.
    pub truncated: bool,
}

/// A process that ended by itself.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Stdout.
    pub stdout: Captured,
    /// Stderr.
    pub stderr: Captured,
    /// Wall-clock time from spawn to exit.
    pub duration: Duration,
    /// Something outside the process group kept an output pipe open after the child ended.
    pub streams_left_open: bool,
}

/// Why a run did not finish.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The process could not be started; nothing ran.
    Spawn(io::Error),
    /// The timeout was reached; the process group was killed.
    TimedOut(Duration),
    /// Waiting for the process failed after it started; it was killed.
    Wait(io::Error),
}

/// A stream being drained by its reader thread.
#[derive(Default)]
struct Drain {
    kept: Vec<u8>,
    total: u64,
    hasher: blake3::Hasher,
    truncated: bool,
}

impl Drain {
    fn snapshot(&self) -> Captured {
        Captured {
            kept: self.kept.clone(),
            total: self.total,
            hash: self.hasher.finalize().to_hex().to_string(),
            truncated: self.truncated,
        }
    }
}

/// Runs the process to completion or until the timeout.
pub(crate) fn run(spec: &Spec<'_>) -> Result<Finished, RunError> {
    let mut command = Command::new(spec.program);
    command
        .args(spec.argv.iter().skip(1))
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(spec.env)
        .current_dir(spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout (or the end) can kill everything it started, not only the direct child.
        .process_group(0);
    if let Some(arg0) = spec.argv.first() {
        command.arg0(arg0);
    }
    let start = Instant::now();
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let group = Pid::from_child(&child);

    if let Some(mut stdin) = child.stdin.take() {
        let input = spec.stdin.to_vec();
        // A child that never reads stdin gets EPIPE on our side once it exits or is killed; that is not an error.
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = drain(child.stdout.take(), spec.max_output, done_tx.clone());
    let stderr = drain(child.stderr.take(), spec.max_output, done_tx);

    let deadline = start + spec.timeout;
    let exited = wait_exit(&child, deadline);
    // The child is still unreaped here (a zombie at worst), so its pid — the group id — cannot have been reused:
    // killing the group reaches only what it started. ESRCH (nothing left) is the normal case.
    let _ = kill_process_group(group, Signal::KILL);
    let status = match exited {
        Ok(true) => child.wait().map_err(RunError::Wait)?,
        Ok(false) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::TimedOut(start.elapsed()));
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Wait(e));
        }
    };
    let duration = start.elapsed();
    let streams_left_open = !wait_drained(&done_rx, 2, deadline.max(Instant::now()) + DRAIN_GRACE);
    Ok(Finished { status, stdout: snapshot(&stdout), stderr: snapshot(&stderr), duration, streams_left_open })
}

/// Polls until the child exits (true) or the deadline passes (false), without reaping it.
fn wait_exit(child: &Child, deadline: Instant) -> io::Result<bool> {
    let pid = Pid::from_child(child);
    let mut pause = Duration::from_millis(1);
    loop {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        if waitid(WaitId::Pid(pid), options)?.is_some() {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Starts a thread draining `stream` into a shared [`Drain`]; it signals `done` at EOF.
fn drain<R: Read + Send + 'static>(stream: Option<R>, cap: u64, done: mpsc::Sender<()>) -> Arc<Mutex<Drain>> {
    let shared = Arc::new(Mutex::new(Drain::default()));
    let Some(mut stream) = stream else {
        let _ = done.send(());
        return shared;
    };
    let sink = Arc::clone(&shared);
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let chunk = &buf[..n];
            let mut d = sink.lock().unwrap_or_else(PoisonError::into_inner);
            d.hasher.update(chunk);
            d.total += n as u64;
            // Keep reading past the cap (discarding), so the child never blocks on a full pipe.
            let room = usize::try_from(cap.saturating_sub(d.kept.len() as u64)).unwrap_or(usize::MAX);
            if n > room {
                d.truncated = true;
            }
            let keep = n.min(room);
            d.kept.extend_from_slice(&chunk[..keep]);
        }
        let _ = done.send(());
    });
    shared
}

/// Waits until `count` readers reported EOF or the deadline passes; true when all did.
fn wait_drained(done: &Receiver<()>, count: usize, deadline: Instant) -> bool {
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        if done.recv_timeout(left).is_err() {
            return false;
        }
    }
    true
}

fn snapshot(shared: &Arc<Mutex<Drain>>) -> Captured {
    shared.lock().unwrap_or_else(PoisonError::into_inner).snapshot()
}

/// The signal that ended a process, if one did.
pub(crate) fn signal_of(status: &ExitStatus) -> Option<i32> {
    status.signal()
}
