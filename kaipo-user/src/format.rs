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
/// A count with thousands separated: `262,144`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn rate(n: u64, over: Duration) -> String {
    let secs = over.as_secs_f64();
    if secs <= 0.0 {
        return "-".into();
    }
    format!("{}/s", bytes((n as f64 / secs).round() as u64))
}

/// The longest duration any option takes: ten years of 365 days.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `500ms`, `1s`, `1.5s`, `2m`, `1h`, `1d`; a bare number is seconds. Exact integer
/// arithmetic (at most nine decimals), more than zero and at most [`MAX_DURATION`]: a value
/// out of range is an error that says the bounds, never a panic or a wrapped-around number.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let not_a_duration =
        || format!("'{text}' is not a duration; use a number with ms, s, m, h or d");
    if number.is_empty() || number == "." {
        return Err(not_a_duration());
    }
    let nanos_per_unit: u128 = match unit.trim() {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}'; use ms, s, m, h or d"
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
        return Err(not_a_duration());
    }
    let too_long = || {
        format!(
            "'{text}' is out of range: a duration is at most {}d",
            MAX_DURATION.as_secs() / 86_400
        )
    };
    // More digits than any u128 holds is out of range, not malformed.
    let whole: u128 = if whole.is_empty() {
        0
    } else if whole.len() > 30 {
        return Err(too_long());
    } else {
        whole.parse().map_err(|_| not_a_duration())?
    };
    let fraction_nanos: u128 = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| not_a_duration())?;
        digits * 10u128.pow(9 - fraction.len() as u32)
    };
    let nanos = whole
        .checked_mul(nanos_per_unit)
        .and_then(|n| n.checked_add(fraction_nanos * nanos_per_unit / 1_000_000_000))
        .ok_or_else(too_long)?;
    if nanos == 0 {
        return Err(format!("'{text}' must be more than zero"));
    }
    if nanos > MAX_DURATION.as_nanos() {
        return Err(too_long());
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// [`parse_duration`] within `min..=max`, naming the bounds when outside them.
pub fn parse_duration_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < min || d > max {
        return Err(format!(
            "'{}' is out of range: from {} to {}",
            text.trim(),
            crate::config::value::format_duration(min),
            crate::config::value::format_duration(max)
        ));
    }
    Ok(d)
}

/// The shortest interval a collecting command takes: shorter ones cost a core's worth of
/// reading maps and drawing for no figure anyone can read.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest interval a collecting command takes.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// A collecting command's interval: 100ms to 1d.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, MIN_INTERVAL, MAX_INTERVAL)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(262_144), "262,144");
        assert_eq!(count(1_234_567), "1,234,567");
    }

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
        assert_eq!(parse_duration(".25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
        assert_eq!(parse_duration("2500ms"), Ok(Duration::from_millis(2500)));
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err("'99999999999999999999s' is out of range: a duration is at most 3650d".into())
        );
        assert_eq!(
            parse_duration("18446744073709551615ms"),
            Err("'18446744073709551615ms' is out of range: a duration is at most 3650d".into())
        );
        assert!(parse_duration("1".repeat(60).as_str()).is_err());
        assert!(parse_duration("3651d").is_err());
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration(".").is_err());
        assert_eq!(
            parse_interval("1ms"),
            Err("'1ms' is out of range: from 100ms to 1d".into())
        );
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("fast")
            .unwrap_err()
            .contains("not a duration"));
    }
}
