//! Human and JSON rendering of events, runs and errors.

use std::fmt::Write as _;

use ice_core::{ErrorCode, Event, RunRecord};
use ice_runtime::{HomeError, RuntimeError};
use ice_store::StoreError;

use crate::exit;

/// Anything a command can fail with; knows its code, hint and exit code.
#[derive(Debug)]
pub enum CliError {
    /// Refused or failed in the runtime.
    Runtime(RuntimeError),
    /// Home / configuration problem.
    Home(HomeError),
    /// A store failure outside the runtime.
    Store(StoreError),
    /// Bad argument or lookup failure with a code.
    Coded(ErrorCode, String),
}

impl From<RuntimeError> for CliError {
    fn from(e: RuntimeError) -> Self {
        Self::Runtime(e)
    }
}
impl From<HomeError> for CliError {
    fn from(e: HomeError) -> Self {
        Self::Home(e)
    }
}
impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
impl From<ice_core::Rejection> for CliError {
    fn from(r: ice_core::Rejection) -> Self {
        Self::Coded(r.code, r.message)
    }
}

impl CliError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Runtime(e) => e.code(),
            Self::Home(e) => e.code,
            Self::Store(e) => e.code(),
            Self::Coded(c, _) => *c,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Runtime(RuntimeError::Rejected { rejection, .. }) => rejection.message.clone(),
            Self::Runtime(e) => strip_code(&e.to_string()),
            Self::Home(e) => e.message.clone(),
            Self::Store(e) => strip_code(&e.to_string()),
            Self::Coded(_, m) => m.clone(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        use ErrorCode as C;
        match self.code() {
            C::NotInitialized | C::NotFound | C::UnknownGrant | C::UnknownProposal => exit::NOT_FOUND,
            C::StoreUnavailable | C::SchemaMismatch | C::BadConfig | C::AppendOnlyViolation | C::HeadConflict => {
                exit::STORE
            }
            C::HashMismatch | C::BrokenLink | C::SequenceGap | C::TimeRegression | C::HeadMismatch => {
                exit::CHECK_FAILED
            }
            C::BadArgument => exit::USAGE,
            _ => exit::REFUSED,
        }
    }
}

fn strip_code(s: &str) -> String {
    match s.split_once(": ") {
        Some((code, rest)) if code.starts_with("ICE-E") => rest.to_owned(),
        _ => s.to_owned(),
    }
}

/// Prints an error to stderr: code, message, hint, and the rejection record if one was written.
pub fn print_error(e: &CliError) {
    let code = e.code();
    let mut out = format!("error[{code}]: {}\n  hint: {}\n", e.message(), code.hint());
    if let CliError::Runtime(RuntimeError::Rejected { record: Some(r), .. }) = e {
        let _ = writeln!(out, "  recorded: {} at seq {} (event {})", r.kind, r.seq, r.event_id);
    }
    eprint!("{out}");
}

/// The last 12 hex digits of an id, for tables. UUIDv7 ids begin with their creation time, so ids made in the
/// same millisecond share a prefix; the tail is the random part. `resolve_run` accepts it.
pub fn short(id: impl ToString) -> String {
    let s = id.to_string();
    s[s.len().saturating_sub(12)..].to_owned()
}

/// One summary line of a payload for tables.
pub fn summary(e: &Event, width: usize) -> String {
    let text = e.payload.as_str();
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Header of the event table.
pub fn event_header() -> String {
    format!("{:>6}  {:<27}  {:<19}  {:<16}  {:<12}  {}", "SEQ", "TIME", "KIND", "ORIGIN", "RUN", "PAYLOAD")
}

/// One row of the event table.
pub fn event_row(e: &Event) -> String {
    format!(
        "{:>6}  {:<27}  {:<19}  {:<16}  {:<12}  {}",
        e.seq.0,
        e.time.to_rfc3339(),
        e.kind.as_str(),
        e.origin.to_string(),
        e.run_id.map(short).unwrap_or_else(|| "-".into()),
        summary(e, 60)
    )
}

/// Header of the run table.
pub fn run_header() -> String {
    format!("{:<36}  {:<13}  {:>6}  {:<16}  {:<27}  {}", "RUN", "STATE", "EVENTS", "CREATED BY", "UPDATED", "LABEL")
}

/// One row of the run table.
pub fn run_row(r: &RunRecord) -> String {
    format!(
        "{:<36}  {:<13}  {:>6}  {:<16}  {:<27}  {}",
        r.id.to_string(),
        r.state.as_str(),
        r.events,
        r.created_by.to_string(),
        r.updated_at.to_rfc3339(),
        r.label.as_deref().unwrap_or("")
    )
}
