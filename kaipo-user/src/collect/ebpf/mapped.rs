//! Array maps made mappable (`BPF_F_MMAPABLE`) mapped into kaipo's memory, so that reading
//! every element is a walk over memory instead of a system call per element.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::MapData;

use super::error::EbpfCollectError;

/// A shared mapping of an array map of `T`, unmapped on drop. Holds the map's fd; the mapping
/// holds the map itself.
pub struct Mapped<T> {
    base: NonNull<T>,
    entries: usize,
    len: usize,
    _map: MapData,
}

// SAFETY: the mapping is memory shared with the kernel, owned by this value alone; using it
// from any thread is as sound as from the one that made it.
unsafe impl<T> Send for Mapped<T> {}

impl<T> Mapped<T> {
    /// Maps `map` (named `name` in errors), read-only or `writable`, after checking that its
    /// values are `T`s.
    pub fn new(
        map: MapData,
        name: &'static str,
        page: usize,
        writable: bool,
    ) -> Result<Self, EbpfCollectError> {
        let fail = |detail: String| EbpfCollectError::Map { map: name, detail };
        let info = map
            .info()
            .map_err(|e| fail(format!("reading the map's size: {e}")))?;
        if info.value_size() as usize != size_of::<T>() {
            return Err(fail(format!(
                "elements of {} bytes where this kaipo expects {}",
                info.value_size(),
                size_of::<T>()
            )));
        }
        let entries = info.max_entries() as usize;
        let len = (entries * size_of::<T>()).next_multiple_of(page.max(1));
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new shared mapping of the map's fd, which the kernel checks; it stays valid
        // until `munmap` in `drop`, whatever becomes of the fd.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
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
        let base = NonNull::new(at.cast::<T>())
            .ok_or_else(|| fail("the kernel mapped it at address 0".into()))?;
        Ok(Self {
            base,
            entries,
            len,
            _map: map,
        })
    }

    /// Elements in the map.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Element `i`, which the kernel may be writing: read it through volatile loads. `i` must
    /// be below [`Self::entries`].
    pub fn at(&self, i: usize) -> *mut T {
        debug_assert!(i < self.entries, "element {i} of {}", self.entries);
        // SAFETY: `i` is below the map's entries, all inside the mapping.
        unsafe { self.base.as_ptr().add(i) }
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, with its length, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
