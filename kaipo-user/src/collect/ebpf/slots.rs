//! Socket counters by slot (`SOCK_SLOTS`, see `kaipo_common::SockSlot`), mapped into kaipo's
//! memory: read in place each interval, and freed here once their socket is done with.
//!
//! The packet path finds a socket's slot through the socket's own storage with one helper
//! call, where the shared map costs a cookie and a hash lookup. A slot outlives its socket, so
//! the last packets of a closed socket are read like any others; userspace frees a slot when
//! it forgets the socket (closed and quiet, or gone from the kernel's tables): cookie back to
//! 0, generation one up, index back on the `SLOT_FREE` stack. A packet of a socket whose slot
//! was freed finds the generation changed and counts in the shared map.

use aya::maps::{MapData, Stack};
use kaipo_common::{SockSlot, SockStats};

use super::{error::EbpfCollectError, mapped::Mapped};
use crate::fasthash::HashMap;

/// Never-used slots in a row after which [`Slots::read`] stops.
const UNUSED_RUN: u32 = 1024;

pub struct Slots {
    slots: Mapped<SockSlot>,
    free: Stack<MapData, u32>,
    /// Where each socket read at the last scan sits.
    at: HashMap<u64, u32>,
}

impl Slots {
    /// Maps `SOCK_SLOTS` and puts every slot on the free stack.
    pub fn open(map: MapData, free: aya::maps::Map, page: usize) -> Result<Self, EbpfCollectError> {
        let slots = Mapped::new(map, kaipo_common::maps::SOCK_SLOTS, page, true)?;
        let free_err = |detail: String| EbpfCollectError::Map {
            map: kaipo_common::maps::SLOT_FREE,
            detail,
        };
        let mut free =
            Stack::<MapData, u32>::try_from(free).map_err(|e| free_err(e.to_string()))?;
        // Last pushed is taken first: pushed from the top down, slot 0 goes first.
        for index in (0..slots.entries() as u32).rev() {
            free.push(index, 0)
                .map_err(|e| free_err(format!("filling the free slots: {e}")))?;
        }
        Ok(Self {
            slots,
            free,
            at: HashMap::default(),
        })
    }

    /// Appends the cookie and counters of every slot that holds a socket.
    ///
    /// The free stack hands slots out lowest first, and a freed slot goes back on top, so the
    /// slots ever used are the lowest ones: the walk stops after [`UNUSED_RUN`] slots in a row
    /// that were never used (generation 0, no cookie) rather than going through all of them.
    /// Slots taken at the same moment on several CPUs can leave a gap, never that long.
    pub fn read(&mut self, out: &mut Vec<(u64, SockStats)>) {
        self.at.clear();
        let mut unused = 0;
        for i in 0..self.slots.entries() as u32 {
            let slot = self.slots.at(i as usize);
            // SAFETY: an element of the mapping; the kernel may write the slot meanwhile, so
            // it is read with volatile loads of plain data.
            let cookie = unsafe { std::ptr::read_volatile(&raw const (*slot).cookie) };
            if cookie == 0 {
                // SAFETY: as above.
                let generation = unsafe { std::ptr::read_volatile(&raw const (*slot).generation) };
                unused = if generation == 0 { unused + 1 } else { 0 };
                if unused >= UNUSED_RUN {
                    break;
                }
                continue;
            }
            unused = 0;
            // SAFETY: as above; every bit pattern is a valid `SockStats`.
            let stats = unsafe { std::ptr::read_volatile(&raw const (*slot).stats) };
            self.at.insert(cookie, i);
            out.push((cookie, stats));
        }
    }

    /// Slots holding a socket at the last read.
    pub fn used(&self) -> usize {
        self.at.len()
    }

    /// Cookies of the sockets in slots at the last read, less those freed since.
    pub fn cookies(&self) -> impl Iterator<Item = u64> + '_ {
        self.at.keys().copied()
    }

    pub fn capacity(&self) -> u32 {
        self.slots.entries() as u32
    }

    /// Frees the slots of `cookies` (those that have one): a later packet of such a socket
    /// counts in the shared map, as a new socket.
    pub fn free(&mut self, cookies: &[u64]) {
        for cookie in cookies {
            let Some(i) = self.at.remove(cookie) else {
                continue;
            };
            let slot = self.slots.at(i as usize);
            // SAFETY: an element of the mapping; the writes are plain stores the kernel reads
            // with volatile loads (the generation before the packet path counts).
            unsafe {
                std::ptr::write_volatile(&raw mut (*slot).cookie, 0);
                let generation = std::ptr::read_volatile(&raw const (*slot).generation);
                std::ptr::write_volatile(&raw mut (*slot).generation, generation.wrapping_add(1));
            }
            if let Err(err) = self.free.push(i, 0) {
                log::warn!("cannot free socket slot {i}: {err}; it stays out of use");
            }
        }
    }
}

/// Joins the sockets read from slots (`from_slots`) with those of the shared map (`shared`).
/// Each packet counts in one place only, so a socket found in both (a socket that counted in
/// the shared map before it had a slot, or that began to listen after it had one) has the sum
/// of the two.
pub fn merge(from_slots: &mut Vec<(u64, SockStats)>, shared: Vec<(u64, SockStats)>) {
    if shared.is_empty() {
        return;
    }
    if from_slots.is_empty() {
        *from_slots = shared;
        return;
    }
    let at: HashMap<u64, usize> = from_slots
        .iter()
        .enumerate()
        .map(|(i, (cookie, _))| (*cookie, i))
        .collect();
    for (cookie, stats) in shared {
        match at.get(&cookie) {
            Some(&i) => {
                let s = &mut from_slots[i].1;
                s.rx_bytes += stats.rx_bytes;
                s.rx_packets += stats.rx_packets;
                s.tx_bytes += stats.tx_bytes;
                s.tx_packets += stats.tx_packets;
                s.lo_rx_bytes += stats.lo_rx_bytes;
                s.lo_rx_packets += stats.lo_rx_packets;
                s.lo_tx_bytes += stats.lo_tx_bytes;
                s.lo_tx_packets += stats.lo_tx_packets;
                s.flags |= stats.flags;
            }
            None => from_slots.push((cookie, stats)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(rx: u64, tx: u64) -> SockStats {
        SockStats {
            rx_bytes: rx,
            rx_packets: 1,
            tx_bytes: tx,
            tx_packets: 1,
            ..SockStats::default()
        }
    }

    #[test]
    fn a_socket_in_both_places_has_the_sum() {
        let mut from_slots = vec![(1, stats(100, 10)), (2, stats(5, 0))];
        let mut listening = stats(40, 4);
        listening.flags = kaipo_common::SOCK_FLAG_SERVER;
        merge(&mut from_slots, vec![(2, listening), (3, stats(7, 7))]);
        from_slots.sort_by_key(|(c, _)| *c);
        let figures: Vec<_> = from_slots
            .iter()
            .map(|(c, s)| (*c, s.rx_bytes, s.tx_bytes, s.rx_packets, s.flags))
            .collect();
        assert_eq!(
            figures,
            vec![
                (1, 100, 10, 1, 0),
                (2, 45, 4, 2, kaipo_common::SOCK_FLAG_SERVER),
                (3, 7, 7, 1, 0)
            ]
        );
    }
}
