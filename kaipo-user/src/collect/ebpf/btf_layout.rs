//! Field offsets of kernel structures, from the kernel's own BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The packet path reads one field the BPF socket context does not offer: whether a process
//! holds a TCP socket's lock (`struct sock`'s `sk_lock.owned`). Its place moves between kernel
//! versions and configurations, so it is looked up in the running kernel's type information
//! and handed to the programs at load time. Only what that lookup needs is read here: the type
//! section's records, member lists and names.

use std::{borrow::Cow, fs};

/// Where the running kernel describes its types.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;

// Type kinds (`BTF_KIND_*`), those that carry data after the common record or name a type.
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC: u32 = 12;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
const KIND_MAX: u32 = 19;

/// A parsed type section: where each type's record starts, by type id.
pub struct Layout<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Offsets into `types`; index 0 stands for type id 1 (id 0 is `void`).
    records: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("not BTF: {0}")]
    Format(&'static str),
    #[error("no {0} in the kernel's BTF")]
    Missing(String),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A type's common record: name, kind, member count, kind flag and the size-or-type word.
#[derive(Clone, Copy)]
struct Record {
    name: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
    /// Where its members (or other data) start in the type section.
    data: usize,
}

impl<'a> Layout<'a> {
    pub fn parse(btf: &'a [u8]) -> Result<Self, LayoutError> {
        let bad = LayoutError::Format;
        if u16_at(btf, 0) != Some(MAGIC) {
            return Err(bad("wrong magic number (or another byte order)"));
        }
        let field = |at| {
            u32_at(btf, at)
                .map(|v| v as usize)
                .ok_or(bad("header cut short"))
        };
        let header = field(4)?;
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let section = |off: usize, len: usize| {
            let start = header.checked_add(off)?;
            btf.get(start..start.checked_add(len)?)
        };
        let types = section(type_off, type_len).ok_or(bad("type section out of bounds"))?;
        let strings = section(str_off, str_len).ok_or(bad("string section out of bounds"))?;
        let mut records = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let info = u32_at(types, at + 4).ok_or(bad("type record cut short"))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            if kind == 0 || kind > KIND_MAX {
                return Err(bad("unknown type kind"));
            }
            records.push(at);
            at += 12 + extra_bytes(kind, vlen);
        }
        if at != types.len() {
            return Err(bad("type section ends inside a record"));
        }
        Ok(Self {
            types,
            strings,
            records,
        })
    }

    fn record(&self, id: u32) -> Option<Record> {
        let at = *self.records.get((id as usize).checked_sub(1)?)?;
        let info = u32_at(self.types, at + 4)?;
        Some(Record {
            name: u32_at(self.types, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: u32_at(self.types, at + 8)?,
            data: at + 12,
        })
    }

    fn name(&self, offset: u32) -> Cow<'_, str> {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end])
    }

    /// The id of the struct named `name`; the first with members when several share it (a
    /// forward declaration has none).
    fn struct_named(&self, name: &str) -> Option<u32> {
        (1..=self.records.len() as u32).find(|&id| {
            self.record(id)
                .is_some_and(|r| r.kind == KIND_STRUCT && r.vlen > 0 && self.name(r.name) == name)
        })
    }

    /// The id of the function named `name` (a kernel function's, for kfunc calls).
    fn func_named(&self, name: &str) -> Option<u32> {
        (1..=self.records.len() as u32).find(|&id| {
            self.record(id)
                .is_some_and(|r| r.kind == KIND_FUNC && self.name(r.name) == name)
        })
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Option<Record> {
        for _ in 0..32 {
            let r = self.record(id)?;
            match r.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = r.size_or_type;
                }
                _ => return Some(r),
            }
        }
        None
    }

    /// The bit offset and type of member `name` of the struct or union `of`, looking inside
    /// its anonymous struct and union members too.
    fn member(&self, of: Record, name: &str) -> Option<(u32, u32)> {
        if of.kind != KIND_STRUCT && of.kind != KIND_UNION {
            return None;
        }
        for i in 0..of.vlen {
            let at = of.data + 12 * i;
            let (member_name, ty, offset) = (
                u32_at(self.types, at)?,
                u32_at(self.types, at + 4)?,
                u32_at(self.types, at + 8)?,
            );
            // With the kind flag, the top byte holds a bitfield's width.
            let bits = if of.kind_flag {
                offset & 0x00ff_ffff
            } else {
                offset
            };
            if member_name == 0 {
                if let Some((inner, inner_ty)) = self.resolve(ty).and_then(|r| self.member(r, name))
                {
                    return Some((bits + inner, inner_ty));
                }
            } else if self.name(member_name) == name {
                return Some((bits, ty));
            }
        }
        None
    }

    /// The byte offset of `path` (member names, one level each) inside struct `root`.
    pub fn offset_of(&self, root: &str, path: &[&str]) -> Result<u32, LayoutError> {
        let missing = || LayoutError::Missing(format!("struct {root} member {}", path.join(".")));
        let mut ty = self.struct_named(root).ok_or_else(missing)?;
        let mut bits = 0;
        for name in path {
            let record = self.resolve(ty).ok_or_else(missing)?;
            let (offset, member_ty) = self.member(record, name).ok_or_else(missing)?;
            bits += offset;
            ty = member_ty;
        }
        if bits % 8 != 0 {
            return Err(missing());
        }
        Ok(bits / 8)
    }
}

/// Bytes a record of `kind` with `vlen` items carries after its common 12.
fn extra_bytes(kind: u32, vlen: usize) -> usize {
    match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        _ => 0,
    }
}

/// What the packet path needs from the running kernel's BTF, read and parsed once per process
/// for both lookups.
struct Running {
    sk_lock_owned: Result<u32, String>,
    cookie_read: Result<CookieRead, String>,
}

fn running_kernel() -> &'static Running {
    static FOUND: std::sync::OnceLock<Running> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        let failed = |why: String| Running {
            sk_lock_owned: Err(why.clone()),
            cookie_read: Err(why),
        };
        let bytes = match fs::read(VMLINUX_BTF) {
            Ok(bytes) => bytes,
            Err(err) => return failed(format!("reading {VMLINUX_BTF}: {err}")),
        };
        match Layout::parse(&bytes) {
            Ok(layout) => Running {
                sk_lock_owned: sk_lock_owned_in(&layout)
                    .map_err(|err| format!("reading {VMLINUX_BTF}: {err}")),
                cookie_read: cookie_read_in(&layout).map_err(|err| err.to_string()),
            },
            Err(err) => failed(format!("reading {VMLINUX_BTF}: {err}")),
        }
    })
}

/// [`sk_lock_owned_in`] of the running kernel.
pub fn running_kernel_sk_lock_owned() -> Result<u32, String> {
    running_kernel().sk_lock_owned.clone()
}

/// Where `sk_lock.owned` sits in a `struct tcp_sock`, whose first member is (through
/// `inet_connection_sock` and `inet_sock`) the `struct sock`.
fn sk_lock_owned_in(layout: &Layout) -> Result<u32, LayoutError> {
    let in_tcp = layout.offset_of("tcp_sock", &["inet_conn", "icsk_inet", "sk"])?;
    let in_sock = layout.offset_of("sock", &["sk_lock", "owned"])?;
    Ok(in_tcp + in_sock)
}

/// What the socket programs need to read a socket's cookie straight from the kernel's socket
/// (see `kaipo_common::PLACEHOLDER_RDONLY_CAST`): the ids, in the running kernel's BTF, of the
/// kernel function `bpf_rdonly_cast` and of `struct sock`, and where the cookie lies in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieRead {
    pub rdonly_cast: u32,
    pub sock: u32,
    pub cookie_at: u32,
}

/// [`cookie_read_in`] of the running kernel.
pub fn running_kernel_cookie_read() -> Result<CookieRead, String> {
    running_kernel().cookie_read.clone()
}

/// Looks up [`CookieRead`] in a kernel's BTF. A kernel older than 6.2 has no
/// `bpf_rdonly_cast`.
fn cookie_read_in(layout: &Layout) -> Result<CookieRead, LayoutError> {
    let rdonly_cast = layout.func_named("bpf_rdonly_cast").ok_or_else(|| {
        LayoutError::Missing("kernel function bpf_rdonly_cast (Linux 6.2 and later)".into())
    })?;
    let sock = layout
        .struct_named("sock")
        .ok_or_else(|| LayoutError::Missing("struct sock".into()))?;
    let cookie_at = layout.offset_of("sock", &["__sk_common", "skc_cookie"])?;
    Ok(CookieRead {
        rdonly_cast,
        sock,
        cookie_at,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A small BTF object: `int`, a typedef'd anonymous struct with a bitfield member, and a
    /// struct holding it after an anonymous union.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0lock_t\0owned\0bits\0sock\0a\0sk_lock\0".to_vec();
        let name = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .map(|p| p as u32 + 1)
                .unwrap_or_else(|| panic!("{s} not in the sample's strings"))
        };
        let mut t = Vec::new();
        let mut put = |words: &[u32]| {
            for w in words {
                t.extend_from_slice(&w.to_ne_bytes());
            }
        };
        let info = |kind: u32, vlen: u32, flag: bool| (u32::from(flag) << 31) | (kind << 24) | vlen;
        // 1: int, 4 bytes, 32 bits.
        put(&[name("int"), info(KIND_INT, 0, false), 4, 32]);
        // 2: struct { int bits:3 at bit 4; int owned at bit 32 } (kind flag: bitfields).
        put(&[0, info(KIND_STRUCT, 2, true), 8]);
        put(&[name("bits"), 1, 3 << 24 | 4]);
        put(&[name("owned"), 1, 32]);
        // 3: typedef lock_t -> 2.
        put(&[name("lock_t"), info(KIND_TYPEDEF, 0, false), 2]);
        // 4: union { int a } (anonymous).
        put(&[0, info(KIND_UNION, 1, false), 4]);
        put(&[name("a"), 1, 0]);
        // 5: const lock_t.
        put(&[0, info(KIND_CONST, 0, false), 3]);
        // 6: struct sock { union {a} at 0; const lock_t sk_lock at byte 16 }.
        put(&[name("sock"), info(KIND_STRUCT, 2, false), 24]);
        put(&[0, 4, 0]);
        put(&[name("sk_lock"), 5, 128]);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        out.extend_from_slice(&t);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_a_member_through_typedefs_qualifiers_and_anonymous_members() {
        let btf = sample();
        let layout = Layout::parse(&btf).expect("parse");
        assert_eq!(
            layout.offset_of("sock", &["sk_lock", "owned"]).ok(),
            Some(20)
        );
        assert_eq!(layout.offset_of("sock", &["a"]).ok(), Some(0));
        assert!(layout.offset_of("sock", &["sk_lock", "nothing"]).is_err());
        assert!(layout.offset_of("file", &["f_op"]).is_err());
        // A bitfield off a byte boundary has no byte offset.
        assert!(layout.offset_of("sock", &["sk_lock", "bits"]).is_err());
    }

    #[test]
    fn refuses_what_is_not_btf() {
        assert!(Layout::parse(b"ELF").is_err());
        let mut btf = sample();
        btf.truncate(40);
        assert!(Layout::parse(&btf).is_err());
        let mut btf = sample();
        // A type section length that ends inside a record.
        btf[12..16].copy_from_slice(&13u32.to_ne_bytes());
        assert!(Layout::parse(&btf).is_err());
    }

    /// The running kernel's BTF, where it has one.
    fn kernel_btf() -> Option<Vec<u8>> {
        Path::new(VMLINUX_BTF)
            .exists()
            .then(|| fs::read(VMLINUX_BTF).expect("reading the kernel's BTF"))
    }

    #[test]
    fn the_running_kernel_places_the_lock_owner_inside_the_socket() {
        let Some(bytes) = kernel_btf() else {
            return;
        };
        let layout = Layout::parse(&bytes).expect("the kernel's BTF parses");
        // `sock_common` comes first in every socket: its family at 16 has not moved in years.
        assert_eq!(
            layout.offset_of("sock_common", &["skc_family"]).ok(),
            Some(16)
        );
        assert_eq!(layout.offset_of("sock", &["__sk_common"]).ok(), Some(0));
        // `owned` follows the lock's spinlock, inside `struct sock` and past its common part.
        let owned = sk_lock_owned_in(&layout).expect("offset");
        assert_eq!(running_kernel_sk_lock_owned(), Ok(owned));
        let lock = layout.offset_of("sock", &["sk_lock"]).expect("sk_lock");
        assert!(
            owned > lock && owned < lock + 64,
            "owned at {owned}, lock at {lock}"
        );
    }

    #[test]
    fn a_kernel_without_the_cast_function_is_told_apart() {
        let btf = sample();
        let layout = Layout::parse(&btf).expect("parse");
        let err = cookie_read_in(&layout).expect_err("the sample has no functions");
        assert!(err.to_string().contains("bpf_rdonly_cast"), "{err}");
    }

    #[test]
    fn the_running_kernel_keeps_the_cookie_in_the_common_part_of_the_socket() {
        let Some(bytes) = kernel_btf() else {
            return;
        };
        let layout = Layout::parse(&bytes).expect("the kernel's BTF parses");
        let Ok(found) = cookie_read_in(&layout) else {
            // A kernel before 6.2: nothing more to check.
            assert!(layout.func_named("bpf_rdonly_cast").is_none());
            return;
        };
        let common = layout
            .offset_of("sock_common", &["skc_cookie"])
            .expect("skc_cookie");
        assert_eq!(found.cookie_at, common);
        assert_eq!(found.cookie_at % 8, 0);
        assert_eq!(running_kernel_cookie_read(), Ok(found));
        assert_eq!(layout.struct_named("sock"), Some(found.sock));
        let record = layout
            .record(found.rdonly_cast)
            .expect("the function's record");
        assert_eq!(record.kind, KIND_FUNC);
        assert_eq!(layout.name(record.name), "bpf_rdonly_cast");
    }
}
