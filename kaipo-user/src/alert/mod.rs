//! Alerts: rules from `[alerts]` evaluated on every live interval ([`engine`]), delivered to
//! a webhook, syslog and the daemon's status answer.

#[cfg(feature = "bench")]
pub mod bench;
pub mod engine;
pub mod notification;
pub mod quota;
pub mod rules;
// Delivery runs in the daemon, which runs on Linux and macOS.
#[cfg(unix)]
mod delivery;
#[cfg(unix)]
pub mod syslog;
pub mod webhook;

use std::sync::{Arc, Mutex};

#[cfg(unix)]
pub use self::delivery::{AlertObserver, Alerting};
pub use self::{
    engine::AlertEngine,
    notification::{Notification, State},
    rules::{AlertsConfig, Rule},
};

/// Alerts firing now, for `status`.
pub type ActiveAlerts = Arc<Mutex<Vec<Notification>>>;
