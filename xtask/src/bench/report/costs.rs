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
        "kaipo's object loaded as `kaipo watch` loads it (flow tracking on, FLOWS sized {}, a flow \
         cache of {} slots per CPU), the two interface programs loaded but not attached, and run by \
         the kernel on a {}-byte IPv4/UDP Ethernet frame ({PAYLOAD_64B_FRAME}-byte payload), on a \
         thread pinned to CPU 0: {} repeats per test run; the figure is the kernel's average per \
         run, median of {} test runs (min-max). Right before each timed test run the frame (or, in \
         the last column, the frames of the two flows holding its slots) runs once, so those flows count \
         as recently active. First with only the frame's own flow; then after {} other flows \
         (other ports) ran through each program, {} flows in all, which the kernel put where it \
         puts any flow: {} took a free cache slot and {} went to FLOWS because both slots of their set \
         were held.\n",
        int(u64::from(kaipo_common::MAX_FLOWS)),
        int(u64::from(c.cache_slots)),
        c.frame_len,
        int(u64::from(c.repeat)),
        c.rounds,
        int(u64::from(c.prefill.per_program)),
        int(2 * u64::from(c.prefill.per_program)),
        int(c.prefill.cached),
        int(c.prefill.in_map),
    );
    let _ = writeln!(
        s,
        "| program | 1 flow | {} more flows per program: the frame's flow in its cache slot | the same, a flow whose two cache slots other flows hold (counted in FLOWS) | empty program of the same type (test-run floor) | target: <= {TARGET_NS} ns at 10k flows |",
        int(u64::from(c.prefill.per_program))
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | --- |");
    let cell = |t: &crate::bench::testrun::Timing| {
        format!(
            "{} ns ({}-{})",
            t.median().as_nanos(),
            t.min().as_nanos(),
            t.max().as_nanos()
        )
    };
    for p in &c.programs {
        let empty = c
            .empty
            .iter()
            .find(|(n, _)| *n == p.name)
            .map_or_else(|| "-".into(), |(_, t)| cell(t));
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {empty} | {} (cached flow) |",
            p.name,
            cell(&p.one),
            cell(&p.hit),
            cell(&p.busy),
            verdict(p.hit.median().as_nanos() <= TARGET_NS)
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
