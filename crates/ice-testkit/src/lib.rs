//! Fixtures shared by ICE's test suites (a dev-dependency only). Fixtures report failure by panicking, like the
//! tests that use them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pg;
