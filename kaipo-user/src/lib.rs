//! kaipo: which process is using the network, counted in the kernel.

pub mod accounting;
pub mod cli;
pub mod collect;
#[cfg(target_os = "linux")]
pub mod daemon;
#[cfg(target_os = "linux")]
pub mod doctor;
pub mod format;
#[cfg(target_os = "linux")]
pub mod live;
pub mod model;
pub mod pipeline;
#[cfg(target_os = "linux")]
pub mod privilege;
#[cfg(target_os = "linux")]
pub mod procinfo;
pub mod report;
pub mod store;
pub mod ui;
#[cfg(target_os = "linux")]
pub mod watch;
