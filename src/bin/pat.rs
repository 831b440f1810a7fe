//! The `pat` command line tool.
fn main() {}
