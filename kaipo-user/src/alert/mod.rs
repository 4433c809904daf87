//! Alerts: rules from `[alerts]` evaluated on every live interval ([`engine`]), delivered to
//! a webhook, syslog and the daemon's status answer.

pub mod bench;
pub mod engine;
pub mod notification;
pub mod quota;
pub mod rules;
// Delivery runs in the daemon, which runs on Linux.
#[cfg(target_os = "linux")]
mod delivery;
#[cfg(target_os = "linux")]
pub mod syslog;
pub mod webhook;

use std::sync::{Arc, Mutex};

#[cfg(target_os = "linux")]
pub use self::delivery::{AlertObserver, Alerting};
pub use self::{
    engine::AlertEngine,
    notification::{Notification, State},
    rules::{AlertsConfig, Rule},
};

/// Alerts firing now, for `status`.
pub type ActiveAlerts = Arc<Mutex<Vec<Notification>>>;
