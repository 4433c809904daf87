//! Values TOML has no type for, written as strings: durations (`"500ms"`, `"60s"`, `"2h"`) and
//! socket addresses (`"127.0.0.1:9542"`, `"[::1]:9542"`, `""` for none). Their errors go
//! through serde, so that toml points at the offending value's line.

use std::time::Duration;

/// `90s` rather than `1m30s`: the shortest exact spelling that `parse_duration` reads back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

pub mod duration {
    use std::time::Duration;

    use serde::{de::Error as _, Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::format::parse_duration(&text).map_err(D::Error::custom)
    }
}

pub mod socket_addr {
    use std::net::SocketAddr;

    use serde::{de::Error as _, Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        // Host names are refused: resolving one at start would make the address depend on DNS.
        text.parse().map(Some).map_err(|_| {
            D::Error::custom(format!(
                "'{text}' is not an address; allowed: IP:PORT (127.0.0.1:9542, [::1]:9542) or \"\" for off"
            ))
        })
    }
}

/// An optional path: "" (the default) for none, so that every key has a value in the file.
pub mod optional_path {
    use std::path::PathBuf;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(
            &p.as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_to_what_parses_back() {
        for (d, text) in [
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(7200), "2h"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(crate::format::parse_duration(text), Ok(d));
        }
    }
}
