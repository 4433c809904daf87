//! Whole-map reads with `BPF_MAP_LOOKUP_BATCH` (and `BPF_MAP_LOOKUP_AND_DELETE_BATCH` for maps
//! that are emptied as they are read).
//!
//! Walking a hash map key by key costs two system calls per entry; at tens of thousands of
//! sockets or flows that is most of kaipo's CPU time. The batch command copies many entries per
//! call. Kernels before 5.6 lack it; callers then fall back to the key-by-key walk.

use std::{
    io,
    mem::{size_of, MaybeUninit},
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
/// Entries asked for per call; a bucket holding more is retried with room for all of it.
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reads every entry of a hash map whose values are `value_stride` bytes each (for per-CPU maps:
/// the value size rounded up to 8, times the number of possible CPUs). Calls `each` with the raw
/// key and value bytes of every entry.
pub fn for_each_raw(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_stride: usize,
    each: impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    walk(BPF_MAP_LOOKUP_BATCH, map, key_size, value_stride, each)
}

/// One batch walk with `command` (a lookup, or a lookup that also deletes what it returns).
fn walk(
    command: libc::c_long,
    map: BorrowedFd<'_>,
    key_size: usize,
    value_stride: usize,
    mut each: impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let mut chunk = CHUNK;
    let mut keys = vec![0u8; chunk * key_size];
    let mut values = vec![0u8; chunk * value_stride];
    // Hash maps use a bucket index as the position token.
    let mut position: u32 = 0;
    let mut next: u32 = 0;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                (&raw const position) as u64
            },
            out_batch: (&raw mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix for this command; the key and value
        // buffers hold `count` entries each and outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                command,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        let err = (ret < 0).then(io::Error::last_os_error);
        let filled = attr.count as usize;
        if err.as_ref().and_then(io::Error::raw_os_error) == Some(libc::ENOSPC) {
            // One bucket holds more entries than fit; the kernel says how many.
            chunk = (chunk * 2).max(filled);
            keys.resize(chunk * key_size, 0);
            values.resize(chunk * value_stride, 0);
            continue;
        }
        for i in 0..filled.min(chunk) {
            each(
                &keys[i * key_size..(i + 1) * key_size],
                &values[i * value_stride..(i + 1) * value_stride],
            );
        }
        match err {
            None => {}
            // The walk reached the end.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Some(e) => return Err(e),
        }
        position = next;
        first = false;
    }
}

/// Copies plain-old-data out of map bytes.
pub fn pod_from<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    let mut out = MaybeUninit::<T>::uninit();
    // SAFETY: `T: Pod` accepts any bit pattern, and `bytes` holds at least `size_of::<T>()`
    // bytes, all of which are copied into `out` before it is read.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().cast(), size_of::<T>());
        Some(out.assume_init())
    }
}

/// Every entry of a hash map with plain values.
pub fn read_all<K: Pod, V: Pod>(map: BorrowedFd<'_>, out: &mut Vec<(K, V)>) -> io::Result<()> {
    for_each_raw(map, size_of::<K>(), size_of::<V>(), |k, v| {
        if let (Some(k), Some(v)) = (pod_from(k), pod_from(v)) {
            out.push((k, v));
        }
    })
}

/// Every entry of a hash map with plain values, each deleted as it is read: an entry the
/// kernel writes after the read of its bucket stays for the next call.
pub fn take_all<K: Pod, V: Pod>(map: BorrowedFd<'_>, out: &mut Vec<(K, V)>) -> io::Result<()> {
    walk(
        BPF_MAP_LOOKUP_AND_DELETE_BATCH,
        map,
        size_of::<K>(),
        size_of::<V>(),
        |k, v| {
            if let (Some(k), Some(v)) = (pod_from(k), pod_from(v)) {
                out.push((k, v));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_pod_only_when_long_enough() {
        let bytes = 0x0102_0304_0506_0708u64.to_ne_bytes();
        assert_eq!(pod_from::<u64>(&bytes), Some(0x0102_0304_0506_0708));
        assert_eq!(
            pod_from::<u32>(&bytes[..4]),
            Some(u32::from_ne_bytes([8, 7, 6, 5]))
        );
        assert_eq!(pod_from::<u64>(&bytes[..7]), None);
    }
}
