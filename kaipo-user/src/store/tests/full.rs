//! A full disk: writes fail, rows are held, and everything is written once space returns.

use std::process::Command;

use super::*;

/// Batch `n` of a stream with many distinct processes, so the file grows fast.
fn growing(n: u32) -> IntervalBatch {
    let rows = (0..60)
        .map(|i| {
            let pid = n * 100 + i;
            let mut r = traffic(
                &format!("app{}", i % 9),
                pid,
                i % 4,
                &format!("10.{}.{}.1", n % 250, i),
                "https",
                0,
                0,
            );
            r.cmdline = format!("/opt/app{} --worker {pid} {}", i % 9, "x".repeat(200));
            r.rx_bytes = u64::from(pid) * 3 + 1;
            r.tx_bytes = u64::from(n) + 11;
            r
        })
        .collect();
    batch(
        T0 + 10_000 * i64::from(n + 1),
        10_000,
        rows,
        vec![iface("eth0", u64::from(n) + 5, 9)],
    )
}

/// Writes batches until the database refuses one, then `extra` more while it is still full;
/// then `make_room` and one more batch must store everything. Checks exact totals.
fn fill_hold_recover(store: &mut Store, extra: u32, make_room: impl FnOnce(&mut Store)) {
    let mut expected = Expected::default();
    let mut n = 0;
    let first_failure = loop {
        let b = growing(n);
        expected.add_batch(&b);
        n += 1;
        match store.write(&b) {
            Ok(()) => assert!(n < 5000, "the database never filled up"),
            Err(e) => break e,
        }
    };
    assert!(first_failure.is_full(), "{first_failure}");
    assert!(
        matches!(first_failure, StoreError::Held { .. }),
        "{first_failure}"
    );
    assert!(
        first_failure.to_string().contains("free some space"),
        "{first_failure}"
    );
    let failed_at = n;
    for _ in 0..extra {
        let b = growing(n);
        expected.add_batch(&b);
        n += 1;
        assert!(store.write(&b).is_err(), "still full");
        // Rollups may fail too; they are retried, nothing depends on them here.
        let _ = store.maintain(b.ts_ms);
    }
    assert!(store.backlog_len() > 0);
    assert!(
        store.last_error().is_some_and(|e| e.contains("full")),
        "{:?}",
        store.last_error()
    );
    make_room(store);
    let b = growing(n);
    expected.add_batch(&b);
    store.write(&b).expect("write once there is room");
    assert_eq!(store.backlog_len(), 0);
    assert_eq!(store.last_error(), None);
    assert_eq!(store.dropped_rows(), 0);
    store.maintain(b.ts_ms + 3_600_000).expect("maintain");
    let end = b.ts_ms + 3_600_000;
    for by in [
        Dimension::App,
        Dimension::Process,
        Dimension::User,
        Dimension::Remote,
        Dimension::Interface,
    ] {
        for tier in [Tier::Interval, Tier::Minute, Tier::Hour] {
            let r = store.query_tier(&query(T0, end, by), tier).expect("query");
            assert_eq!(
                rows_of(&r),
                expected.rows(by),
                "{by:?} in the {tier:?} tier, full after {failed_at} batches"
            );
        }
    }
    let check: String = store
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
}

fn set_max_pages(store: &Store, pages: i64) {
    store
        .conn
        .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .expect("max_page_count");
}

#[test]
fn size_limit_reached_holds_rows_then_writes_them_all() {
    let dir = TempDir::new("maxpages");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let pages: i64 = store
        .conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("pages");
    set_max_pages(&store, pages + 60);
    fill_hold_recover(&mut store, 25, |s| set_max_pages(s, 1 << 30));
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn tiny_filesystem_full_holds_rows_then_writes_them_all() {
    let dir = TempDir::new("tmpfs");
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1M",
            "kaipo-test",
            &dir.0.to_string_lossy(),
        ])
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        other => {
            // Needs root (CAP_SYS_ADMIN); the max_page_count test covers the logic elsewhere.
            eprintln!("skipping: cannot mount a tmpfs: {other:?}");
            return;
        }
    }
    let mount = Mount(dir.0.clone());
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    fill_hold_recover(&mut store, 25, |_| {
        let out = Command::new("mount")
            .args(["-o", "remount,size=64M", &mount.0.to_string_lossy()])
            .output()
            .expect("remount");
        assert!(out.status.success(), "remount: {out:?}");
    });
    drop(store);
    drop(mount);
}

/// A daemon started on a full filesystem: nothing can be created or written, so the store
/// holds every batch and opens the file with the first write after space returns.
#[test]
fn a_store_started_on_a_full_filesystem_holds_rows_until_space_returns() {
    let dir = TempDir::new("full-start");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "kaipo-test"])
        .arg(&dir.0)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!("skipping: cannot mount a tmpfs: {other:?}");
            return;
        }
    }
    let mount = Mount(dir.0.clone());
    // Fill it: at most 1 MiB in 4 KiB writes.
    let filler = dir.0.join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = [0x33_u8; 4096];
        for _ in 0..=256 {
            if std::io::Write::write_all(&mut f, &block).is_err() {
                break;
            }
        }
    }
    let (mut store, note) =
        Store::open_or_hold(dir.db(), &Retention::default(), None).expect("held");
    assert!(matches!(note, OpenNote::Held { .. }), "{note:?}");
    assert!(!store.is_open());
    assert!(store.last_error().is_some());
    let refused = store
        .query(&query(T0, T0 + 3_600_000, Dimension::App))
        .expect_err("nothing to query yet");
    assert!(matches!(refused, StoreError::NotOpen { .. }), "{refused}");
    let mut expected = Expected::default();
    for n in 0..3 {
        let b = growing(n);
        expected.add_batch(&b);
        let err = store.write(&b).expect_err("still full");
        assert!(matches!(err, StoreError::Held { .. }), "{err}");
        assert!(err.is_unwritable(), "{err}");
    }
    assert!(store.backlog_len() > 0);
    std::fs::remove_file(&filler).expect("free the space");
    let b = growing(3);
    expected.add_batch(&b);
    store.write(&b).expect("written once space returned");
    assert!(store.is_open());
    assert_eq!((store.backlog_len(), store.last_error()), (0, None));
    let (from, to) = (T0, T0 + 10_000 * 5);
    let r = store
        .query(&query(from, to, Dimension::Process))
        .expect("query");
    let rx: u64 = expected
        .0
        .iter()
        .filter(|((dim, _), _)| *dim == Dimension::Process)
        .map(|(_, c)| c[0])
        .sum();
    assert_eq!((r.rows.len(), r.total.rx_bytes), (4 * 60, rx));
    drop(store);
    drop(mount);
}
