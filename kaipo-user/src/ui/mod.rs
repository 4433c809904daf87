//! `kaipo live`: a real-time dashboard of which process uses the network.
//!
//! A [`source::LiveSource`] (the daemon's subscription or an embedded collector) feeds
//! [`state::LiveState`], pure logic with no terminal; [`draw::draw`] turns the state into a
//! frame; [`input`] maps keys to state changes; [`terminal::run`] ties them to the real
//! terminal. Everything but `terminal` runs in tests without one.

pub mod bench;
pub mod draw;
pub mod history;
pub mod hooks;
pub mod input;
pub mod order;
pub mod rates;
pub mod source;
pub mod state;
pub mod terminal;
pub mod theme;
pub mod tracks;
pub mod units;
pub mod views;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod state_tests;

pub use source::{
    ConnKey, ConnectionExtra, FakeSource, HeaderInfo, HistoryRange, LiveSource, LiveUpdate,
    ProcessExtra, SourceKind,
};
pub use state::LiveState;
pub use terminal::run;
pub use theme::Theme;
