//! ice CLI
fn main() {}
