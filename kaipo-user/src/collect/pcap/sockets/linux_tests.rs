use std::os::unix::fs::symlink;

use super::*;

/// A fake `/proc` in a temporary folder; removed on drop.
struct FakeProc(PathBuf);

impl FakeProc {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("kaipo-proc-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("net")).unwrap();
        Self(root)
    }

    fn process(&self, pid: u32, comm: &str, uid: u32) {
        let dir = self.0.join(pid.to_string());
        fs::create_dir_all(dir.join("fd")).unwrap();
        fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        fs::write(
            dir.join("status"),
            format!("Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t7\t7\t7\t7\n"),
        )
        .unwrap();
        symlink("/dev/null", dir.join("fd").join("0")).unwrap();
    }

    fn fd(&self, pid: u32, fd: u32, inode: u64) {
        let link = self.0.join(pid.to_string()).join("fd").join(fd.to_string());
        symlink(format!("socket:[{inode}]"), link).unwrap();
    }

    fn close(&self, pid: u32, fd: u32) {
        fs::remove_file(self.0.join(pid.to_string()).join("fd").join(fd.to_string())).unwrap();
    }

    fn table(&self, name: &str, rows: &[&str]) {
        let mut text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_string();
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        fs::write(self.0.join("net").join(name), text).unwrap();
    }
}

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const LISTEN_631: &str = "   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1 0000000000000000 100 0 0 10 0";
const UDP_CONNECTED: &str = "  12: 01FAD50A:1388 02FAD50A:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 5002 2 0000000000000000 0";

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

#[test]
fn parses_table_rows_in_host_byte_order() {
    let listen = parse_line(LISTEN_631, PROTO_TCP, FAMILY_IPV4).unwrap();
    assert_eq!(listen.cookie, 5001);
    assert_eq!(listen.key.local, v4([127, 0, 0, 1]));
    assert_eq!(listen.key.local_port, 631);
    assert!(listen.key.is_unconnected());
    let udp = parse_line(UDP_CONNECTED, PROTO_UDP, FAMILY_IPV4).unwrap();
    assert_eq!(
        (
            udp.key.local,
            udp.key.local_port,
            udp.key.remote,
            udp.key.remote_port
        ),
        (v4([10, 213, 250, 1]), 5000, v4([10, 213, 250, 2]), 40000)
    );
    // A dual-stack socket's IPv4 peer, as tcp6 prints it.
    let mapped = parse_line(
        "   3: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 777 1",
        PROTO_TCP,
        FAMILY_IPV6,
    )
    .unwrap()
    .key
    .normalized();
    assert_eq!(mapped.family, FAMILY_IPV4);
    assert_eq!(
        (mapped.local, mapped.remote),
        (v4([127, 0, 0, 1]), v4([127, 0, 0, 2]))
    );
    assert_eq!((mapped.local_port, mapped.remote_port), (8080, 54321));
    for bad in [
        "  sl  local_address rem_address   st tx_queue",
        "   0: 0100007F 00000000:0000 0A",
        "   0: 0100007Fé:0277 00000000:0000 0A 0:0 0:0 0 0 0 5",
        "   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 notanumber",
        "",
    ] {
        assert_eq!(parse_line(bad, PROTO_TCP, FAMILY_IPV4), None, "{bad:?}");
    }
}

#[test]
fn owners_come_from_fd_links_and_are_confirmed_from_the_cache() {
    let proc = FakeProc::new("owners");
    proc.table("tcp", &[LISTEN_631]);
    proc.table("udp", &[UDP_CONNECTED]);
    proc.process(100, "cupsd", 0);
    proc.fd(100, 3, 5001);
    proc.process(200, "sender", 1000);
    proc.fd(200, 4, 5002);
    proc.process(150, "idle", 0);

    let mut source = ProcSource::new(&proc.0, ScanBudget::default());
    let mut rows = Vec::new();
    source.read_table(&mut rows).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.cookie).collect::<Vec<_>>(),
        vec![5001, 5002]
    );

    let mut out = Vec::new();
    source.owners(&[5001, 5002], &mut out);
    out.sort_unstable();
    assert_eq!(out, vec![(5001, 100), (5002, 200)]);
    assert_eq!(source.stats.listings, 1);
    let scanned = source.stats.pids_scanned;

    // Known sockets: one readlink each, no listing, no scan.
    out.clear();
    source.owners(&[5001, 5002], &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(source.stats.listings, 1);
    assert_eq!(source.stats.pids_scanned, scanned);
    assert_eq!(source.stats.confirmed, 2);

    // The socket moves to a new process (fd passing, or the parent closed it after a fork):
    // the newcomer is scanned first, and alone.
    proc.close(100, 3);
    proc.process(300, "worker", 33);
    proc.fd(300, 9, 5001);
    out.clear();
    source.owners(&[5001], &mut out);
    assert_eq!(out, vec![(5001, 300)]);
    assert_eq!(source.stats.pids_scanned, scanned + 1);

    let owner = source.describe(300).unwrap();
    assert_eq!((owner.pid, owner.uid, owner.gid), (300, 33, 7));
    assert_eq!(&owner.comm[..7], b"worker\0");
    assert_eq!(source.describe(999), None);
    assert!(source.is_alive(300) && !source.is_alive(999));
}

#[test]
fn a_small_budget_spreads_the_search_over_calls() {
    let proc = FakeProc::new("budget");
    proc.table("tcp", &[LISTEN_631]);
    proc.table("udp", &[]);
    for pid in [10, 20, 30, 40] {
        proc.process(pid, "p", 0);
    }
    let mut source = ProcSource::new(&proc.0, ScanBudget { pids: 1, fds: 100 });
    let mut out = Vec::new();
    // First call: everything is new, one process scanned, nothing found.
    source.owners(&[5001], &mut out);
    assert!(out.is_empty());
    assert_eq!(source.stats.pids_scanned, 1);
    // The socket shows up in a process already looked at; the turn reaches it.
    proc.fd(10, 5, 5001);
    let mut calls = 1;
    while out.is_empty() {
        source.owners(&[5001], &mut out);
        calls += 1;
        assert!(calls <= 6, "never found");
    }
    assert_eq!(out, vec![(5001, 10)]);
    assert_eq!(source.stats.pids_scanned, calls, "one process per call");
}

#[test]
fn closed_sockets_leave_the_cache_and_missing_ipv6_tables_are_fine() {
    let proc = FakeProc::new("prune");
    proc.table("tcp", &[LISTEN_631]);
    proc.table("udp", &[]);
    proc.process(100, "cupsd", 0);
    proc.fd(100, 3, 5001);
    let mut source = ProcSource::new(&proc.0, ScanBudget::default());
    let mut out = Vec::new();
    source.owners(&[5001], &mut out);
    assert_eq!(source.seen.len(), 1);
    proc.table("tcp", &[]);
    let mut rows = Vec::new();
    source.read_table(&mut rows).unwrap();
    assert!(rows.is_empty());
    assert!(source.seen.is_empty());
    fs::remove_file(proc.0.join("net").join("udp")).unwrap();
    let err = source.read_table(&mut rows).unwrap_err();
    assert!(err.to_string().contains("net/udp"), "{err}");
}
