//! Figure 1: the per-packet cost of the interface programs, run by the kernel on a synthetic
//! frame with `BPF_PROG_TEST_RUN`, with one flow and with thousands of flows in the flow map.

use std::time::Duration;

use anyhow::{bail, Context as _};
use aya::{
    maps::{Array, PerCpuHashMap},
    programs::{Program, SchedClassifier, TestRun as _, TestRunOptions, Xdp},
    Btf, Ebpf,
};
use kaipo::collect::ebpf;
use kaipo_common::{
    flow_slot, maps, FlowCounters, FlowKey, FlowSlot, FAMILY_IPV4, FLOW_SLOT_EMPTY, FLOW_SLOT_RX,
    FLOW_SLOT_TX, PROTO_UDP,
};

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

/// One interface program's cost in three situations.
pub struct ProgramCost {
    pub name: &'static str,
    /// The test frame's flow alone, in its cache slot.
    pub one: Timing,
    /// The same frame after `Costs::prefill` other flows went through the programs: its flow
    /// still holds its cache slot (the common case for an active flow).
    pub hit: Timing,
    /// A frame whose two cache slots are held by other recently active flows, so its flow is
    /// counted in the `FLOWS` hash (after both slots were looked at).
    pub busy: Timing,
}

/// Where the prefilled flows ended up.
pub struct Prefill {
    /// Flows run through each program before the second and third measurements.
    pub per_program: u32,
    /// Taken cache slots, over all CPUs, once they had run.
    pub cached: u64,
    /// Entries of the `FLOWS` hash once they had run.
    pub in_map: u64,
}

pub struct Costs {
    pub repeat: u32,
    pub rounds: usize,
    pub frame_len: usize,
    pub programs: Vec<ProgramCost>,
    pub prefill: Prefill,
    /// Cache slots per CPU, as kaipo sizes the cache on this machine.
    pub cache_slots: u32,
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

/// The test frame with other ports: source port `src`, destination port `dst`.
fn udp_frame_ports(src: u16, dst: u16) -> Vec<u8> {
    let mut f = udp_frame();
    f[34..36].copy_from_slice(&src.to_be_bytes());
    f[36..38].copy_from_slice(&dst.to_be_bytes());
    f
}

/// The key `name` gives `frame` (ingress for XDP, egress for the classifier; the test runs'
/// device is the loopback, ifindex 1), with the cache direction.
fn key_of(name: &str, frame: &[u8]) -> (FlowKey, u32) {
    let ip = |at: usize| {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&frame[at..at + 4]);
        a
    };
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    let (src, dst, sport, dport) = (ip(26), ip(30), port(34), port(36));
    let egress = name != "kaipo_xdp";
    let (local_addr, remote_addr, local_port, remote_port, dir) = if egress {
        (src, dst, sport, dport, FLOW_SLOT_TX)
    } else {
        (dst, src, dport, sport, FLOW_SLOT_RX)
    };
    (
        FlowKey {
            ifindex: 1,
            proto: PROTO_UDP,
            family: FAMILY_IPV4,
            local_port,
            remote_port,
            local_addr,
            remote_addr,
            ..FlowKey::default()
        },
        dir,
    )
}

/// Loads kaipo's object as kaipo does (same globals and map sizes), loads the two interface
/// programs without attaching them, and times them, on a thread pinned to CPU 0 so that every
/// run uses one CPU's cache slots.
pub fn measure(repeat: u32, rounds: usize, prefill: u32) -> anyhow::Result<Costs> {
    std::thread::spawn(move || {
        super::traffic::pin_to_cpu(Some(0))?;
        measure_here(repeat, rounds, prefill)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the test-run thread panicked"))?
}

fn measure_here(repeat: u32, rounds: usize, prefill: u32) -> anyhow::Result<Costs> {
    let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
    // Flows on: the figures are for a flow in its cache slot and one counted in FLOWS.
    let opts = ebpf::Options::default();
    let mut ebpf = ebpf::load(
        &btf,
        &opts,
        true,
        ebpf::running_kernel_cookie_read().ok().as_ref(),
    )
    .context("loading kaipo's object")?;
    // The test frames' interface (loopback) gets its counter slot, as kaipo gives every
    // interface it attaches to.
    ebpf::IfaceTable::open(&ebpf)
        .context("the interface counters")?
        .claim(1, &Default::default());
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
    // The `warm` frames run once right before each timed test run, so their flows (the measured
    // one, or those holding its slots) are recently active whatever time the other runs took.
    let timed = |name: &str, warm: &[(&str, &[u8])], frame: &[u8]| -> anyhow::Result<Timing> {
        let per_round = (0..rounds)
            .map(|_| {
                for (program, warm) in warm {
                    time_once(&ebpf, program, warm, 1)?;
                }
                time_once(&ebpf, name, frame, repeat)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Timing { per_round })
    };
    let mut one_flow = Vec::new();
    for name in PROGRAMS {
        one_flow.push(timed(name, &[(name, &frame)], &frame)?);
    }

    // Other flows through the programs themselves, so they land where the kernel puts them:
    // in free cache slots, else in FLOWS. Ports 10000.. towards 2000..; the test frame's are
    // 40000 and 9000.
    let other = |i: u32| udp_frame_ports(10_000 + (i % 50_000) as u16, 2_000 + (i / 50_000) as u16);
    for name in PROGRAMS {
        for i in 0..prefill {
            time_once(&ebpf, name, &other(i), 1)?;
        }
    }
    // Every slot of CPU 0 (this thread's CPU), whose run comes first in the map.
    let cache: Array<_, FlowSlot> = Array::try_from(
        ebpf.map(maps::FLOW_CACHE)
            .with_context(|| format!("no {} map", maps::FLOW_CACHE))?,
    )?;
    // As many slots per CPU as kaipo sized the cache with on this machine.
    let cpus = u32::try_from(aya::util::nr_cpus().map_err(|(_, e)| e)?)?;
    let cache_slots = cache.len() / cpus.max(1);
    let mut slots = Vec::with_capacity(cache_slots as usize);
    let mut cached = 0u64;
    for index in 0..cache.len() {
        let slot = cache.get(&index, 0)?;
        cached += u64::from(slot.direction() != FLOW_SLOT_EMPTY);
        if index < cache_slots {
            slots.push(slot);
        }
    }
    // For each program, a frame whose two slots are both held by those flows, and the holders'
    // own programs and frames (a slot may hold a flow of either direction).
    let slot_mask = cache_slots - 1;
    let holder = |index: u32| -> Option<(&'static str, Vec<u8>)> {
        let slot = slots[index as usize];
        let k = slot.key;
        match (slot.direction(), k.ifindex) {
            (FLOW_SLOT_RX, 1) => Some(("kaipo_xdp", udp_frame_ports(k.remote_port, k.local_port))),
            (FLOW_SLOT_TX, 1) => Some((
                "kaipo_tc_egress",
                udp_frame_ports(k.local_port, k.remote_port),
            )),
            _ => None,
        }
    };
    let mut busy = Vec::new();
    for name in PROGRAMS {
        let found = (0..u16::MAX)
            .map(|p| udp_frame_ports(40_000, 3_000 + p % 60_000))
            .find_map(|f| {
                let (key, dir) = key_of(name, &f);
                let first = flow_slot(&key, dir, slot_mask);
                Some((f, [holder(first)?, holder(first ^ 1)?]))
            })
            .context("no frame meets two prefilled flows' slots")?;
        busy.push(found);
    }
    let flows: PerCpuHashMap<_, FlowKey, FlowCounters> = PerCpuHashMap::try_from(
        ebpf.map(maps::FLOWS)
            .with_context(|| format!("no {} map", maps::FLOWS))?,
    )?;
    let in_map = flows.keys().filter(Result::is_ok).count() as u64;

    let mut programs = Vec::new();
    for ((name, one), (newcomer, holders)) in PROGRAMS.into_iter().zip(one_flow).zip(busy) {
        let warm: Vec<(&str, &[u8])> = holders.iter().map(|(p, f)| (*p, f.as_slice())).collect();
        programs.push(ProgramCost {
            name,
            one,
            hit: timed(name, &[(name, &frame)], &frame)?,
            busy: timed(name, &warm, &newcomer)?,
        });
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
        prefill: Prefill {
            per_program: prefill,
            cached,
            in_map,
        },
        cache_slots,
    })
}
