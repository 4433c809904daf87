//! Encryption at rest: a keyed file is not plain SQLite, reads back exactly with its key,
//! refuses a wrong or missing key without being touched, and converts both ways keeping every
//! row.

use std::{fs, path::Path, sync::Arc};

use rusqlite::Connection;

use super::*;
use crate::store::{
    convert::{convert, Direction},
    key::{is_plain, PLAIN_HEADER},
};

const HEX: &str = "8f4e2b1c9a7d6e5f40312233445566778899aabbccddeeff0011223344556677";

fn key_file(dir: &TempDir, name: &str, text: &str) -> StoreKey {
    let path = dir.0.join(name);
    fs::write(&path, text).unwrap();
    StoreKey::load(&path).unwrap()
}

/// Every row of every table, as counted through a keyed (or plain) connection.
fn table_rows(path: &Path, key: Option<&StoreKey>) -> Vec<(String, u64)> {
    let conn = Connection::open(path).unwrap();
    if let Some(k) = key {
        k.apply(&conn).unwrap();
    }
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
        .into_iter()
        .map(|n| {
            let c: i64 = conn
                .query_row(&format!("SELECT count(*) FROM \"{n}\""), [], |r| r.get(0))
                .unwrap();
            (n, c as u64)
        })
        .collect()
}

fn siblings(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn all_dimensions(store: &mut Store) -> Vec<Vec<(String, [u64; 4])>> {
    ALL_DIMENSIONS
        .iter()
        .map(|by| rows_of(&store.query(&query(T0, T0 + 3_600_000, *by)).unwrap()))
        .collect()
}

#[test]
fn a_keyed_database_reads_back_exactly_and_refuses_a_wrong_or_missing_key_untouched() {
    let dir = TempDir::new("encrypted");
    let key = Arc::new(key_file(&dir, "key", &format!("{HEX}\n")));
    let mut expected = Expected::default();
    {
        let (mut store, note) =
            Store::open_with_key(dir.db(), &Retention::default(), Some(Arc::clone(&key))).unwrap();
        assert_eq!(note, OpenNote::Created);
        for b in three_batches() {
            store.write(&b).unwrap();
            expected.add_batch(&b);
        }
    }
    let bytes = fs::read(dir.db()).unwrap();
    assert_ne!(&bytes[..16], PLAIN_HEADER, "the header is encrypted too");
    assert_eq!(is_plain(&dir.db()), Some(false));
    assert_eq!(bytes.len() % 4096, 0, "whole pages");

    // Exactly what was written, with the key.
    let mut reader = Store::open_read_only_with_key(dir.db(), Some(&key)).unwrap();
    for by in ALL_DIMENSIONS {
        let r = reader.query(&query(T0, T0 + 3_600_000, by)).unwrap();
        assert_eq!(rows_of(&r), expected.rows(by), "{by:?}");
    }
    drop(reader);
    let before = siblings(&dir);
    let bytes = fs::read(dir.db()).unwrap();

    // Without a key: a clear error, for readers and nothing changed.
    let err = Store::open_read_only(dir.db()).err().expect("an error");
    assert!(
        matches!(err, StoreError::EncryptedOrDamaged { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the history database {} is not a plain SQLite file: it is encrypted (set [storage] \
             encryption_key_file to its key) or damaged",
            dir.db().display()
        )
    );
    // A wrong key: refused by the writer too, never taken for damage.
    let wrong = Arc::new(key_file(&dir, "wrong", &"0".repeat(64)));
    let err = Store::open_with_key(dir.db(), &Retention::default(), Some(Arc::clone(&wrong)))
        .err()
        .expect("an error");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read the history database {} with the key from {}: the key is wrong, or the \
             file is not an encrypted kaipo database; nothing was changed (the file is left as \
             it is)",
            dir.db().display(),
            dir.0.join("wrong").display()
        )
    );
    let err = Store::open_or_hold(dir.db(), &Retention::default(), Some(wrong))
        .err()
        .expect("an error");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    let err = Store::open_read_only_with_key(dir.db(), Some(&key_file(&dir, "pass", "hunter2")))
        .err()
        .expect("an error");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    assert_eq!(fs::read(dir.db()).unwrap(), bytes, "byte for byte");
    let mut after = siblings(&dir);
    after.retain(|n| n != "wrong" && n != "pass");
    assert_eq!(after, before, "nothing moved aside, nothing created");
}

#[test]
fn encrypt_and_decrypt_keep_every_row() {
    let dir = TempDir::new("convert");
    let mut expected = Expected::default();
    {
        let (mut store, _) = Store::open(dir.db(), &Retention::default()).unwrap();
        for b in three_batches() {
            store.write(&b).unwrap();
            expected.add_batch(&b);
        }
    }
    let plain_rows = table_rows(&dir.db(), None);
    // What three_batches leaves in the file, table by table.
    let in_file: Vec<(String, u64)> = [
        ("app", 4),
        ("container", 3),
        ("iface", 2),
        ("iface_day", 0),
        ("iface_hour", 0),
        ("iface_interval", 3),
        ("iface_minute", 0),
        ("meta", 0),
        ("process", 4),
        ("remote", 5),
        ("remote_name", 0),
        ("service", 4),
        ("totals_day", 0),
        ("totals_hour", 0),
        ("totals_interval", 5),
        ("totals_minute", 0),
        ("traffic_day", 0),
        ("traffic_hour", 0),
        ("traffic_interval", 3),
        ("traffic_minute", 0),
        ("user", 4),
        ("workload", 0),
    ]
    .map(|(n, c)| (n.to_owned(), c))
    .into();
    assert_eq!(plain_rows, in_file);
    let key = key_file(&dir, "key", "a passphrase, not hex\n");
    // A plain file with a key set: refused, unchanged.
    let bytes = fs::read(dir.db()).unwrap();
    let err = Store::open_read_only_with_key(dir.db(), Some(&key))
        .err()
        .expect("an error");
    assert!(matches!(err, StoreError::NotEncrypted { .. }), "{err}");
    assert_eq!(fs::read(dir.db()).unwrap(), bytes);

    let done = convert(&dir.db(), &key, Direction::Encrypt).unwrap();
    let counted: Vec<(String, u64)> = plain_rows
        .iter()
        .filter(|(n, _)| !n.starts_with("sqlite_"))
        .cloned()
        .collect();
    assert_eq!(done.tables, counted);
    assert_eq!(done.rows(), 37);
    assert_eq!(is_plain(&dir.db()), Some(false));
    assert_eq!(table_rows(&dir.db(), Some(&key)), plain_rows);
    assert_eq!(
        siblings(&dir),
        ["history.db", "key"],
        "no lock, -wal or .converting left behind"
    );
    let mut reader = Store::open_read_only_with_key(dir.db(), Some(&key)).unwrap();
    let encrypted = all_dimensions(&mut reader);
    drop(reader);
    for (by, rows) in ALL_DIMENSIONS.iter().zip(&encrypted) {
        assert_eq!(rows, &expected.rows(*by), "{by:?}");
    }
    // Encrypting twice is refused and changes nothing.
    let bytes = fs::read(dir.db()).unwrap();
    let err = convert(&dir.db(), &key, Direction::Encrypt).expect_err("an error");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot convert the history database {}: it is already encrypted, or not an SQLite \
             database at all; nothing was changed",
            dir.db().display()
        )
    );
    assert_eq!(fs::read(dir.db()).unwrap(), bytes);
    // The daemon's writer opens it with the key and goes on writing.
    {
        let (mut store, note) = Store::open_with_key(
            dir.db(),
            &Retention::default(),
            Some(Arc::new(key_file(&dir, "key", "a passphrase, not hex\n"))),
        )
        .unwrap();
        assert_eq!(note, OpenNote::Opened);
        let extra = batch(
            T0 + 180_000,
            60_000,
            vec![traffic("curl", 201, 1000, "2001:db8::1", "http", 11, 22)],
            vec![],
        );
        store.write(&extra).unwrap();
        expected.add_batch(&extra);
    }
    let keyed_rows = table_rows(&dir.db(), Some(&key));
    assert_ne!(keyed_rows, in_file, "the writer added rows through the key");
    let done = convert(&dir.db(), &key, Direction::Decrypt).unwrap();
    assert_eq!(is_plain(&dir.db()), Some(true));
    assert_eq!(table_rows(&dir.db(), None), keyed_rows);
    assert_eq!(done.tables, keyed_rows);
    let mut plain = Store::open_read_only(dir.db()).unwrap();
    for by in ALL_DIMENSIONS {
        let r = plain.query(&query(T0, T0 + 3_600_000, by)).unwrap();
        assert_eq!(rows_of(&r), expected.rows(by), "{by:?}");
    }
}
