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

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::MapData;
use kaipo_common::{FlowSlot, FLOW_SLOT_DIR_MASK, FLOW_SLOT_EMPTY};

use super::error::EbpfCollectError;

pub struct FlowCache {
    base: NonNull<FlowSlot>,
    slots: usize,
    len: usize,
    /// Holds the map's fd; the mapping holds the map itself.
    _map: MapData,
}

// SAFETY: the mapping is read-only memory shared with the kernel, owned by this value alone;
// reading it from any thread is as sound as from the one that made it.
unsafe impl Send for FlowCache {}

impl FlowCache {
    pub fn map(map: MapData, page: usize) -> Result<Self, EbpfCollectError> {
        let fail = |detail: String| EbpfCollectError::Map {
            map: kaipo_common::maps::FLOW_CACHE,
            detail,
        };
        let info = map
            .info()
            .map_err(|e| fail(format!("reading the map's size: {e}")))?;
        if info.value_size() as usize != size_of::<FlowSlot>() {
            return Err(fail(format!(
                "slots of {} bytes where this kaipo expects {}",
                info.value_size(),
                size_of::<FlowSlot>()
            )));
        }
        let slots = info.max_entries() as usize;
        let len = (slots * size_of::<FlowSlot>()).next_multiple_of(page.max(1));
        // SAFETY: a new read-only shared mapping of the map's fd, which the kernel checks; it
        // stays valid until `munmap` in `drop`, whatever becomes of the fd.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(fail(format!(
                "cannot map it into memory: {}",
                std::io::Error::last_os_error()
            )));
        }
        let base = NonNull::new(at.cast::<FlowSlot>())
            .ok_or_else(|| fail("the kernel mapped it at address 0".into()))?;
        Ok(Self {
            base,
            slots,
            len,
            _map: map,
        })
    }

    /// Calls `f` with a copy of every slot that holds a flow, on every CPU.
    pub fn for_each_held(&self, mut f: impl FnMut(&FlowSlot)) {
        for i in 0..self.slots {
            // SAFETY: `i` is below the map's entries, all inside the mapping; the kernel may
            // write the slot meanwhile, so it is read with volatile loads of plain data.
            let slot = unsafe { self.base.as_ptr().add(i) };
            let state = unsafe { std::ptr::read_volatile(&raw const (*slot).state) };
            if state & FLOW_SLOT_DIR_MASK != FLOW_SLOT_EMPTY {
                // SAFETY: as above; every bit pattern is a valid `FlowSlot`.
                f(&unsafe { std::ptr::read_volatile(slot) });
            }
        }
    }
}

impl Drop for FlowCache {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, with its length, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
