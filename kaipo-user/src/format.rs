//! Numbers as people read them: byte counts, rates, durations, addresses.

use std::{net::IpAddr, time::Duration};

use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6};

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A byte count over a duration, per second.
pub fn rate(n: u64, over: Duration) -> String {
    let secs = over.as_secs_f64();
    if secs <= 0.0 {
        return "-".into();
    }
    format!("{}/s", bytes((n as f64 / secs).round() as u64))
}

/// Parses `500ms`, `1s`, `1.5s`, `2m`, `1h`, `1d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration; use a number with ms, s, m, h or d"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}'; use ms, s, m, h or d"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("'{text}' must be more than zero"));
    }
    // Far past u64 seconds `from_secs_f64` would panic: a typo gets an error instead.
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}' is too long a duration"))
}

/// An address as stored in kernel records: IPv4 in the first four bytes.
pub fn ip(family: u8, addr: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_IPV4 => Some(IpAddr::from([addr[0], addr[1], addr[2], addr[3]])),
        FAMILY_IPV6 => Some(IpAddr::from(*addr)),
        _ => None,
    }
}

/// `addr:port`, with IPv6 in brackets, or just the address for portless protocols.
pub fn endpoint(family: u8, addr: &[u8; 16], port: u16, has_ports: bool) -> String {
    let Some(ip) = ip(family, addr) else {
        return "?".into();
    };
    match (ip, has_ports) {
        (IpAddr::V6(v6), true) => format!("[{v6}]:{port}"),
        (ip, true) => format!("{ip}:{port}"),
        (ip, false) => ip.to_string(),
    }
}

pub fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        0 => "?".into(),
        other => other.to_string(),
    }
}

pub fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_rates_and_endpoints() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(rate(3072, Duration::from_secs(2)), "1.5 KiB/s");
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(endpoint(FAMILY_IPV4, &v4, 53, true), "10.0.0.1:53");
        assert_eq!(endpoint(FAMILY_IPV4, &v4, 0, false), "10.0.0.1");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(endpoint(FAMILY_IPV6, &v6, 443, true), "[::1]:443");
        assert_eq!(endpoint(0, &v6, 1, true), "?");
    }

    #[test]
    fn parses_durations_and_rejects_nonsense() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("fast")
            .unwrap_err()
            .contains("not a duration"));
    }
}

/// The name of a TCP state as the kernel numbers it (`include/net/tcp_states.h`), as `ss`
/// prints it; `None` for other protocols and for 0 (unknown).
pub fn tcp_state(proto: u8, state: u8) -> Option<&'static str> {
    if proto != kaipo_common::PROTO_TCP {
        return None;
    }
    Some(match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => return None,
    })
}
