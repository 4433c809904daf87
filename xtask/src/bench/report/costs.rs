//! Section 1: the test-run cost of the interface programs.

use std::fmt::Write as _;

use super::{int, verdict, TARGET_NS};
use crate::bench::{testrun::Costs, traffic::PAYLOAD_64B_FRAME};
pub fn costs(c: &Costs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### 1. Per-packet cost of the interface programs (`BPF_PROG_TEST_RUN`)\n"
    );
    let _ = writeln!(
        s,
        "kaipo's object loaded as `kaipo watch` loads it (flow tracking on, FLOWS sized {}), the two \
         interface programs loaded but not attached, and run by the kernel on a {}-byte IPv4/UDP \
         Ethernet frame ({PAYLOAD_64B_FRAME}-byte payload): {} repeats per test run; the figure is the \
         kernel's average per run, median of {} test runs (min-max). First with only the frame's own \
         flow in FLOWS, then after inserting {} more flows from userspace (ifindex 1, other ports).\n",
        int(u64::from(kaipo_common::MAX_FLOWS)),
        c.frame_len,
        int(u64::from(c.repeat)),
        c.rounds,
        int(c.flows_prefilled.saturating_sub(2)),
    );
    let _ = writeln!(
        s,
        "| program | 1 flow in FLOWS | {} live flows in FLOWS | empty program of the same type (test-run floor) | target: <= {TARGET_NS} ns at 10k flows |",
        int(c.flows_prefilled)
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | --- |");
    let cell = |t: &crate::bench::testrun::Timing| {
        format!(
            "{} ns ({}-{})",
            t.median().as_nanos(),
            t.min().as_nanos(),
            t.max().as_nanos()
        )
    };
    for (name, one, many) in &c.programs {
        let empty = c
            .empty
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "-".into(), |(_, t)| cell(t));
        let _ = writeln!(
            s,
            "| `{name}` | {} | {} | {empty} | {} |",
            cell(one),
            cell(many),
            verdict(many.median().as_nanos() <= TARGET_NS)
        );
    }
    let _ = writeln!(
        s,
        "\nBPF run-time statistics during these test runs: {}.",
        if c.stats_runs == 0 {
            "off (kaipo's programs' `run_cnt` stayed 0)".to_owned()
        } else {
            format!(
                "**on** (another process held them on; `run_cnt` reached {}), so each run also \
                 includes two clock reads",
                int(c.stats_runs)
            )
        }
    );
    s
}
