//! SIGKILL while writing: a real child process writes as fast as it can and is killed at an
//! arbitrary moment; every batch it reported as committed must be there, exactly.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use super::*;

/// Set in the child: the database it writes to.
const WRITER_ENV: &str = "KAIPO_STORE_CRASH_WRITER";
const ROWS: u32 = 40;

/// Batch `n`: one second long, `ROWS` rows whose counters encode `n` and the row.
fn numbered(n: u32) -> IntervalBatch {
    let rows = (0..ROWS)
        .map(|i| {
            let mut r = traffic(
                &format!("app{}", i % 7),
                1000 + i,
                i % 3,
                &format!("10.1.0.{i}"),
                "https",
                0,
                0,
            );
            r.rx_bytes = u64::from(n) * 1000 + u64::from(i);
            r.tx_bytes = u64::from(n) * 7 + u64::from(i) * 3;
            r.rx_packets = u64::from(n);
            r.tx_packets = u64::from(i);
            r
        })
        .collect();
    batch(
        T0 + 1000 * i64::from(n + 1),
        1000,
        rows,
        vec![iface("eth0", u64::from(n) + 1, 1)],
    )
}

fn writer(path: &str) -> ! {
    let (mut store, _) = Store::open(path, &Retention::default()).expect("child open");
    for n in 0.. {
        let b = numbered(n);
        store.write(&b).expect("child write");
        // Rollups run in the same loop, so a kill can also land inside one.
        store.maintain(b.ts_ms).expect("child maintain");
        println!("committed {n}");
    }
    unreachable!("the parent kills the writer");
}

#[test]
fn sigkill_while_writing_keeps_every_committed_batch() {
    if let Ok(path) = std::env::var(WRITER_ENV) {
        writer(&path);
    }
    let dir = TempDir::new("crash");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Somewhere between 150 and 650 batches: minutes and their rollups included.
    let kill_after = 150 + nanos % 500;
    let name = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            &format!("{name}::sigkill_while_writing_keeps_every_committed_batch"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, dir.db())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut last: Option<u32> = None;
    for line in &mut lines {
        let line = line.expect("read child");
        if let Some(n) = line.strip_prefix("committed ") {
            last = Some(n.parse().expect("number"));
            if last == Some(kill_after) {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL");
    // Anything already printed before the kill counts as committed too.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("committed ") {
            last = Some(n.parse().expect("number"));
        }
    }
    let status = child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the writer must die by SIGKILL, not {status}"
    );
    let last = last.expect("the writer committed nothing");
    assert!(last >= kill_after);

    let (mut store, note) = Store::open(dir.db(), &Retention::default()).expect("reopen");
    assert_eq!(
        note,
        OpenNote::Opened,
        "a killed writer leaves a usable database"
    );
    let check: String = store
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    // Batch n covers second n after T0; the one in flight may or may not have committed, and
    // then it is complete: never half a batch.
    let r = store
        .query_tier(
            &query(T0, T0 + 3_600_000, Dimension::Interface),
            Tier::Interval,
        )
        .expect("query");
    let present = r.series.len() as u32;
    assert!(
        present == last + 1 || present == last + 2,
        "{present} batches for {} reported",
        last + 1
    );
    let mut expected = Expected::default();
    for n in 0..present {
        expected.add_batch(&numbered(n));
    }
    for by in [Dimension::Process, Dimension::Remote, Dimension::Interface] {
        let r = store
            .query_tier(&query(T0, T0 + 3_600_000, by), Tier::Interval)
            .expect("query");
        assert_eq!(rows_of(&r), expected.rows(by), "{by:?}");
    }
    for (n, point) in r.series.iter().enumerate() {
        assert_eq!(point.ts_ms, T0 + 1000 * n as i64);
        assert_eq!(point.rx_bytes, n as u64 + 1, "interface rows of batch {n}");
    }
    // Rollups are consistent too: the minute tier agrees for every closed minute.
    let closed = store.marks.rolled(Tier::Minute) * 60_000;
    if closed > T0 {
        let q = query(T0, closed, Dimension::Process);
        let minute = store.query_tier(&q, Tier::Minute).expect("query");
        assert_eq!(
            rows_of(&minute),
            rows_of(&store.query_tier(&q, Tier::Interval).expect("query"))
        );
    }
}
