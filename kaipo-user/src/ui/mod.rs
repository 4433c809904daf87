//! `kaipo live`: a real-time dashboard of which process uses the network.
//!
//! A [`source::LiveSource`] (the daemon's subscription or an embedded collector) feeds
//! [`state::LiveState`], pure logic with no terminal; [`draw::draw`] turns the state into a
//! frame; [`input`] maps keys to state changes; [`terminal::run`] ties them to the real
//! terminal. Everything but `terminal` runs in tests without one.
//!
//! Each tab lives in one file under [`tabs`] with its columns, rows and sort; [`widgets`]
//! holds what tabs share (the table, the header, the detail pane, the help overlay).

#[cfg(any(test, feature = "bench"))]
pub mod bench;
pub mod draw;
pub mod hooks;
pub mod input;
pub mod pause;
pub mod rates;
pub mod source;
pub mod state;
pub mod tabs;
pub mod terminal;
pub mod theme;
pub mod tracks;
pub mod units;
pub mod widgets;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod state_tests;

pub use source::{FakeSource, HeaderInfo, HistoryRange, LiveSource, LiveUpdate, SourceKind};
pub use state::LiveState;
pub use tabs::{connections::ConnKey, View};
pub use terminal::run;
pub use theme::Theme;
