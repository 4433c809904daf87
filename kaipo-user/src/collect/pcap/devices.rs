//! Which interfaces to capture on, and opening them.

use std::collections::HashSet;

use super::{capture::LocalAddrs, error, sockets, Options, PcapError};
use crate::collect::Interface;

/// How long a capture waits for frames before it checks whether to stop.
const READ_TIMEOUT_MS: i32 = 250;

/// Fails early, with the fix, where the platform lets kaipo tell it lacks the privileges.
pub fn preflight() -> Result<(), PcapError> {
    #[cfg(target_os = "linux")]
    {
        const CAP_NET_RAW: u32 = 13;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root && crate::privilege::effective_caps() & (1 << CAP_NET_RAW) == 0 {
            return Err(PcapError::NotPermitted {
                iface: "any interface".to_owned(),
                detail: "CAP_NET_RAW is not in the effective set".to_owned(),
            });
        }
    }
    Ok(())
}

/// The interfaces to open, with whether each is a loopback device.
pub fn plan(
    opts: &Options,
    devices: &[::pcap::Device],
) -> Result<Vec<(Interface, bool)>, PcapError> {
    let names: Vec<String> = if opts.ifaces.is_empty() {
        default_ifaces(devices)?
    } else {
        let mut seen = HashSet::new();
        opts.ifaces
            .iter()
            .filter(|name| seen.insert(name.as_str()))
            .cloned()
            .collect()
    };
    if names.is_empty() {
        return Err(PcapError::NoInterfaces);
    }
    names
        .into_iter()
        .map(|name| {
            let device =
                devices
                    .iter()
                    .find(|d| d.name == name)
                    .ok_or_else(|| PcapError::NoSuchDevice {
                        known: devices
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        name: name.clone(),
                    })?;
            let loopback = device.flags.is_loopback();
            let ifindex = ifindex_of(&name);
            Ok((Interface { name, ifindex }, loopback))
        })
        .collect()
}

/// What should be captured now, leniently: the named interfaces that exist and are up (libpcap
/// cannot open one that is down), or the default choice; nothing when the list cannot be read.
pub fn wanted(opts: &Options, devices: &[::pcap::Device]) -> Vec<(Interface, bool)> {
    let names: Vec<String> = if opts.ifaces.is_empty() {
        default_ifaces(devices).unwrap_or_default()
    } else {
        opts.ifaces.clone()
    };
    names
        .into_iter()
        .filter_map(|name| {
            let device = devices.iter().find(|d| d.name == name && d.flags.is_up())?;
            let ifindex = ifindex_of(&name);
            let loopback = device.flags.is_loopback();
            Some((Interface { name, ifindex }, loopback))
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn default_ifaces(_: &[::pcap::Device]) -> Result<Vec<String>, PcapError> {
    // The same choice as the eBPF backend: every interface that is up, except loopback.
    Ok(crate::collect::iface::select(&[])?
        .into_iter()
        .map(|i| i.name)
        .collect())
}

#[cfg(not(target_os = "linux"))]
fn default_ifaces(devices: &[::pcap::Device]) -> Result<Vec<String>, PcapError> {
    Ok(devices
        .iter()
        .filter(|d| {
            d.flags.is_up()
                && d.flags.is_running()
                && !d.flags.is_loopback()
                && !d.addresses.is_empty()
        })
        .map(|d| d.name.clone())
        .collect())
}

pub fn open(name: &str, opts: &Options) -> Result<::pcap::Capture<::pcap::Active>, PcapError> {
    let mut capture = ::pcap::Capture::from_device(name)
        .map_err(|err| error::classify_open(name, &err))?
        .promisc(false)
        .snaplen(opts.snaplen)
        .buffer_size(opts.buffer_size)
        .timeout(READ_TIMEOUT_MS)
        .immediate_mode(opts.immediate)
        .open()
        .map_err(|err| error::classify_open(name, &err))?;
    if let Some(filter) = &opts.filter {
        capture
            .filter(filter, true)
            .map_err(|err| PcapError::Filter {
                filter: filter.clone(),
                detail: err.to_string(),
            })?;
    }
    Ok(capture)
}

pub fn local_addrs(devices: &[::pcap::Device]) -> LocalAddrs {
    LocalAddrs::new(
        devices
            .iter()
            .flat_map(|d| &d.addresses)
            .map(|a| sockets::addr_bytes(a.addr).1),
    )
}

#[cfg(unix)]
pub fn ifindex_of(name: &str) -> u32 {
    let Ok(name) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

#[cfg(not(unix))]
pub fn ifindex_of(_: &str) -> u32 {
    0
}

/// The interface's own MAC, which tells sent Ethernet frames from received ones.
#[cfg(target_os = "linux")]
pub fn mac_of(name: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect::<Option<_>>()?;
    let mac: [u8; 6] = bytes.try_into().ok()?;
    // Tunnels and `lo` report all zeros, which every frame's unset address would match.
    (mac != [0; 6]).then_some(mac)
}

#[cfg(not(target_os = "linux"))]
pub fn mac_of(_: &str) -> Option<[u8; 6]> {
    None
}

#[cfg(test)]
mod tests {
    use ::pcap::{Address, Device, DeviceFlags, IfFlags};

    use super::*;

    fn device(name: &str, flags: IfFlags, addr: Option<&str>) -> Device {
        Device {
            name: name.into(),
            desc: None,
            addresses: addr
                .into_iter()
                .map(|a| Address {
                    addr: a.parse().unwrap(),
                    netmask: None,
                    broadcast_addr: None,
                    dst_addr: None,
                })
                .collect(),
            flags: DeviceFlags {
                if_flags: flags,
                ..DeviceFlags::empty()
            },
        }
    }

    #[test]
    fn named_interfaces_are_checked_against_libpcap_list() {
        let devices = [
            device("lo", IfFlags::LOOPBACK | IfFlags::UP, Some("127.0.0.1")),
            device("any", IfFlags::UP, None),
        ];
        let opts = |names: &[&str]| Options {
            ifaces: names.iter().map(|n| n.to_string()).collect(),
            ..Options::default()
        };
        let planned = plan(&opts(&["lo", "any", "lo"]), &devices).unwrap();
        let summary: Vec<_> = planned
            .iter()
            .map(|(i, lo)| (i.name.as_str(), *lo))
            .collect();
        assert_eq!(summary, vec![("lo", true), ("any", false)]);
        assert_eq!(planned[1].0.ifindex, 0, "`any` is no interface of its own");
        let err = plan(&opts(&["eth9"]), &devices).unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface 'eth9' cannot be captured on: it does not exist here; interfaces: lo, any"
        );
        let addrs = local_addrs(&devices);
        assert_eq!(
            addrs,
            LocalAddrs::new([[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
        );
    }
}
