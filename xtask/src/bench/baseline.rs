//! The floor under figure 1: what `BPF_PROG_TEST_RUN` reports for a program that does nothing
//! (`r0 = verdict; exit`), loaded with raw `bpf(2)` calls since it is two instructions and has
//! no object file. Subtracting it from kaipo's figures leaves the cost of kaipo's own code.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{bail, Context as _};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
pub const BPF_CGROUP_INET_INGRESS: u32 = 0;
pub const BPF_CGROUP_INET_EGRESS: u32 = 1;
pub const PROG_TYPE_CGROUP_SKB: u32 = 8;
const BPF_XDP: u32 = 37;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
pub const XDP_FLAGS_SKB_MODE: u32 = 2;
pub const XDP_FLAGS_DRV_MODE: u32 = 4;
pub const PROG_TYPE_SCHED_CLS: u32 = 3;
pub const PROG_TYPE_XDP: u32 = 6;
/// `BPF_F_XDP_HAS_FRAGS`: the program accepts multi-buffer frames, as `kaipo_xdp` declares.
pub const XDP_HAS_FRAGS: u32 = 32;

/// `union bpf_attr` as far as `BPF_PROG_LOAD` and `BPF_PROG_TEST_RUN` need it; the kernel
/// zero-fills whatever lies past the size it is given.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }

    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn read_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.0[at..at + 4].try_into().unwrap_or_default())
    }

    fn call(&mut self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: the attribute buffer lives across the call and its size is passed along;
        // every pointer written into it points at memory that outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                self.0.len() as libc::c_uint,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }
}

/// Attaches a cgroup_skb program to a cgroup (`cgroup` is an open fd of its directory).
pub fn attach_cgroup(
    prog: &OwnedFd,
    cgroup: &impl AsRawFd,
    attach_type: u32,
) -> anyhow::Result<OwnedFd> {
    link(prog, cgroup.as_raw_fd() as u32, attach_type, 0)
}

/// Loads `r0 = verdict; exit` as a program of type `prog_type`, with load flags `prog_flags`.
pub fn load_empty(prog_type: u32, prog_flags: u32, verdict: i32) -> anyhow::Result<OwnedFd> {
    // BPF_ALU64 | BPF_MOV | BPF_K into r0, then BPF_JMP | BPF_EXIT.
    let mut insns = [0u8; 16];
    insns[0] = 0xb7;
    insns[4..8].copy_from_slice(&verdict.to_ne_bytes());
    insns[8] = 0x95;
    let license = b"GPL\0";
    let mut attr = Attr::new();
    attr.u32(0, prog_type)
        .u32(4, 2)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(44, prog_flags);
    attr.0[48..58].copy_from_slice(b"kb_empty\0\0");
    let fd = attr
        .call(BPF_PROG_LOAD)
        .context("BPF_PROG_LOAD of an empty program")?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

const BPF_MAP_CREATE: libc::c_long = 0;
const MAP_TYPE_ARRAY: u32 = 2;
/// Counters of the least per-socket counter ([`load_least_counter`]): a socket's cookie picks
/// one of them by its low 16 bits.
const LEAST_COUNTER_SLOTS: u32 = 1 << 16;

/// One instruction: opcode, destination and source register, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | dst;
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// Loads the least work a cgroup_skb program can do to count a packet against its socket:
/// the socket's cookie (one helper call), one array element chosen by it, and two atomic adds
/// (bytes, packets). Sockets whose cookies share their low 16 bits share a counter, so it is
/// a floor for cost, not a counter to read. The program holds its map: closing the map's fd
/// here leaves the map to live as long as the program.
pub fn load_least_counter() -> anyhow::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, MAP_TYPE_ARRAY)
        .u32(4, 4)
        .u32(8, 16)
        .u32(12, LEAST_COUNTER_SLOTS);
    attr.0[28..38].copy_from_slice(b"kb_counts\0");
    let map = attr
        .call(BPF_MAP_CREATE)
        .context("BPF_MAP_CREATE of the least counter's array")?;
    // SAFETY: a successful BPF_MAP_CREATE returns a new fd that nothing else owns.
    let map = unsafe { OwnedFd::from_raw_fd(map as i32) };
    let fd = map.as_raw_fd();
    let program = [
        insn(0xbf, 6, 1, 0, 0),                                // r6 = r1 (the context)
        insn(0x61, 7, 1, 0, 0),                                // r7 = skb->len
        insn(0x85, 0, 0, 0, 46),                               // r0 = bpf_get_socket_cookie(r1)
        insn(0x57, 0, 0, 0, (LEAST_COUNTER_SLOTS - 1) as i32), // r0 &= slots - 1
        insn(0x63, 10, 0, -4, 0),                              // *(u32 *)(r10 - 4) = r0
        insn(0x18, 1, 1, 0, fd),                               // r1 = the map
        insn(0, 0, 0, 0, 0),
        insn(0xbf, 2, 10, 0, 0), // r2 = r10
        insn(0x07, 2, 0, 0, -4), // r2 += -4
        insn(0x85, 0, 0, 0, 1),  // r0 = bpf_map_lookup_elem
        insn(0x15, 0, 0, 3, 0),  // if r0 == 0 goto out
        insn(0xdb, 0, 7, 0, 0),  // lock *(u64 *)(r0) += r7
        insn(0xb7, 1, 0, 0, 1),  // r1 = 1
        insn(0xdb, 0, 1, 8, 0),  // lock *(u64 *)(r0 + 8) += r1
        insn(0xb7, 0, 0, 0, 1),  // out: r0 = 1 (pass)
        insn(0x95, 0, 0, 0, 0),  // exit
    ];
    let insns: Vec<u8> = program.concat();
    let license = b"GPL\0";
    let mut attr = Attr::new();
    attr.u32(0, PROG_TYPE_CGROUP_SKB)
        .u32(4, program.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64);
    attr.0[48..58].copy_from_slice(b"kb_counts\0");
    let prog = attr
        .call(BPF_PROG_LOAD)
        .context("BPF_PROG_LOAD of the least counter")?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(prog as i32) })
}

/// Run time (ns) and runs, summed, of the loaded empty programs (`kb_empty`) of `prog_type`:
/// BPF run-time statistics must be on for them to move.
pub fn empty_program_stats(prog_type: u32) -> anyhow::Result<(u64, u64)> {
    let mut total = (0, 0);
    for info in aya::programs::loaded_programs() {
        let info = info.context("listing loaded BPF programs")?;
        if info.name_as_str() == Some("kb_empty") && info.program_type() as u32 == prog_type {
            total.0 += info.run_time().as_nanos() as u64;
            total.1 += info.run_count();
        }
    }
    Ok(total)
}

/// Test-runs a program `repeat` times on `frame`; returns the kernel's average per run.
pub fn test_run(
    prog: &OwnedFd,
    frame: &[u8],
    repeat: u32,
    verdict: i32,
) -> anyhow::Result<Duration> {
    let mut attr = Attr::new();
    attr.u32(0, prog.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u32(32, repeat);
    attr.call(BPF_PROG_TEST_RUN)
        .context("BPF_PROG_TEST_RUN of an empty program")?;
    let (retval, duration) = (attr.read_u32(4), attr.read_u32(36));
    if retval != verdict as u32 {
        bail!("the empty program returned {retval}");
    }
    Ok(Duration::from_nanos(u64::from(duration)))
}

/// Attaches an XDP program to an interface in generic (`XDP_FLAGS_SKB_MODE`) or driver
/// (`XDP_FLAGS_DRV_MODE`) mode through a link: closing the returned fd detaches it.
pub fn attach_xdp(prog: &OwnedFd, ifindex: u32, mode: u32) -> anyhow::Result<OwnedFd> {
    link(prog, ifindex, BPF_XDP, mode)
}

/// Attaches a classifier to an interface's TCX ingress or egress hook through a link.
pub fn attach_tcx(prog: &OwnedFd, ifindex: u32, ingress: bool) -> anyhow::Result<OwnedFd> {
    let hook = if ingress {
        BPF_TCX_INGRESS
    } else {
        BPF_TCX_EGRESS
    };
    link(prog, ifindex, hook, 0)
}

fn link(prog: &OwnedFd, target: u32, attach_type: u32, flags: u32) -> anyhow::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, prog.as_raw_fd() as u32)
        .u32(4, target)
        .u32(8, attach_type)
        .u32(12, flags);
    let fd = attr
        .call(BPF_LINK_CREATE)
        .context("BPF_LINK_CREATE of an empty program")?;
    // SAFETY: a successful BPF_LINK_CREATE returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
