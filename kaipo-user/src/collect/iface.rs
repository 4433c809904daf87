//! Choosing interfaces to monitor and reading the kernel's own interface statistics.

use std::{fs, io, path::Path};

use super::Interface;

const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error("interface '{0}' does not exist here; `ip link` lists the interfaces of this network namespace")]
    NotFound(String),
    #[error("cannot list network interfaces in {path}: {source}")]
    List { path: String, source: io::Error },
}

/// Resolves the names the user gave, or when none were given every interface that is up and is
/// not loopback.
pub fn select(names: &[String]) -> Result<Vec<Interface>, IfaceError> {
    select_in(Path::new("/sys/class/net"), names)
}

pub fn select_in(sys_class_net: &Path, names: &[String]) -> Result<Vec<Interface>, IfaceError> {
    if !names.is_empty() {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let ifindex = read_u32(&sys_class_net.join(name).join("ifindex"))
                .ok_or_else(|| IfaceError::NotFound(name.clone()))?;
            let iface = Interface {
                name: name.clone(),
                ifindex,
            };
            if !out.contains(&iface) {
                out.push(iface);
            }
        }
        return Ok(out);
    }
    let entries = fs::read_dir(sys_class_net).map_err(|source| IfaceError::List {
        path: sys_class_net.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let (Some(ifindex), Some(flags)) =
            (read_u32(&dir.join("ifindex")), read_u32(&dir.join("flags")))
        else {
            continue;
        };
        if flags & IFF_UP != 0 && flags & IFF_LOOPBACK == 0 {
            out.push(Interface { name, ifindex });
        }
    }
    out.sort_by_key(|iface| iface.ifindex);
    Ok(out)
}

/// What should be monitored now: the named interfaces that exist (by their current index),
/// or every interface that is up except loopback.
pub fn wanted(names: &[String]) -> Result<Vec<Interface>, IfaceError> {
    wanted_in(Path::new("/sys/class/net"), names)
}

pub fn wanted_in(sys_class_net: &Path, names: &[String]) -> Result<Vec<Interface>, IfaceError> {
    if names.is_empty() {
        return select_in(sys_class_net, names);
    }
    Ok(names
        .iter()
        .filter_map(|name| {
            let ifindex = read_u32(&sys_class_net.join(name).join("ifindex"))?;
            Some(Interface {
                name: name.clone(),
                ifindex,
            })
        })
        .collect())
}

fn read_u32(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The kernel's own counters for an interface, as `ip -s link` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelIfaceStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

pub fn kernel_stats(name: &str) -> io::Result<KernelIfaceStats> {
    let dir = Path::new("/sys/class/net").join(name).join("statistics");
    let read = |file: &str| -> io::Result<u64> {
        let text = fs::read_to_string(dir.join(file))?;
        text.trim()
            .parse()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("{file}: {err}")))
    };
    Ok(KernelIfaceStats {
        rx_bytes: read("rx_bytes")?,
        rx_packets: read("rx_packets")?,
        tx_bytes: read("tx_bytes")?,
        tx_packets: read("tx_packets")?,
        rx_dropped: read("rx_dropped")?,
        tx_dropped: read("tx_dropped")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_net(dir: &Path, name: &str, ifindex: u32, flags: &str) {
        let d = dir.join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("ifindex"), format!("{ifindex}\n")).unwrap();
        fs::write(d.join("flags"), flags).unwrap();
    }

    #[test]
    fn default_selection_skips_loopback_and_down_interfaces() {
        let dir = std::env::temp_dir().join(format!("kaipo-iface-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fake_net(&dir, "lo", 1, "0x9\n");
        fake_net(&dir, "eth0", 2, "0x1003\n");
        fake_net(&dir, "eth1", 3, "0x1002\n");
        fake_net(&dir, "veth7", 17, "0x1103\n");
        let picked = select_in(&dir, &[]).unwrap();
        assert_eq!(
            picked,
            vec![
                Interface {
                    name: "eth0".into(),
                    ifindex: 2
                },
                Interface {
                    name: "veth7".into(),
                    ifindex: 17
                },
            ]
        );
        let named = select_in(&dir, &["eth1".into(), "eth1".into()]).unwrap();
        assert_eq!(
            named,
            vec![Interface {
                name: "eth1".into(),
                ifindex: 3
            }]
        );
        let err = select_in(&dir, &["nope0".into()]).unwrap_err();
        assert!(err.to_string().contains("'nope0' does not exist"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
