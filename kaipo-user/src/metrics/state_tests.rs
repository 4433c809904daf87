use super::*;
use crate::{
    collect::MapUsage, metrics::fixtures::synthetic_interval, model::Attribution, store::TrafficRow,
};

/// The exposition without the `host` label every sample carries (the tests below are about
/// the other labels; `host_and_chosen_labels_name_every_series` checks it).
fn plain(state: &MetricsState) -> String {
    state
        .render(None)
        .replace("{host=\"host\"}", "")
        .replace("{host=\"host\",", "{")
}

/// Every `kaipo_app_bytes_total` tx sample, by app.
fn app_tx(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("kaipo_app_bytes_total{app=\""))
        .filter(|l| l.contains("direction=\"tx\""))
        .filter_map(|l| {
            let (app, rest) = l.split_once('"')?;
            Some((app.to_owned(), rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn series_never_go_down_and_sum_to_the_exact_total_through_churn() {
    let mut state = MetricsState::new(2);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent = 0;
    // Leaders change: a early, then b and c overtake, then a comes back.
    let rounds: [&[(&str, u64)]; 5] = [
        &[("a", 1000), ("b", 10), ("c", 5)],
        &[("b", 5000), ("c", 10)],
        &[("c", 9000), ("d", 1)],
        &[("a", 20000), ("d", 1)],
        &[("a", 1), ("b", 1), ("c", 1), ("d", 1)],
    ];
    for (i, apps) in rounds.iter().enumerate() {
        state.observe(&synthetic_interval(i as u64 * 1000, &[], apps));
        sent += apps.iter().map(|(_, b)| b).sum::<u64>();
        let now = app_tx(&plain(&state));
        for (app, v) in &now {
            assert!(
                *v >= seen.get(app).copied().unwrap_or(0),
                "{app} went down in round {i}"
            );
        }
        assert!(now.len() <= 3, "top 2 and other: {now:?}");
        seen.extend(now);
        // Series that went away keep their last value: over every series ever shown, each
        // byte is counted exactly once.
        assert_eq!(seen.values().sum::<u64>(), sent, "round {i}: {seen:?}");
    }
    assert_eq!(state.shown_apps(), ["a", "c"]);
    // a: shown in rounds 0-1 and again from round 3, which it entered with its 20000.
    let last = app_tx(&plain(&state));
    assert_eq!(last["a"], 21001);
    assert_eq!(last["c"], 9001);
    assert_eq!(seen["b"], 5010);
    assert_eq!(last[OTHER_APP], 19);
}

#[test]
fn a_close_challenger_does_not_swap_places() {
    let mut state = MetricsState::new(1);
    state.observe(&synthetic_interval(0, &[], &[("a", 1000), ("b", 1050)]));
    // Both hidden at first: room for one, the larger wins.
    assert_eq!(state.shown_apps(), ["b"]);
    state.observe(&synthetic_interval(1, &[], &[("a", 100)]));
    // a: 1100 vs b: 1050, within 10%: b stays.
    assert_eq!(state.shown_apps(), ["b"]);
    state.observe(&synthetic_interval(2, &[], &[("a", 100)]));
    // a: 1200 > 1050 * 1.1.
    assert_eq!(state.shown_apps(), ["a"]);
}

#[test]
fn fewer_top_apps_on_reload_demotes_the_smallest() {
    let mut state = MetricsState::new(3);
    state.observe(&synthetic_interval(0, &[], &[("a", 3), ("b", 2), ("c", 1)]));
    assert_eq!(state.shown_apps(), ["a", "b", "c"]);
    state.set_top_apps(1);
    state.observe(&synthetic_interval(1, &[], &[]));
    assert_eq!(state.shown_apps(), ["a"]);
}

#[test]
fn the_exposition_has_every_family_once_with_exact_figures() {
    let mut state = MetricsState::new(5);
    state.observe(&synthetic_interval(0, &[("eth0", 2000)], &[("curl", 1500)]));
    state.set_kernel(
        vec![ProgramStat {
            name: "kaipo_xdp".into(),
            run_time_ns: 1_500_000_000,
            run_count: 7,
        }],
        Some(MapUsage {
            sockets: 12,
            sockets_max: 262_144,
            flows: Some(30),
            flows_max: Some(131_072),
        }),
    );
    let text = plain(&state);
    for line in [
        "kaipo_interface_bytes_total{interface=\"eth0\",direction=\"rx\"} 2000",
        "kaipo_interface_packets_total{interface=\"eth0\",direction=\"rx\"} 2",
        "kaipo_app_bytes_total{app=\"curl\",direction=\"tx\"} 1500",
        "kaipo_app_packets_total{app=\"curl\",direction=\"tx\"} 2",
        "kaipo_app_bytes_total{app=\"other\",direction=\"tx\"} 0",
        // A process with no container, pod or unit: the workload with every label empty.
        "kaipo_workload_bytes_total{container=\"\",pod=\"\",namespace=\"\",unit=\"\",direction=\"tx\"} 1500",
        "kaipo_attributed_bytes_total{direction=\"tx\"} 1500",
        "kaipo_lost_events_total{reason=\"ringbuf_full\"} 0",
        "kaipo_flow_evictions_total 0",
        "kaipo_bpf_program_run_seconds_total{program=\"kaipo_xdp\"} 1.5",
        "kaipo_bpf_program_runs_total{program=\"kaipo_xdp\"} 7",
        "kaipo_bpf_map_entries{map=\"sockets\"} 12",
        "kaipo_bpf_map_entries{map=\"flows\"} 30",
        "kaipo_bpf_map_capacity{map=\"sockets\"} 262144",
        "kaipo_bpf_map_capacity{map=\"flows\"} 131072",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!((types, helps), (18, 18));
    // No interface bytes were split yet: the ratio has no sample, rather than a false 0.
    assert!(!text
        .lines()
        .any(|l| l.starts_with("kaipo_attributed_ratio ")));
}

/// Two intervals where the processes' IP-layer bytes (1,500 + 3,000) exceed the interfaces'
/// link-layer bytes (2,000 + 1,000): the old share read 1.5. The ratio is of link-layer bytes
/// to link-layer bytes, and every lost counter is a `reason`, named as in the JSON
/// (`malformed_events`, not `malformed_event`), capture drops included.
#[test]
fn the_ratio_is_link_layer_and_every_lost_counter_is_a_reason() {
    let mut state = MetricsState::new(5);
    let split = |iface, attributed, forwarded, kernel, icmp_arp, unknown_owner| Attribution {
        interface_bytes: iface,
        attributed_bytes: attributed,
        unattributed: crate::model::UnattributedCauses {
            forwarded,
            kernel,
            icmp_arp,
            unknown_owner,
        },
    };
    let mut first = synthetic_interval(1000, &[("eth0", 2000)], &[("curl", 1500)]);
    first.record.attribution = split(2000, 1400, 300, 200, 60, 40);
    first.record.lost = Lost {
        capture_drops: 12,
        malformed_events: 2,
        flow_evictions: 5,
        ..Lost::default()
    };
    let mut second = synthetic_interval(2000, &[("eth0", 1000)], &[("curl", 3000)]);
    second.record.attribution = split(1000, 850, 0, 100, 40, 10);
    second.record.lost.capture_drops = 3;
    state.observe(&first);
    state.observe(&second);
    let text = plain(&state);
    for line in [
        "kaipo_interface_attributed_bytes_total 2250",
        "kaipo_interface_unattributed_bytes_total{cause=\"forwarded\"} 300",
        "kaipo_interface_unattributed_bytes_total{cause=\"kernel\"} 300",
        "kaipo_interface_unattributed_bytes_total{cause=\"icmp_arp\"} 100",
        "kaipo_interface_unattributed_bytes_total{cause=\"unknown_owner\"} 50",
        "kaipo_attributed_ratio 0.75",
        "kaipo_lost_events_total{reason=\"capture_drops\"} 15",
        "kaipo_lost_events_total{reason=\"malformed_events\"} 2",
        "kaipo_lost_events_total{reason=\"flow_evictions\"} 5",
        "kaipo_flow_evictions_total 5",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    let reasons: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kaipo_lost_events_total{reason=\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(reasons, Lost::NAMES);
    assert!(!text.contains("kaipo_attributed_share"));
}

/// A collector without flows (`--no-flows`: no flow map) exposes no attribution families
/// rather than zeros; one with a flow map, or the pcap backend (no map figures), does.
#[test]
fn without_flows_no_attribution_family_is_exposed() {
    let families = [
        "kaipo_interface_attributed_bytes_total",
        "kaipo_interface_unattributed_bytes_total",
        "kaipo_attributed_ratio",
    ];
    let usage = |flows_max: Option<u64>| MapUsage {
        sockets: 3,
        sockets_max: 100,
        flows: flows_max.map(|_| 0),
        flows_max,
    };
    for (maps, shown) in [
        (Some(usage(None)), false),
        (Some(usage(Some(131_072))), true),
        (None, true),
    ] {
        let mut state = MetricsState::new(5);
        state.set_kernel(Vec::new(), maps);
        let mut live = synthetic_interval(1000, &[("eth0", 2000)], &[("curl", 1500)]);
        live.record.attribution.interface_bytes = 2000;
        live.record.attribution.attributed_bytes = 1500;
        state.observe(&live);
        let text = plain(&state);
        for family in families {
            assert_eq!(
                text.contains(family),
                shown,
                "{family} with maps {maps:?}:\n{text}"
            );
        }
    }
}

/// Workload series: one per container/pod/unit, bounded by `top_apps` like the apps, the rest
/// in the `(other)` series, and every byte in exactly one of them.
#[test]
fn workloads_have_bounded_series_with_their_names() {
    let mut state = MetricsState::new(2);
    let mut live = synthetic_interval(0, &[], &[("nginx", 5000), ("sshd", 3000), ("cron", 40)]);
    let set = |row: &mut TrafficRow, c: Option<&str>, pod: Option<(&str, &str)>, unit: &str| {
        row.container_name = c.map(str::to_owned);
        row.pod = pod.map(|(_, p)| p.to_owned());
        row.pod_namespace = pod.map(|(ns, _)| ns.to_owned());
        row.unit = Some(unit.to_owned());
    };
    set(
        &mut live.traffic[0],
        Some("web"),
        Some(("shop", "checkout-7f9c")),
        "cri-containerd-1.scope",
    );
    set(&mut live.traffic[1], None, None, "ssh.service");
    set(&mut live.traffic[2], None, None, "cron.service");
    state.observe(&live);
    let text = plain(&state);
    let tx: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("kaipo_workload_bytes_total{") && l.contains("\"tx\""))
        .collect();
    assert_eq!(
        tx,
        [
            "kaipo_workload_bytes_total{container=\"\",pod=\"\",namespace=\"\",unit=\"ssh.service\",direction=\"tx\"} 3000",
            "kaipo_workload_bytes_total{container=\"web\",pod=\"checkout-7f9c\",namespace=\"shop\",unit=\"cri-containerd-1.scope\",direction=\"tx\"} 5000",
            "kaipo_workload_bytes_total{container=\"(other)\",pod=\"(other)\",namespace=\"(other)\",unit=\"(other)\",direction=\"tx\"} 40",
        ]
    );
    assert_eq!(state.shown_workloads().len(), 2);
}

/// With `labels = ["app", "user"]`, one key is an app and user together: curl of two users is
/// two keys, and with top 2 the smallest key goes to the series whose labels all read
/// `other`. Every sample, process figures included, carries the host label.
#[test]
fn host_and_chosen_labels_name_every_series() {
    use crate::metrics::labels::LabelKind;
    let mut state =
        MetricsState::with_labels(2, vec![LabelKind::App, LabelKind::User], "node-7".into());
    let mut interval = synthetic_interval(0, &[("eth0", 10)], &[("curl", 500), ("curl", 300)]);
    interval.traffic[1].user = Some("www".into());
    interval.traffic[0].uid = 1001;
    interval.traffic.push(TrafficRow {
        app: "sshd".into(),
        user: Some("root".into()),
        tx_bytes: 200,
        tx_packets: 1,
        ..TrafficRow::default()
    });
    state.observe(&interval);
    let stats = ProcessStats {
        cpu_seconds: 1.25,
        resident_bytes: 4096,
        start_time_seconds: 10.0,
    };
    let text = state.render(Some(&stats));
    for line in [
        "kaipo_app_bytes_total{host=\"node-7\",app=\"curl\",user=\"1001\",direction=\"tx\"} 500",
        "kaipo_app_bytes_total{host=\"node-7\",app=\"curl\",user=\"www\",direction=\"tx\"} 300",
        "kaipo_app_bytes_total{host=\"node-7\",app=\"other\",user=\"other\",direction=\"tx\"} 200",
        "kaipo_app_packets_total{host=\"node-7\",app=\"other\",user=\"other\",direction=\"tx\"} 1",
        "kaipo_interface_bytes_total{host=\"node-7\",interface=\"eth0\",direction=\"rx\"} 10",
        "kaipo_intervals_total{host=\"node-7\"} 1",
        "process_cpu_seconds_total{host=\"node-7\"} 1.25",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    assert_eq!(state.shown_apps(), ["curl/1001", "curl/www"]);
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(samples.iter().all(|l| l.contains("host=\"node-7\"")));
    // 2 interface + 2 interface packets + 3 keys x 2 directions x 2 families + 2 workloads (no
    // container, pod or unit, and the "(other)" series) x 2 directions x 2 families + 2 + 2 + 1
    // + 4 causes + 10 lost + 1 evictions + 1 intervals + 3 process (no ratio: nothing split
    // yet).
    assert_eq!(samples.len(), 4 + 12 + 8 + 4 + 1 + 4 + 10 + 1 + 1 + 3);
    assert_eq!(state.series_count(), samples.len() - 3);
}

/// A veth that went away loses its series after the grace period; the interface label stays
/// bounded by MAX_INTERFACES however many come and go.
#[test]
fn gone_interfaces_lose_their_series() {
    let mut state = MetricsState::new(1);
    state.observe(&synthetic_interval(0, &[("eth0", 10), ("veth1", 20)], &[]));
    for i in 1..INTERFACE_GRACE {
        state.observe(&synthetic_interval(i, &[("eth0", 1)], &[]));
    }
    let text = plain(&state);
    assert!(text.contains("kaipo_interface_bytes_total{interface=\"veth1\",direction=\"rx\"} 20"));
    state.observe(&synthetic_interval(INTERFACE_GRACE, &[("eth0", 1)], &[]));
    let text = plain(&state);
    assert!(!text.contains("veth1"), "{text}");
    assert!(text.contains(&format!(
        "kaipo_interface_bytes_total{{interface=\"eth0\",direction=\"rx\"}} {}",
        10 + INTERFACE_GRACE
    )));
    let many: Vec<(String, u64)> = (0..MAX_INTERFACES + 5)
        .map(|i| (format!("v{i}"), 1))
        .collect();
    let refs: Vec<(&str, u64)> = many.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    state.observe(&synthetic_interval(0, &refs, &[]));
    let ifaces = plain(&state)
        .lines()
        .filter(|l| l.starts_with("kaipo_interface_bytes_total{") && l.contains("\"rx\""))
        .count();
    assert_eq!(ifaces, MAX_INTERFACES);
}
