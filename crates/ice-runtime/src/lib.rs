//! ICE runtime: the single pipeline every entry point goes through, the `.ice/` home, and system-backed
//! clock and ids.

mod approvals;
mod authority;
mod boundary;
mod caller;
pub mod checkpoints;
mod commit;
mod export;
mod home;
mod mailbox;
mod memory;
mod memory_read;
pub mod pipeline;
pub mod policy;
mod proposal_input;
mod replay;
mod rollback;
mod runtime;
pub mod server_config;
pub mod signer;
mod snapshot;
mod system;
pub mod tools;
mod verdicts;
mod withdraw;

pub use authority::{DecisionOutcome, GrantInput, PreparedProposal, ProposalInput};
pub use boundary::{ExecInput, ExecOutcome, StartedEffect, TEST_PAUSE_ENV};
pub use caller::{Caller, LocalUser, Presented, process_uid};
pub use export::{ExportSelection, read_witness};
pub use home::{Config, HomeError, ICE_DIR, IceHome, STORE_ENV};
pub use memory::{PROMOTE_ACTION, READ_ACTION};
pub use memory_read::{MAX_K, MemoryQuery, MemoryReadOutcome, MemoryReadRecord};
pub use replay::{DecisionDiff, Divergence, ReplayReport, WhatIfFilter, WhatIfReport};
pub use rollback::{Planned, RollbackItem, RollbackPreview, RollbackReport, RollbackStep, RollbackTarget};
pub use runtime::{Runtime, RuntimeError};
pub use system::{SystemClock, SystemIds};
