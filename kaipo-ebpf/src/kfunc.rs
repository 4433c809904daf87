//! Kernel functions the programs call, where the loader (aya) cannot link them itself.
//!
//! Each is written here as a call to a helper number no kernel has
//! (`kaipo_common::PLACEHOLDER_RDONLY_CAST`), which userspace rewrites before loading: into the
//! real kernel-function call, or into `r0 = 0` where the running kernel lacks the function, so
//! that callers see a null pointer and take their other path.

use core::ffi::c_void;

use kaipo_common::{PLACEHOLDER_CONST, PLACEHOLDER_RDONLY_CAST};

/// `bpf_rdonly_cast(obj, btf_id)`: `obj` as a read-only pointer to the kernel type `btf_id`,
/// whose fields the program then reads with plain loads (the kernel turns each into a load
/// that cannot fault). The verifier inlines the call as a register move. `btf_id` must be a
/// constant the verifier knows (a read-only global). Null where the kernel lacks the function.
#[inline(always)]
pub fn rdonly_cast(obj: *mut c_void, btf_id: u32) -> *const u8 {
    // SAFETY: the call the loader rewrites (see above); both rewrites leave a pointer or null
    // in r0 and clobber no more than a call does.
    unsafe {
        let call: unsafe extern "C" fn(*mut c_void, u32) -> *const u8 =
            core::mem::transmute(PLACEHOLDER_RDONLY_CAST as usize);
        call(obj, btf_id)
    }
}

/// The load-time constant `WHICH` (one of `kaipo_common::load_const`), which the loader writes
/// into the instruction itself (see `kaipo_common::PLACEHOLDER_CONST`).
#[inline(always)]
pub fn load_const<const WHICH: i32>() -> u32 {
    // SAFETY: the call the loader rewrites into `w0 = value`, which clobbers less than a call.
    unsafe {
        let call: unsafe extern "C" fn() -> u32 =
            core::mem::transmute((PLACEHOLDER_CONST + WHICH) as usize);
        call()
    }
}
