//! Makes the object's kernel-function calls real before aya loads it.
//!
//! aya links helper calls and calls between the object's own functions, not calls of kernel
//! functions (kfuncs). So the eBPF side calls a helper number no kernel has in their place
//! (`kaipo_common::PLACEHOLDER_RDONLY_CAST`), and this rewrites each such instruction: into a
//! call of the kernel function by its id in the running kernel's BTF, or, on a kernel without
//! it, into `r0 = 0`, a null result that sends the program down its other path.
//!
//! The same pass writes the values the per-packet path needs from the running kernel into the
//! instructions that use them (`kaipo_common::PLACEHOLDER_CONST`).

use std::{borrow::Cow, mem::size_of};

use kaipo_common::{load_const, PLACEHOLDER_CONST, PLACEHOLDER_RDONLY_CAST};

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
/// `BPF_ALU | BPF_MOV | BPF_K`: a 32-bit move, which clears the register's upper half.
const MOV32_IMM: u8 = 0xb4;

/// The values of `kaipo_common::load_const`, by index.
pub type Consts = [u32; load_const::COUNT];
/// A call's source register field for a kernel function (`BPF_PSEUDO_KFUNC_CALL`).
const PSEUDO_KFUNC_CALL: u8 = 2;
const SHF_EXECINSTR: u64 = 0x4;

/// The object with every placeholder call rewritten: the casts as `cast` says, the constants
/// into `w0 = consts[i]`; and how many casts there were.
pub fn patch(object: &[u8], cast: Cast, consts: &Consts) -> Result<(Object, usize), String> {
    let mut words = vec![0u64; object.len().div_ceil(size_of::<u64>())];
    // SAFETY: `words` has room for `object.len()` bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), object.len()) };
    bytes.copy_from_slice(object);
    let mut found = 0;
    for range in code_sections(bytes)? {
        for insn in bytes[range].chunks_exact_mut(8) {
            if insn[0] != CALL || insn[1] != 0 || insn[2..4] != [0, 0] {
                continue;
            }
            let imm = i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
            if let Some(value) = imm
                .checked_sub(PLACEHOLDER_CONST)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| consts.get(i))
            {
                let v = value.to_le_bytes();
                insn.copy_from_slice(&[MOV32_IMM, 0, 0, 0, v[0], v[1], v[2], v[3]]);
                continue;
            }
            if imm != PLACEHOLDER_RDONLY_CAST {
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
    fn placeholders_become_the_kernel_function_and_the_constants_and_nothing_else_changes() {
        let before = instructions(OBJECT);
        let consts: Consts = [
            0x0102_0304,
            0x1112_1314,
            0x2122_2324,
            0x3132_3334,
            0x4142_4344,
            0x5152_5354,
            0x6162_6364,
            0x7172_7374,
        ];
        let (object, found) = patch(OBJECT, Cast::Kfunc(64_919), &consts).expect("patch");
        let after = instructions(object.bytes());
        assert_eq!(before.len(), after.len());
        let changed: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
        let casts: Vec<_> = changed
            .iter()
            .filter(|(old, _)| old[4..6] == [0x41, 0x4b])
            .collect();
        // Casts: one in each of the two socket programs for the cookie, one for the socket
        // lock, each a call of the kernel function now.
        assert_eq!(found, casts.len());
        assert!(found >= 2, "{found} casts");
        for (old, new) in &casts {
            assert_eq!(*old, &[0x85, 0, 0, 0, 0x41, 0x4b, 0, 0]);
            assert_eq!(*new, &[0x85, 0x20, 0, 0, 0x97, 0xfd, 0, 0]);
        }
        // The rest are the constants, each now a 32-bit move of its value into r0; every one
        // of them is used somewhere.
        let mut seen = [false; load_const::COUNT];
        for (old, new) in changed.iter().filter(|(old, _)| old[4..6] != [0x41, 0x4b]) {
            assert_eq!(
                (&old[..4], &old[5..]),
                (&[0x85, 0, 0, 0][..], &[0x4b, 0, 0][..])
            );
            assert!(
                (0x50..0x50 + load_const::COUNT as u8).contains(&old[4]),
                "{old:?}"
            );
            let i = usize::from(old[4] - 0x50);
            assert_eq!(new[..4], [0xb4, 0, 0, 0]);
            assert_eq!(new[4..], consts[i].to_le_bytes());
            seen[i] = true;
        }
        assert_eq!(seen, [true; load_const::COUNT]);
        // Nothing outside the code sections moved, and with no cast the calls become `r0 = 0`.
        let (null, found_null) = patch(OBJECT, Cast::Null, &[0; load_const::COUNT]).expect("patch");
        assert_eq!(found_null, found);
        let bytes_differ = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        let in_code: usize = instructions(OBJECT)
            .iter()
            .zip(instructions(null.bytes()).iter())
            .map(|(a, b)| bytes_differ(a, b))
            .sum();
        assert_eq!(bytes_differ(OBJECT, null.bytes()), in_code);
        assert_eq!(OBJECT.len(), null.bytes().len());
        assert!(instructions(null.bytes()).contains(&[0xb7, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn what_is_not_an_object_is_refused() {
        let consts = [0; load_const::COUNT];
        assert!(patch(b"not elf", Cast::Null, &consts).is_err());
        let mut cut = OBJECT[..0x40].to_vec();
        cut[0x3c] = 0xff;
        assert!(patch(&cut, Cast::Null, &consts).is_err());
    }
}
