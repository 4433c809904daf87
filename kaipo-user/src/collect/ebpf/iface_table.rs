//! The interface counters of `IFACE_STATS` (see `kaipo_common::IfaceSlot`), mapped into
//! kaipo's memory: slots given to interfaces by writing their ifindex into every CPU's copy,
//! counters read by summing the copies.

use std::os::fd::AsFd as _;

use aya::{
    maps::{Map, MapData},
    Ebpf,
};
use kaipo_common::{IfaceCounters, IfaceSlot, IFACE_SLOTS};

use super::{error::EbpfCollectError, mapped::Mapped, page_size};

const NAME: &str = kaipo_common::maps::IFACE_STATS;

pub struct IfaceTable {
    slots: Mapped<IfaceSlot>,
    /// CPUs with a run of slots.
    cpus: usize,
}

impl IfaceTable {
    /// Maps the table of `ebpf`'s object through a descriptor of its own, so the object keeps
    /// the map for its programs and the table may outlive it or go first.
    pub fn open(ebpf: &Ebpf) -> Result<Self, EbpfCollectError> {
        let fail = |detail: String| EbpfCollectError::Map { map: NAME, detail };
        let Some(Map::Array(map)) = ebpf.map(NAME) else {
            return Err(EbpfCollectError::Missing(NAME));
        };
        let fd = map
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| fail(format!("cannot duplicate its descriptor: {e}")))?;
        let map = MapData::from_fd(fd).map_err(|e| fail(e.to_string()))?;
        let slots = Mapped::new(map, NAME, page_size(), true)?;
        let cpus = slots.entries() / IFACE_SLOTS as usize;
        if cpus == 0 {
            return Err(fail(format!(
                "{} slots, fewer than one CPU's {IFACE_SLOTS}",
                slots.entries()
            )));
        }
        Ok(Self { slots, cpus })
    }

    fn slot(ifindex: u32) -> usize {
        (ifindex & (IFACE_SLOTS - 1)) as usize
    }

    fn at(&self, cpu: usize, slot: usize) -> *mut IfaceSlot {
        self.slots.at(cpu * IFACE_SLOTS as usize + slot)
    }

    /// The ifindex slot `slot` counts for (every CPU's copy carries the same).
    fn holder(&self, slot: usize) -> u32 {
        // SAFETY: an element of the mapping; the programs never write the tag.
        unsafe { std::ptr::read_volatile(&raw const (*self.at(0, slot)).ifindex) }
    }

    /// Gives interface `ifindex` its slot (`ifindex % IFACE_SLOTS`) unless an interface of
    /// `held` (those monitored with a slot) has it, its counters starting from zero; true when
    /// the slot is now the interface's, false when it counts in `IFACE_STATS_HIGH`. Call it
    /// before the interface's programs are attached: it writes counters they would add to.
    pub fn claim(&mut self, ifindex: u32, held: &crate::fasthash::HashSet<u32>) -> bool {
        let slot = Self::slot(ifindex);
        let previous = self.holder(slot);
        if previous != ifindex && previous != 0 && held.contains(&previous) {
            return false;
        }
        for cpu in 0..self.cpus {
            let fresh = IfaceSlot {
                ifindex,
                ..IfaceSlot::default()
            };
            // SAFETY: an element of a writable mapping; no attached program counts in it (see
            // above).
            unsafe { std::ptr::write_volatile(self.at(cpu, slot), fresh) };
        }
        true
    }

    /// Slot `slot`'s counters summed over CPUs.
    fn total(&self, slot: usize) -> IfaceCounters {
        (0..self.cpus).fold(IfaceCounters::default(), |sum, cpu| {
            // SAFETY: an element of the mapping, which the programs may be writing: read
            // through a volatile load, as `FlowCache` reads its slots.
            let copy =
                unsafe { std::ptr::read_volatile(&raw const (*self.at(cpu, slot)).counters) };
            sum.sum(&copy)
        })
    }

    /// The counters of the interface holding `ifindex`'s slot, summed over CPUs; zero when
    /// another interface holds it.
    pub fn read(&self, ifindex: u32) -> IfaceCounters {
        let slot = Self::slot(ifindex);
        if self.holder(slot) != ifindex {
            return IfaceCounters::default();
        }
        self.total(slot)
    }

    /// Every slot with counts in it: the ifindex it carries and its counters summed over CPUs.
    pub fn counted(&self) -> Vec<(u32, IfaceCounters)> {
        (0..IFACE_SLOTS as usize)
            .map(|slot| (self.holder(slot), self.total(slot)))
            .filter(|(_, total)| *total != IfaceCounters::default())
            .collect()
    }
}
