//! The record types every surface derives from, defined once: the interval record
//! (`watch --json`, the daemon's snapshots, the dashboard), the counters that travel together
//! (traffic, lost events, unattributed causes), and the history query and report types.

mod counters;
mod records;

pub use counters::{Lost, Traffic, UnattributedCauses};
pub use records::{
    Attribution, Bytes, ConnectionRecord, InterfaceRecord, IntervalRecord, ProcessRecord,
};
