//! Finding the cgroup v2 hierarchy the socket programs attach to, in any mount namespace.
//!
//! `ip netns exec` remounts `/sys` for the command it runs, and a container may have no
//! `/sys/fs/cgroup` at all; cgroup v2 is still there in the kernel. Where no whole hierarchy is
//! mounted, kaipo mounts one itself, in a mount namespace of its own made by a short-lived
//! thread, and keeps only a descriptor of its root: nothing shows in anyone else's mount table,
//! and the mount goes away with the descriptor.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::EbpfCollectError;

/// The root of the cgroup v2 hierarchy, opened, and where it was found.
pub struct Cgroup2 {
    pub dir: fs::File,
    /// The mount point, or a note that kaipo mounted it privately.
    pub origin: String,
}

/// The mount point of a whole cgroup v2 hierarchy in this mount namespace, preferring the
/// hybrid layout's `/sys/fs/cgroup/unified` and the unified layout's `/sys/fs/cgroup`. A bind
/// mount of a part of the hierarchy (a container's view of its own cgroup) does not count:
/// programs attached there would see only that part's sockets.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup2_root_in(&mountinfo)
}

pub fn cgroup2_root_in(mountinfo: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            // Fields: id parent major:minor root mount-point options ... - fstype source ...
            let (left, right) = line.split_once(" - ")?;
            let mut fields = left.split_whitespace();
            let root = fields.nth(3)?;
            let point = fields.next()?;
            (right.split_whitespace().next()? == "cgroup2" && root == "/")
                .then(|| PathBuf::from(point))
        })
        .collect();
    found.sort_by_key(|p| {
        if p == Path::new("/sys/fs/cgroup/unified") {
            0
        } else if p == Path::new("/sys/fs/cgroup") {
            1
        } else {
            2
        }
    });
    found.into_iter().next()
}

/// Opens the cgroup v2 root: the mounted one, else one mounted privately.
pub fn open_cgroup2() -> Result<Cgroup2, EbpfCollectError> {
    if let Some(path) = cgroup2_root() {
        let dir = fs::File::open(&path).map_err(|source| EbpfCollectError::CgroupOpen {
            path: path.display().to_string(),
            source,
        })?;
        return Ok(Cgroup2 {
            dir,
            origin: format!("mounted at {}", path.display()),
        });
    }
    let dir = mount_privately().map_err(|err| EbpfCollectError::NoCgroup2(err.to_string()))?;
    Ok(Cgroup2 {
        dir,
        origin: "mounted privately by kaipo (none was mounted here)".into(),
    })
}

/// Mounts cgroup v2 in a new mount namespace that only a helper thread enters, opens its root
/// and returns the descriptor. The thread shares this process's descriptor table, so the
/// descriptor outlives the thread and its namespace.
fn mount_privately() -> io::Result<fs::File> {
    let point = std::env::temp_dir().join(format!("kaipo-cgroup2-{}", std::process::id()));
    fs::create_dir_all(&point)?;
    let for_thread = point.clone();
    let opened = std::thread::spawn(move || -> io::Result<fs::File> {
        // SAFETY: unshare only changes this thread's own namespaces and filesystem context.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let root = c"/";
        // Nothing mounted from here on may reach the namespace the thread came from.
        // SAFETY: valid NUL-terminated strings; null data is allowed for these flags.
        if unsafe {
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let target = CString::new(for_thread.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        if unsafe {
            libc::mount(
                c"cgroup2".as_ptr(),
                target.as_ptr(),
                c"cgroup2".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        fs::File::open(&for_thread)
    })
    .join()
    .map_err(|_| io::Error::other("the mount thread failed"));
    // The folder was only a mount point inside the thread's namespace.
    let _ = fs::remove_dir(&point);
    opened?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_whole_hierarchy_and_skips_a_bound_part() {
        let hybrid = "25 24 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs ro\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_root_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_root_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cgroup2_root_in("1 0 0:1 / / rw - ext4 /dev/vda rw\n"), None);
        // A container's own cgroup bound in: only part of the hierarchy.
        let container =
            "40 30 0:26 /system.slice/docker-1.scope /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root_in(container), None);
    }
}
