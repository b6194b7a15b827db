//! ICE runtime: the single pipeline every entry point goes through, the `.ice/` home, and system-backed
//! clock and ids.

mod home;
mod runtime;
mod system;

pub use home::{Config, HomeError, ICE_DIR, IceHome, STORE_ENV};
pub use runtime::{Runtime, RuntimeError};
pub use system::{SystemClock, SystemIds};
