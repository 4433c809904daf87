//! Counters that travel together, each defined once with the list of its own fields, so every
//! printer, metric and status line iterates over the fields instead of naming them again.

use serde::{Deserialize, Serialize};

/// Defines a struct of `u64` counters together with its field list, field-wise addition and
/// a sum over all fields. A new counter is one line here and shows up everywhere that
/// iterates over [`Lost::fields`] (or the struct's own `fields`).
macro_rules! counter_set {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            $( $(#[$fmeta])* #[serde(default)] pub $field: u64, )*
        }

        impl $name {
            /// Every field's name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Every field as (name, value), in declaration order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($field), self.$field)),*].into_iter()
            }

            /// Adds `other` field by field (saturating: a counter never wraps to a small value).
            pub fn add(&mut self, other: &Self) {
                $( self.$field = self.$field.saturating_add(other.$field); )*
            }

            /// All fields added up.
            pub fn total(&self) -> u64 {
                self.fields().fold(0u64, |acc, (_, n)| acc.saturating_add(n))
            }

            pub fn is_zero(&self) -> bool {
                *self == Self::default()
            }
        }
    };
}

counter_set! {
    /// What could not be recorded: per interval in an [`crate::model::IntervalRecord`], summed
    /// since start in the daemon's totals. Prometheus uses the field names as the `reason`
    /// label of `kaipo_lost_events_total`.
    pub struct Lost {
        /// Lifecycle events dropped because the ring buffer was full.
        ringbuf_full,
        /// Sockets whose counters found no room in the socket map.
        sock_map_full,
        /// Owners the kernel could not keep in the socket's own storage (reported again on the
        /// socket's next call).
        owner_map_full,
        /// Flow entries that could not be created at all.
        flow_map_full,
        /// Flow entries the kernel evicted to make room for new ones (least recently used
        /// first).
        flow_evictions,
        /// Interface entries that could not be created.
        iface_map_full,
        /// Ring-buffer records kaipo could not read.
        malformed_events,
        /// Frames the packet capture dropped (pcap backend only).
        capture_drops,
        /// DNS answers the kernel could not copy: their ring buffer was full.
        dns_ringbuf_full,
        /// DNS answers that could not be read: truncated, not DNS, cut short by the capture.
        dns_malformed,
    }
}

counter_set! {
    /// Bytes and packets in both directions.
    pub struct Traffic {
        rx_bytes,
        rx_packets,
        tx_bytes,
        tx_packets,
    }
}

impl Traffic {
    /// Bytes in both directions.
    pub fn bytes(&self) -> u64 {
        self.rx_bytes.saturating_add(self.tx_bytes)
    }

    /// `self - earlier`, each field on its own; a field that went down means the counter was
    /// restarted, and then all of it is new.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Traffic {
            rx_bytes: d(self.rx_bytes, earlier.rx_bytes),
            rx_packets: d(self.rx_packets, earlier.rx_packets),
            tx_bytes: d(self.tx_bytes, earlier.tx_bytes),
            tx_packets: d(self.tx_packets, earlier.tx_packets),
        }
    }

    /// The larger of each field.
    pub fn max(&self, other: &Traffic) -> Traffic {
        Traffic {
            rx_bytes: self.rx_bytes.max(other.rx_bytes),
            rx_packets: self.rx_packets.max(other.rx_packets),
            tx_bytes: self.tx_bytes.max(other.tx_bytes),
            tx_packets: self.tx_packets.max(other.tx_packets),
        }
    }
}

counter_set! {
    /// Link-layer bytes on the monitored interfaces that no known process owns, by cause.
    /// Together with the attributed bytes they add up to the interfaces' own byte counts.
    pub struct UnattributedCauses {
        /// Frames passing through the host (routed, bridged or translated) whose ends are not
        /// sockets of this host, e.g. a container's traffic after NAT on the uplink.
        forwarded,
        /// IP traffic to or from one of the host's own addresses that no socket carries: the
        /// kernel's own replies (TCP resets, answers to closed ports), tunnels, and traffic
        /// the host translates for others (a container's connections masqueraded on the
        /// uplink carry the host's address but belong to no socket of the host).
        kernel,
        /// ICMP, ARP and every other frame that is not TCP, UDP or SCTP, and frames too short
        /// or damaged to read as a flow.
        icmp_arp,
        /// Frames of sockets whose owning process kaipo did not learn: kernel-owned sockets,
        /// and sockets opened before kaipo started that neither sent nor received through a
        /// system call while it ran.
        unknown_owner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lost_field_is_listed_added_and_summed() {
        let a = Lost {
            ringbuf_full: 1,
            sock_map_full: 2,
            owner_map_full: 3,
            flow_map_full: 4,
            flow_evictions: 5,
            iface_map_full: 6,
            malformed_events: 7,
            capture_drops: 8,
            dns_ringbuf_full: 9,
            dns_malformed: 10,
        };
        assert_eq!(Lost::NAMES.len(), 10);
        assert_eq!(
            a.fields().map(|(_, n)| n).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        let mut b = a;
        b.add(&a);
        assert_eq!(b.capture_drops, 16);
        assert_eq!(b.total(), 110);
        assert!(Lost::default().is_zero());
        assert_eq!(Lost::NAMES[7], "capture_drops");
    }

    #[test]
    fn traffic_since_treats_a_restarted_counter_as_all_new() {
        let now = Traffic {
            rx_bytes: 10,
            rx_packets: 1,
            tx_bytes: 5,
            tx_packets: 1,
        };
        let then = Traffic {
            rx_bytes: 4,
            rx_packets: 2,
            tx_bytes: 5,
            tx_packets: 0,
        };
        assert_eq!(
            now.since(&then),
            Traffic {
                rx_bytes: 6,
                rx_packets: 1,
                tx_bytes: 0,
                tx_packets: 1
            }
        );
        assert_eq!(now.bytes(), 15);
    }
}
