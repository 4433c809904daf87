//! The kernel's flow cache (`FLOW_CACHE`), mapped into kaipo's memory and read in place.
//!
//! The cache is one run of slots per CPU in a plain array map made mappable
//! (`BPF_F_MMAPABLE`): CPU `c`'s slots start at `c * slots_per_cpu`. Reading it through the map
//! system calls copied every slot of every CPU through the kernel each interval (16,384 slots
//! per CPU), which was most of an idle kaipo's time; read here, it is a walk over memory that
//! looks at each slot's state and copies only the slots that hold a flow.
//!
//! The kernel writes a slot while it may be read, as it could while the system call copied
//! it: a slot read in the middle of a packet is at most that packet behind.

use aya::maps::MapData;
use kaipo_common::{FlowSlot, FLOW_SLOT_DIR_MASK, FLOW_SLOT_EMPTY};

use super::{error::EbpfCollectError, mapped::Mapped};

pub struct FlowCache {
    slots: Mapped<FlowSlot>,
}

impl FlowCache {
    pub fn map(map: MapData, page: usize) -> Result<Self, EbpfCollectError> {
        Ok(Self {
            slots: Mapped::new(map, kaipo_common::maps::FLOW_CACHE, page, false)?,
        })
    }

    /// Calls `f` with a copy of every slot that holds a flow, on every CPU.
    pub fn for_each_held(&self, mut f: impl FnMut(&FlowSlot)) {
        for i in 0..self.slots.entries() {
            let slot = self.slots.at(i);
            // SAFETY: an element of the mapping; the kernel may write the slot meanwhile, so
            // it is read with volatile loads of plain data.
            let state = unsafe { std::ptr::read_volatile(&raw const (*slot).state) };
            if state & FLOW_SLOT_DIR_MASK != FLOW_SLOT_EMPTY {
                // SAFETY: as above; every bit pattern is a valid `FlowSlot`.
                f(&unsafe { std::ptr::read_volatile(slot) });
            }
        }
    }
}
