//! ICE runtime: the single pipeline every entry point goes through, the `.ice/` home, and system-backed
//! clock and ids.

mod approvals;
mod authority;
mod boundary;
mod home;
pub mod policy;
mod rollback;
mod runtime;
mod system;

pub use authority::{DecisionOutcome, GrantInput, PreparedProposal, ProposalInput};
pub use boundary::{ExecInput, ExecOutcome, TEST_PAUSE_ENV};
pub use home::{Config, HomeError, ICE_DIR, IceHome, STORE_ENV};
pub use rollback::{RollbackItem, RollbackReport, RollbackStep, RollbackTarget};
pub use runtime::{Runtime, RuntimeError};
pub use system::{SystemClock, SystemIds};
