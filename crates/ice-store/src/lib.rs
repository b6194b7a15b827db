//! The store interface every ledger backend implements, chain verification over any backend, and the
//! behavioural conformance suite ([`conformance`]) that every backend's tests run unchanged.
//!
//! The interface speaks only core types (`Draft`, `Event`, `ChainHead`): no backend type leaks through it, so a
//! networked backend (PostgreSQL, several writers) implements it exactly like the embedded one.
//! Calls are blocking; a backend may batch concurrent callers (group commit) but acknowledges a call only after
//! its events are durable.

pub mod conformance;
pub mod rows;
pub mod turn;
mod verify;

use ice_core::{ChainHead, Draft, ErrorCode, Event, EventHash, EventId, EventKind, Rejection, RunId, Seq, Timestamp};

pub use verify::{
    SignedSummary, VerifyOptions, VerifyProgress, Witnessed, check_signed_coverage, verify_ledger, verify_ledger_signed,
};

/// One atomic append: drafts that commit together, in order, or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// The drafts, sealed in this order.
    pub drafts: Vec<Draft>,
    /// If set, the append succeeds only if no state-changing event (see [`EventKind::changes_state`]) was
    /// appended after this seq: optimistic concurrency for callers that validated against state derived up to
    /// it. Agents' notes and rejection records appended meanwhile do not conflict, so a busy ledger does not
    /// starve serialised transitions.
    pub unchanged_since: Option<Seq>,
    /// With `unchanged_since`: the hash the event at that seq must have (the genesis hash for seq 0). A caller
    /// that decided on top of events it has not seen commit yet (its own earlier request, still at the store) pins
    /// them this way: if they did not commit exactly so, this request conflicts rather than commits without them.
    pub since_hash: Option<EventHash>,
}

impl AppendRequest {
    /// An unconditional append.
    pub fn new(drafts: Vec<Draft>) -> Self {
        Self { drafts, unchanged_since: None, since_hash: None }
    }

    /// An append that fails with [`StoreError::HeadConflict`] if a state-changing event was appended after `seq`.
    pub fn unchanged_since(drafts: Vec<Draft>, seq: Seq) -> Self {
        Self { drafts, unchanged_since: Some(seq), since_hash: None }
    }

    /// [`AppendRequest::unchanged_since`] `head.seq`, and fails the same way unless the event at that seq is the one
    /// `head` names (its hash): the request commits only on top of exactly that head.
    pub fn following(drafts: Vec<Draft>, head: ChainHead) -> Self {
        Self { drafts, unchanged_since: Some(head.seq), since_hash: Some(head.hash) }
    }

    /// The kinds that never conflict with [`AppendRequest::unchanged_since`] (for backends' queries).
    pub fn free_kinds() -> Vec<&'static str> {
        EventKind::ALL.iter().filter(|k| !k.changes_state()).map(|k| k.as_str()).collect()
    }
}

/// A request queued with [`Store::submit`].
pub struct Pending(PendingAnswer);

enum PendingAnswer {
    Ready(Result<Vec<Event>, StoreError>),
    Waiting(Box<dyn FnOnce() -> Result<Vec<Event>, StoreError> + Send>),
}

impl Pending {
    /// An answer already in.
    pub fn ready(answer: Result<Vec<Event>, StoreError>) -> Self {
        Self(PendingAnswer::Ready(answer))
    }

    /// An answer `wait` blocks for.
    pub fn waiting(wait: impl FnOnce() -> Result<Vec<Event>, StoreError> + Send + 'static) -> Self {
        Self(PendingAnswer::Waiting(Box::new(wait)))
    }

    /// Blocks until the request committed (the sealed events) or failed.
    pub fn wait(self) -> Result<Vec<Event>, StoreError> {
        match self.0 {
            PendingAnswer::Ready(answer) => answer,
            PendingAnswer::Waiting(wait) => wait(),
        }
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            PendingAnswer::Ready(_) => "Pending(ready)",
            PendingAnswer::Waiting(_) => "Pending(waiting)",
        })
    }
}

/// Which events to read. Filters combine with AND; results come in seq order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events with seq strictly greater than this.
    pub after: Seq,
    /// Only events with seq at most this.
    pub until: Option<Seq>,
    /// Only events naming this run.
    pub run: Option<RunId>,
    /// Only events of this kind.
    pub kind: Option<EventKind>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many events.
    pub limit: usize,
}

impl Default for EventQuery {
    fn default() -> Self {
        Self { after: Seq(0), until: None, run: None, kind: None, since: None, limit: 1000 }
    }
}

/// A store failure. Each variant maps to a stable [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A draft was refused while sealing (time went backwards, unknown cause, duplicate id). Nothing of the
    /// request was written.
    #[error("draft {index} refused: {rejection}")]
    Rejected {
        /// Index of the refused draft in the request.
        index: usize,
        /// Why.
        rejection: Rejection,
    },
    /// A state-changing event was appended after the seq the request was based on.
    #[error(
        "{}: seq {actual} changed state after seq {expected}, which the append was based on",
        ErrorCode::HeadConflict
    )]
    HeadConflict {
        /// The seq the caller's state was derived up to.
        expected: Seq,
        /// The first state-changing event after it.
        actual: Seq,
    },
    /// The backend could not be reached, read or written.
    #[error("{code}: {0}", code = ErrorCode::StoreUnavailable)]
    Unavailable(String),
    /// The schema is unknown to this binary or a migration failed.
    #[error("{code}: {0}", code = ErrorCode::SchemaMismatch)]
    Schema(String),
    /// A stored row cannot be decoded (the ledger was modified outside ICE).
    #[error("{}: stored event at seq {seq} cannot be decoded: {detail}", ErrorCode::LedgerCorrupt)]
    Corrupt {
        /// The seq of the undecodable row.
        seq: Seq,
        /// What is wrong with it.
        detail: String,
    },
}

impl StoreError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Rejected { rejection, .. } => rejection.code,
            Self::HeadConflict { .. } => ErrorCode::HeadConflict,
            Self::Unavailable(_) => ErrorCode::StoreUnavailable,
            Self::Schema(_) => ErrorCode::SchemaMismatch,
            Self::Corrupt { .. } => ErrorCode::LedgerCorrupt,
        }
    }
}

/// A ledger backend.
///
/// Contract (checked by [`conformance`]):
/// - `append` seals with [`ice_core::seal_job`] under the backend's write lock: seqs are gapless, each event's
///   `prev_hash` is its predecessor's hash, and the recorded head moves in the same transaction.
/// - `unchanged_since` (and `since_hash` with it) is checked under the same lock, against committed events and those
///   sealed earlier in the same batch.
/// - Requests submitted through one handle reach the write lock in the order they were submitted.
/// - `append` returns only after the events are durable; concurrent callers may share one transaction.
/// - A refused request writes nothing.
/// - A conditional append defers to another writer's running turn and claims the turn when it conflicts
///   (see [`turn`]): contending writers alternate rather than one of them starving.
/// - History is append-only: the backend refuses UPDATE and DELETE of events at the storage level.
pub trait Store: Send + Sync {
    /// Appends one request atomically; returns the sealed events once durable.
    fn append(&self, request: AppendRequest) -> Result<Vec<Event>, StoreError>;

    /// Queues one request without waiting for it: the store takes requests submitted through one handle in the
    /// order they were submitted (a request that follows an earlier one's head, [`AppendRequest::following`],
    /// must not reach the store first, or it conflicts for nothing). [`Pending::wait`] returns what
    /// [`Store::append`] would have. The default appends right away, so that its answer is ready.
    fn submit(&self, request: AppendRequest) -> Pending {
        Pending::ready(self.append(request))
    }

    /// The recorded head (`None` for an empty ledger). Kept apart from the events so truncation is detectable.
    fn head(&self) -> Result<Option<ChainHead>, StoreError>;

    /// Reads events matching a query, in seq order.
    fn read(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError>;

    /// One event by id.
    fn get(&self, id: EventId) -> Result<Option<Event>, StoreError>;

    /// A short description for humans, e.g. `sqlite:/path/ledger.db`.
    fn describe(&self) -> String;

    /// Blocks until the head passes `after` or `timeout` elapses; returns the head seen. Backends with a
    /// notification channel override this; the default polls.
    fn wait_for_append(&self, after: Seq, timeout: std::time::Duration) -> Result<Seq, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let head = self.head()?.map_or(Seq(0), |h| h.seq);
            if head > after || std::time::Instant::now() >= deadline {
                return Ok(head);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
