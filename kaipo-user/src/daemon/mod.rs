//! `kaipo daemon`: runs the collector and the pipeline, records history in the store, and
//! serves live figures and history to unprivileged clients over a Unix socket.
//!
//! Start-up does everything that needs privileges first (the database, the socket, loading and
//! attaching the kernel programs), then drops every capability it no longer needs
//! ([`privilege`]) before it reads a single request. SIGTERM and SIGINT close a final interval,
//! write everything to the store and detach the programs before the process exits.

// The daemon runs on Linux: its privilege drop is Linux capabilities, and only Linux has the
// eBPF collector it is built around. The protocol's types and defaults are shared.
#[cfg(target_os = "linux")]
pub mod access;
#[cfg(target_os = "linux")]
pub mod client;
#[cfg(target_os = "linux")]
mod history;
#[cfg(target_os = "linux")]
pub mod privilege;
pub mod protocol;
#[cfg(target_os = "linux")]
pub mod reload;
#[cfg(target_os = "linux")]
mod runner;
#[cfg(target_os = "linux")]
pub mod server;
#[cfg(target_os = "linux")]
pub mod status;
#[cfg(target_os = "linux")]
pub mod store_worker;
#[cfg(target_os = "linux")]
pub mod view;
#[cfg(target_os = "linux")]
pub mod wire;

#[cfg(target_os = "linux")]
pub(crate) use self::runner::create_parents;
#[cfg(target_os = "linux")]
pub use self::runner::{run, DaemonOptions};
