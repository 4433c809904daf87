//! The SQLite time-series store: history in tiers rolled up automatically.

pub mod types;

pub use types::*;
