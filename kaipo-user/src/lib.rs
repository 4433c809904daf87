//! kaipo: which process is using the network, counted in the kernel.

pub mod alert;
pub mod anomaly;
pub mod api;
pub mod cli;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod doctor;
pub mod engine;
pub mod fasthash;
pub mod fleet;
pub mod format;
pub mod live;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod platform;
#[cfg(target_os = "linux")]
pub mod privilege;
pub mod procinfo;
pub mod report;
#[cfg(target_os = "linux")]
pub mod sandbox;
#[cfg(unix)]
pub mod service;
#[cfg(unix)]
pub mod status;
pub mod store;
#[cfg(target_os = "linux")]
pub mod store_cmd;
pub mod ui;
pub mod watch;
pub mod workload;
