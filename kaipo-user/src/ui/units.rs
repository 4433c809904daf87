//! Rates as the dashboard prints them, in bytes or bits per second.
//!
//! Bytes use binary units like the rest of kaipo ([`format::bytes`]); bits use decimal units
//! because link speeds are quoted that way (a 1 Gbit/s NIC is 10^9 bits per second).

use crate::format;

/// What `u` toggles between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateUnit {
    #[default]
    Bytes,
    Bits,
}

impl RateUnit {
    pub fn toggled(self) -> Self {
        match self {
            Self::Bytes => Self::Bits,
            Self::Bits => Self::Bytes,
        }
    }

    /// A rate without the `/s`: table columns say `/s` in their titles, which keeps every
    /// cell within ten characters.
    pub fn amount(self, bytes_per_sec: f64) -> String {
        let bytes_per_sec = if bytes_per_sec.is_finite() {
            bytes_per_sec.max(0.0)
        } else {
            0.0
        };
        match self {
            Self::Bytes => format::bytes(bytes_per_sec.round() as u64),
            Self::Bits => bits(bytes_per_sec * 8.0),
        }
    }

    /// A rate with its `/s`, for prose such as the header.
    pub fn rate(self, bytes_per_sec: f64) -> String {
        format!("{}/s", self.amount(bytes_per_sec))
    }
}

fn bits(n: f64) -> String {
    const UNITS: [&str; 6] = ["bit", "kbit", "Mbit", "Gbit", "Tbit", "Pbit"];
    let rounded = n.round();
    if rounded < 1000.0 {
        return format!("{rounded:.0} bit");
    }
    let mut value = n;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_binary_and_bits_are_decimal() {
        let unit = RateUnit::Bytes;
        assert_eq!(unit.amount(0.0), "0 B");
        assert_eq!(unit.amount(1023.4), "1023 B");
        assert_eq!(unit.amount(1536.0), "1.5 KiB");
        assert_eq!(unit.rate(3.0 * 1024.0 * 1024.0), "3.0 MiB/s");
        let unit = unit.toggled();
        assert_eq!(unit, RateUnit::Bits);
        assert_eq!(unit.amount(0.0), "0 bit");
        assert_eq!(unit.amount(124.9), "999 bit");
        assert_eq!(unit.amount(125.0), "1.0 kbit");
        assert_eq!(unit.amount(1536.0), "12.3 kbit");
        assert_eq!(unit.rate(125_000_000.0), "1.0 Gbit/s");
        assert_eq!(unit.toggled(), RateUnit::Bytes);
    }

    #[test]
    fn nonsense_rates_print_as_zero() {
        assert_eq!(RateUnit::Bytes.amount(f64::NAN), "0 B");
        assert_eq!(RateUnit::Bits.amount(-5.0), "0 bit");
    }
}
