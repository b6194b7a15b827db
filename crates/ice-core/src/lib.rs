//! ICE's pure core: the event envelope, the closed taxonomy, the validation pipeline, canonical encoding,
//! the hash chain, the run lifecycle FSM and the fold that derives state from events.
//!
//! Nothing here does I/O, reads the system clock or draws randomness: time and ids are injected
//! ([`Clock`], [`IdSource`]). That is what makes replay exact.

pub mod auth;
pub mod authority;
pub mod budget;
pub mod bundle;
pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod clock;
pub mod decision;
pub mod effect;
pub mod error;
pub mod event;
pub mod grant;
pub mod hashed;
pub mod ids;
pub mod intake;
pub mod jcs;
mod jcs_ser;
pub mod kind;
pub mod lthash;
pub mod memory;
pub mod merkle;
pub mod payloads;
pub mod principal;
pub mod proposal;
pub mod run;
pub mod state;
pub mod tlog;
pub mod witness;

pub use auth::{Attribution, Credential, Role, Roles};
pub use canonical::CanonicalJson;
pub use chain::{ChainHead, ChainVerifier, VerifyFailure, VerifySummary, seal_job};
pub use clock::{Clock, IdSource, ManualClock, SequentialIds};
pub use error::{ErrorCode, Rejection};
pub use event::{Draft, Event, TimeSource};
pub use ids::{EventHash, EventId, RunId, Seq, Timestamp};
/// The persistent map derived state is kept in (see [`hashed`]).
pub use imbl::OrdMap;
pub use intake::RawEvent;
pub use kind::{EventKind, Family, RunScope};
pub use principal::{Principal, PrincipalKind};
pub use proposal::{Access, Classification, Cost, Dimension, EffectScope, Nondeterminism, Proposal, Risk};
pub use run::RunState;
pub use state::{CheckpointMark, LedgerState, RunRecord};
