//! Figure 1: the per-packet cost of the interface programs, run by the kernel on a synthetic
//! frame with `BPF_PROG_TEST_RUN`, with one flow and with thousands of flows in the flow map.

use std::time::Duration;

use anyhow::{bail, Context as _};
use aya::{
    maps::{PerCpuHashMap, PerCpuValues},
    programs::{Program, SchedClassifier, TestRun as _, TestRunOptions, Xdp},
    Btf, Ebpf,
};
use kaipo::collect::ebpf;
use kaipo_common::{FlowCounters, FlowKey, FAMILY_IPV4, PROTO_UDP};

use super::{baseline, traffic::PAYLOAD_64B_FRAME};

pub const PROGRAMS: [&str; 2] = ["kaipo_xdp", "kaipo_tc_egress"];
const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1), as the test run reports it.
const TC_NEXT: u32 = u32::MAX;

/// Kernel-reported average time per run over `repeat` runs, for each of `rounds` test runs.
#[derive(Clone, Debug)]
pub struct Timing {
    pub per_round: Vec<Duration>,
}

impl Timing {
    pub fn median(&self) -> Duration {
        let mut v = self.per_round.clone();
        v.sort();
        v[v.len() / 2]
    }

    pub fn min(&self) -> Duration {
        self.per_round.iter().copied().min().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.per_round.iter().copied().max().unwrap_or_default()
    }
}

pub struct Costs {
    pub repeat: u32,
    pub rounds: usize,
    pub frame_len: usize,
    /// Per program: with the test frame's own flow only, then with the map pre-filled.
    pub programs: Vec<(&'static str, Timing, Timing)>,
    /// Live entries in FLOWS during the second measurement.
    pub flows_prefilled: u64,
    /// The same for a program that only returns the same verdict: the test-run floor.
    pub empty: Vec<(&'static str, Timing)>,
    /// `run_cnt` of kaipo's programs after the test runs: non-zero means BPF run-time statistics
    /// were on (another process held them on), so every run also read the clock twice.
    pub stats_runs: u64,
}

/// A 64-byte Ethernet frame (as the kernel counts it, without FCS): IPv4, UDP, 22-byte payload.
pub fn udp_frame() -> Vec<u8> {
    let payload = PAYLOAD_64B_FRAME;
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&[0x02, 0x6b, 0x62, 0, 1, 2]); // destination MAC
    f.extend_from_slice(&[0x02, 0x6b, 0x62, 0, 0, 2]); // source MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = PROTO_UDP;
    ip[12..16].copy_from_slice(&[10, 213, 200, 2]);
    ip[16..20].copy_from_slice(&[10, 213, 200, 130]);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9000u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum
    f.resize(f.len() + payload, 0x6b);
    f
}

fn time_once(ebpf: &Ebpf, name: &str, frame: &[u8], repeat: u32) -> anyhow::Result<Duration> {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::new()
    };
    let program = ebpf
        .program(name)
        .with_context(|| format!("no program {name}"))?;
    let (result, expected) = match program {
        Program::Xdp(p) => (p.test_run(opts), XDP_PASS),
        Program::SchedClassifier(p) => (p.test_run(opts), TC_NEXT),
        _ => bail!("{name} is neither XDP nor TC"),
    };
    let result = result.with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
    if result.return_value != expected {
        bail!(
            "{name} returned {} instead of {expected}",
            result.return_value
        );
    }
    Ok(result.duration)
}

fn time(
    ebpf: &Ebpf,
    name: &str,
    frame: &[u8],
    repeat: u32,
    rounds: usize,
) -> anyhow::Result<Timing> {
    let per_round = (0..rounds)
        .map(|_| time_once(ebpf, name, frame, repeat))
        .collect::<anyhow::Result<_>>()?;
    Ok(Timing { per_round })
}

/// Loads kaipo's object as kaipo does (same globals and map sizes), loads the two interface
/// programs without attaching them, and times them.
pub fn measure(repeat: u32, rounds: usize, prefill: u32) -> anyhow::Result<Costs> {
    let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
    let mut ebpf = ebpf::load(
        &btf,
        &ebpf::Options {
            track_flows: std::env::var("NOFLOWS").is_err(),
            ..Default::default()
        },
    )
    .context("loading kaipo's object")?;
    let xdp: &mut Xdp = ebpf
        .program_mut("kaipo_xdp")
        .context("no kaipo_xdp")?
        .try_into()?;
    xdp.load().context("loading kaipo_xdp")?;
    let tc: &mut SchedClassifier = ebpf
        .program_mut("kaipo_tc_egress")
        .context("no kaipo_tc_egress")?
        .try_into()?;
    tc.load().context("loading kaipo_tc_egress")?;

    let frame = udp_frame();
    // One run first so the frame's own flow exists: (a) measures the lookup hit, not the insert.
    for name in PROGRAMS {
        time_once(&ebpf, name, &frame, 1)?;
    }
    let mut one_flow = Vec::new();
    for name in PROGRAMS {
        one_flow.push(time(&ebpf, name, &frame, repeat, rounds)?);
    }

    let flows_prefilled = {
        let mut flows: PerCpuHashMap<_, FlowKey, FlowCounters> =
            PerCpuHashMap::try_from(ebpf.map_mut("FLOWS").context("no FLOWS map")?)?;
        let cpus = aya::util::nr_cpus().map_err(|(what, err)| anyhow::anyhow!("{what}: {err}"))?;
        for i in 0..prefill {
            // The test runs' frames arrive on loopback (ifindex 1); these share everything with
            // the test frame's flow but the ports.
            let key = FlowKey {
                ifindex: 1,
                proto: PROTO_UDP,
                family: FAMILY_IPV4,
                local_port: 10_000 + (i % 50_000) as u16,
                remote_port: 1_000 + (i / 50_000) as u16,
                local_addr: [10, 213, 200, 130, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                remote_addr: [10, 213, 200, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ..FlowKey::default()
            };
            let values = PerCpuValues::try_from(vec![FlowCounters::default(); cpus])?;
            flows.insert(key, values, 0).context("pre-filling FLOWS")?;
        }
        flows.keys().filter(Result::is_ok).count() as u64
    };
    let mut programs = Vec::new();
    for (name, one) in PROGRAMS.into_iter().zip(one_flow) {
        programs.push((name, one, time(&ebpf, name, &frame, repeat, rounds)?));
    }
    let mut stats_runs = 0;
    for name in PROGRAMS {
        if let Some(program) = ebpf.program(name) {
            stats_runs += program.info().map_or(0, |i| i.run_count());
        }
    }
    let mut empty = Vec::new();
    for (name, prog_type, verdict) in [
        ("kaipo_xdp", baseline::PROG_TYPE_XDP, XDP_PASS as i32),
        (
            "kaipo_tc_egress",
            baseline::PROG_TYPE_SCHED_CLS,
            TC_NEXT as i32,
        ),
    ] {
        let fd = baseline::load_empty(prog_type, 0, verdict)?;
        let per_round = (0..rounds)
            .map(|_| baseline::test_run(&fd, &frame, repeat, verdict))
            .collect::<anyhow::Result<_>>()?;
        empty.push((name, Timing { per_round }));
    }
    Ok(Costs {
        empty,
        stats_runs,
        repeat,
        rounds,
        frame_len: frame.len(),
        programs,
        flows_prefilled,
    })
}
