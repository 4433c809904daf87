//! `kaipo daemon`: runs the collector and the pipeline, records history in the store, and
//! serves live figures and history to unprivileged clients over a Unix socket.
//!
//! Start-up does everything that needs privileges first (the database, the socket, loading and
//! attaching the kernel programs), then, on Linux, drops every capability it no longer needs
//! (`privilege`) before it reads a single request. SIGTERM and SIGINT close a final interval,
//! write everything to the store and detach the programs before the process exits.

// The daemon runs where Unix sockets and credentials do: Linux and macOS. Only Linux has
// capabilities to drop (`privilege`); `start_privileges` holds what each system does at
// start. The protocol, its framing and the client are in `crate::api`.
#[cfg(unix)]
pub mod access;
#[cfg(unix)]
pub mod fatal;
#[cfg(unix)]
mod history;
#[cfg(target_os = "linux")]
pub mod privilege;
#[cfg(unix)]
pub mod reload;
#[cfg(target_os = "linux")]
pub mod remote;
#[cfg(unix)]
mod runner;
#[cfg(unix)]
pub mod server;
#[cfg(unix)]
mod start_privileges;
#[cfg(unix)]
pub mod store_worker;
#[cfg(unix)]
pub mod view;

#[cfg(unix)]
pub(crate) use self::runner::create_parents;
#[cfg(unix)]
pub use self::runner::{run, DaemonOptions};
