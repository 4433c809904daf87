//! Section 5: 100k and 150k flows.

use std::fmt::Write as _;

use super::{int, mib, verdict, TARGET_RSS_KIB};
use crate::bench::{
    collector::Flows,
    kaipo::{self, HeldMap},
    topology::Topology,
    traffic::PAYLOAD_64B_FRAME,
};
fn map_rows(a: &Flows, b: &Flows) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| map | type | max_entries | memlock at {} flows | memlock at {} flows |",
        int(a.flows_sent),
        int(b.flows_sent)
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: |");
    let mut names: Vec<&str> = a
        .maps
        .iter()
        .chain(&b.maps)
        .map(|m| m.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let find = |f: &'_ Flows, name: &str| f.maps.iter().find(|m| m.name == name).cloned();
    for name in names {
        let (x, y) = (find(a, name), find(b, name));
        let Some(any) = x.clone().or_else(|| y.clone()) else {
            continue;
        };
        let mem = |m: Option<HeldMap>| m.map_or_else(|| "-".into(), |m| kib(m.memlock / 1024));
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            if name.is_empty() { "?" } else { name },
            kaipo::map_type_name(any.map_type),
            int(any.max_entries),
            mem(x),
            mem(y)
        );
    }
    let total = |f: &Flows| mib(f.maps.iter().map(|m| m.memlock).sum::<u64>() / 1024);
    let _ = writeln!(s, "| total | | | {} | {} |", total(a), total(b));
    s
}

fn kib(kib: u64) -> String {
    format!("{} KiB", int(kib))
}

pub fn flows(a: &Flows, b: &Flows, topo: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### 5. 100,000 and 150,000 concurrent flows\n");
    let _ = writeln!(
        s,
        "A fresh `kaipo watch --json --interval 200ms --iface {}` for each case (only the sender's \
         host end, so each flow is counted once, by its ingress program, in a flow-cache slot or a \
         FLOWS entry); the sender namespace, pinned to one CPU, sends one \
         {PAYLOAD_64B_FRAME}-byte datagram to each of 2 receiver addresses × 50,000 ports (a second \
         socket, i.e. another source port, for flows past 100,000). Nothing listens on those ports, \
         so the receiver answers with the few ICMP errors its rate limit allows. Read 2.6 s after \
         the burst (kaipo reads FLOWS and the flow cache every interval, to join flows to sockets): \
         kaipo's \
         maps from `/proc/<pid>/fdinfo` (memlock) and the kernel's map info (names), FLOWS and \
         COUNTERS read directly, kaipo's VmRSS/VmHWM; evictions also as kaipo's JSON reports them \
         (`lost.flow_evictions`, summed over all intervals). Only FLOWS evicts: a flow leaves a \
         cache slot only by moving its counts to its FLOWS entry, so evictions are FLOWS entries \
         created (`FLOW_CREATED`) less those live.\n",
        topo.sender_if
    );
    let _ = writeln!(
        s,
        "| | {} flows | {} flows |",
        int(a.flows_sent),
        int(b.flows_sent)
    );
    let _ = writeln!(s, "| --- | ---: | ---: |");
    let live_on = |f: &Flows| f.state.live.get(&f.sender_ifindex).copied().unwrap_or(0);
    let live_all = |f: &Flows| f.state.live.values().sum::<u64>();
    let mut row = |label: &str, value: &dyn Fn(&Flows) -> String| {
        let _ = writeln!(s, "| {label} | {} | {} |", value(a), value(b));
    };
    row("datagrams sent", &|f| int(f.flows_sent));
    let cached_on = |f: &Flows| f.state.cached.get(&f.sender_ifindex).copied().unwrap_or(0);
    let cached_all = |f: &Flows| f.state.cached.values().sum::<u64>();
    row(
        "flows that took a free cache slot / took one over from a quiet flow (`FLOW_SLOT_TAKEN` / `FLOW_SLOT_HANDOVER`)",
        &|f| {
            format!(
                "{} / {}",
                int(f.state.slot_taken),
                int(f.state.slot_handovers)
            )
        },
    );
    row("FLOWS entries created (`FLOW_CREATED`)", &|f| {
        int(f.state.created)
    });
    row("taken cache slots (on the monitored veth / all)", &|f| {
        format!("{} / {}", int(cached_on(f)), int(cached_all(f)))
    });
    row("live FLOWS entries (on the monitored veth / all)", &|f| {
        format!("{} / {}", int(live_on(f)), int(live_all(f)))
    });
    row("evictions, kaipo JSON `lost.flow_evictions`", &|f| {
        int(f.reported_evictions)
    });
    row("evictions, created - live from the maps", &|f| {
        int(f.state.created.saturating_sub(live_all(f)))
    });
    row(
        "flows that found no room (`FLOW_MAP_FULL` / JSON `flow_map_full`)",
        &|f| format!("{} / {}", int(f.state.map_full), int(f.reported_map_full)),
    );
    row("kaipo VmRSS / VmHWM", &|f| {
        format!("{} / {}", mib(f.vm_rss_kib), mib(f.vm_hwm_kib))
    });
    row("BPF map memory (memlock, all kaipo's maps)", &|f| {
        mib(f.maps.iter().map(|m| m.memlock).sum::<u64>() / 1024)
    });
    let _ = writeln!(s, "\nkaipo's BPF maps, per `/proc/<pid>/fdinfo`:\n");
    s.push_str(&map_rows(a, b));
    let total = |f: &Flows| f.maps.iter().map(|m| m.memlock).sum::<u64>();
    let bounded = total(b) <= total(a);
    let _ = writeln!(
        s,
        "\nTargets: RSS < 64 MiB at 100k flows: {} ({}); maps bounded (same memlock at 100k and \
         150k flows, no more at 150k than at 100k): {}; evictions counted (150k case reports > 0 in kaipo's JSON): {}; no \
         evictions at 100k: {}.",
        verdict(a.vm_hwm_kib < TARGET_RSS_KIB),
        mib(a.vm_hwm_kib),
        verdict(bounded),
        verdict(b.reported_evictions > 0),
        verdict(a.reported_evictions == 0)
    );
    s
}
