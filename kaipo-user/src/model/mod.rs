//! The record types every surface derives from, defined once: the interval record
//! (`watch --json`, the daemon's snapshots, the dashboard), the counters that travel together
//! (traffic, lost events, unattributed causes), and the history query and report types.

pub mod calendar;
mod counters;
mod query;
mod records;

pub use counters::{Lost, Traffic, UnattributedCauses};
pub use query::{
    Dimension, Period, PeriodRow, Periods, ProcessFields, Query, Report, ReportRow, SeriesPoint,
    Tier,
};
pub use records::{
    Attribution, Bytes, ConnectionRecord, InterfaceRecord, IntervalRecord, ProcessRecord,
};
