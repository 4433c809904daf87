//! Who is calling: the peer's credentials as the kernel recorded them when it connected
//! (SO_PEERCRED, SO_PEERGROUPS), so nothing a client says about itself is trusted.
//!
//! Root and members of group `kaipo` see everything; anyone else sees only their own processes.
//! Membership is read from the caller's credentials (primary and supplementary groups), as
//! file permissions would be: a user added to the group gains access from their next login.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, RawFd},
};

use tokio::net::UnixStream;

/// The group whose members see everything.
pub const GROUP: &str = "kaipo";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups (empty when the kernel cannot say).
    pub groups: Vec<u32>,
}

impl Caller {
    /// Root, or in the privileged group by primary or supplementary membership.
    pub fn privileged(&self, group: Option<u32>) -> bool {
        self.uid == 0 || group.is_some_and(|g| self.gid == g || self.groups.contains(&g))
    }

    /// The uid whose processes this caller is limited to, or None for everything.
    pub fn only_uid(&self, group: Option<u32>) -> Option<u32> {
        (!self.privileged(group)).then_some(self.uid)
    }
}

/// The credentials of the process at the other end of `stream`.
pub fn peer(stream: &UnixStream) -> io::Result<Caller> {
    let cred = stream.peer_cred()?;
    let groups = peer_groups(stream.as_raw_fd()).unwrap_or_else(|err| {
        log::debug!("SO_PEERGROUPS: {err}; only the primary group counts");
        Vec::new()
    });
    Ok(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        groups,
    })
}

/// SO_PEERGROUPS from asm-generic; the architectures with their own socket.h number it
/// differently and fall back to the primary group, as macOS does (it has no SO_PEERGROUPS).
#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    )
))]
const SO_PEERGROUPS: libc::c_int = 59;

#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    )
))]
fn peer_groups(fd: RawFd) -> io::Result<Vec<u32>> {
    // NGROUPS_MAX is 65536; start small and grow to what the kernel asks for.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` has room for `len` bytes, and the kernel writes at most that many
        // and stores the size it needs in `len`.
        let ret = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / size_of::<libc::gid_t>();
        if ret == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    )
)))]
fn peer_groups(_fd: RawFd) -> io::Result<Vec<u32>> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The id of group `name`, None when there is no such group. Read on every connection, so a
/// group created while the daemon runs counts at once.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    crate::platform::with_name_buffer(|buf| {
        // SAFETY: an all-zero `group` is a valid value to be overwritten.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and `buf` has `buf.len()` bytes for the
        // strings getgrnam_r stores; only the gid is read from the result, before either
        // changes again.
        let ret = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut group,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        (ret, (!found.is_null()).then_some(group.gr_gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_group_members_see_everything() {
        let caller = |uid, gid, groups: &[u32]| Caller {
            uid,
            gid,
            pid: None,
            groups: groups.to_vec(),
        };
        assert!(caller(0, 0, &[]).privileged(None));
        assert_eq!(caller(1000, 1000, &[]).only_uid(None), Some(1000));
        assert!(caller(1000, 1000, &[27, 990]).privileged(Some(990)));
        assert!(caller(1000, 990, &[]).privileged(Some(990)));
        assert_eq!(caller(1000, 1000, &[27]).only_uid(Some(990)), Some(1000));
    }

    #[tokio::test]
    async fn reads_the_peers_credentials() {
        let (a, _b) = UnixStream::pair().unwrap();
        let me = peer(&a).unwrap();
        // SAFETY: these getters have no preconditions.
        let (uid, gid, pid) = unsafe { (libc::getuid(), libc::getgid(), libc::getpid()) };
        assert_eq!((me.uid, me.gid, me.pid), (uid, gid, Some(pid)));
        // SAFETY: getgroups with size 0 only returns the count.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        assert_eq!(me.groups.len(), n as usize);
    }

    #[test]
    fn looks_up_groups_by_name() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("kaipo-no-such-group").unwrap(), None);
    }
}
