//! ICE runtime: the single pipeline every entry point goes through, the `.ice/` home, and system-backed
//! clock and ids.

mod authority;
mod home;
pub mod policy;
mod runtime;
mod system;

pub use authority::{DecisionOutcome, GrantInput, PreparedProposal, ProposalInput};
pub use home::{Config, HomeError, ICE_DIR, IceHome, STORE_ENV};
pub use runtime::{Runtime, RuntimeError};
pub use system::{SystemClock, SystemIds};
