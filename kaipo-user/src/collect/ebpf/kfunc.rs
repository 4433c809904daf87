//! Makes the object's kernel-function calls real before aya loads it.
//!
//! aya links helper calls and calls between the object's own functions, not calls of kernel
//! functions (kfuncs). So the eBPF side calls a helper number no kernel has in their place
//! (`kaipo_common::PLACEHOLDER_RDONLY_CAST`), and this rewrites each such instruction: into a
//! call of the kernel function by its id in the running kernel's BTF, or, on a kernel without
//! it, into `r0 = 0`, a null result that sends the program down its other path.

use std::{borrow::Cow, mem::size_of};

use kaipo_common::PLACEHOLDER_RDONLY_CAST;

/// What the placeholder calls become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cast {
    /// A call of `bpf_rdonly_cast`, the kernel function with this id in the kernel's BTF.
    Kfunc(u32),
    /// `r0 = 0`.
    Null,
}

/// An object file in memory, aligned for the ELF reader as `include_bytes_aligned!` aligns
/// the embedded one.
pub struct Object {
    words: Vec<u64>,
    len: usize,
}

impl Object {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes; u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `BPF_ALU64 | BPF_MOV | BPF_K`.
const MOV_IMM: u8 = 0xb7;
/// A call's source register field for a kernel function (`BPF_PSEUDO_KFUNC_CALL`).
const PSEUDO_KFUNC_CALL: u8 = 2;
const SHF_EXECINSTR: u64 = 0x4;

/// The object with every placeholder call rewritten as `cast` says, and how many there were.
pub fn patch(object: &[u8], cast: Cast) -> Result<(Object, usize), String> {
    let mut words = vec![0u64; object.len().div_ceil(size_of::<u64>())];
    // SAFETY: `words` has room for `object.len()` bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), object.len()) };
    bytes.copy_from_slice(object);
    let mut found = 0;
    for range in code_sections(bytes)? {
        for insn in bytes[range].chunks_exact_mut(8) {
            if insn[0] != CALL
                || insn[1] != 0
                || insn[2..4] != [0, 0]
                || insn[4..8] != PLACEHOLDER_RDONLY_CAST.to_le_bytes()
            {
                continue;
            }
            let new: [u8; 8] = match cast {
                Cast::Kfunc(id) => {
                    let id = id.to_le_bytes();
                    [
                        CALL,
                        PSEUDO_KFUNC_CALL << 4,
                        0,
                        0,
                        id[0],
                        id[1],
                        id[2],
                        id[3],
                    ]
                }
                Cast::Null => [MOV_IMM, 0, 0, 0, 0, 0, 0, 0],
            };
            insn.copy_from_slice(&new);
            found += 1;
        }
    }
    Ok((
        Object {
            words,
            len: object.len(),
        },
        found,
    ))
}

/// The file ranges of the object's executable sections (a little-endian 64-bit ELF file).
fn code_sections(elf: &[u8]) -> Result<Vec<std::ops::Range<usize>>, String> {
    let bad = |what: &str| Cow::from(format!("not a 64-bit little-endian ELF object: {what}"));
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(bad("header").into());
    }
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let table = u64_at(0x28).ok_or_else(|| bad("section table offset"))? as usize;
    let entry = usize::from(u16_at(0x3a).ok_or_else(|| bad("section entry size"))?);
    let count = usize::from(u16_at(0x3c).ok_or_else(|| bad("section count"))?);
    if entry < 0x28 {
        return Err(bad("section entry size").into());
    }
    let mut out = Vec::new();
    for i in 0..count {
        let at = table + i * entry;
        let (Some(flags), Some(offset), Some(size)) =
            (u64_at(at + 8), u64_at(at + 0x18), u64_at(at + 0x20))
        else {
            return Err(bad("section table cut short").into());
        };
        if flags & SHF_EXECINSTR == 0 || size == 0 {
            continue;
        }
        let (start, len) = (offset as usize, size as usize);
        if start.checked_add(len).is_none_or(|end| end > elf.len()) || len % 8 != 0 {
            return Err(bad("a code section out of bounds").into());
        }
        out.push(start..start + len);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::ebpf::OBJECT;

    /// Every 8-byte instruction of the object's code sections.
    fn instructions(object: &[u8]) -> Vec<[u8; 8]> {
        code_sections(object)
            .expect("sections")
            .into_iter()
            .flat_map(|r| {
                object[r]
                    .chunks_exact(8)
                    .map(|c| c.try_into().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn each_socket_program_reads_the_cookie_through_one_placeholder_and_only_those_change() {
        let before = instructions(OBJECT);
        let (object, found) = patch(OBJECT, Cast::Kfunc(64_919)).expect("patch");
        // One in each of the two socket programs.
        assert_eq!(found, 2);
        let after = instructions(object.bytes());
        assert_eq!(before.len(), after.len());
        let changed: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 2);
        for (old, new) in changed {
            assert_eq!(old, &[0x85, 0, 0, 0, 0x41, 0x4b, 0, 0]);
            assert_eq!(new, &[0x85, 0x20, 0, 0, 0x97, 0xfd, 0, 0]);
        }
        // Nothing outside the code sections moved.
        let (null, found) = patch(OBJECT, Cast::Null).expect("patch");
        assert_eq!(found, 2);
        let differ = OBJECT
            .iter()
            .zip(null.bytes())
            .filter(|(a, b)| a != b)
            .count();
        // Two instructions, of which the opcode and the immediate's two low bytes change.
        assert_eq!(differ, 2 * 3);
        assert!(instructions(null.bytes()).contains(&[0xb7, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn what_is_not_an_object_is_refused() {
        assert!(patch(b"not elf", Cast::Null).is_err());
        let mut cut = OBJECT[..0x40].to_vec();
        cut[0x3c] = 0xff;
        assert!(patch(&cut, Cast::Null).is_err());
    }
}
