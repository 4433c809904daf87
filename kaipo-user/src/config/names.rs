//! `[names]`: what a user calls their own ports and networks.
//!
//! ```toml
//! [names]
//! reverse_dns = true
//!
//! [names.services]
//! "tcp/8443" = "admin-api"
//!
//! [names.networks]
//! "10.20.0.0/16" = "office"
//! "2001:db8:5::/48" = "lab"
//! ```
//!
//! A service name replaces kaipo's own name for that protocol and port wherever services are
//! shown and stored. A network names every remote address inside it (the longest prefix wins);
//! reports group by it (`--by network`). `reverse_dns` has the daemon name remotes that no DNS
//! answer named by reverse DNS (off unless set; `kaipo live` does its own, see
//! `--no-reverse-dns`).

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use kaipo_common::{PROTO_TCP, PROTO_UDP};
use serde::{Deserialize, Serialize};

/// Entries per table at most: a name table is for people to write, not a feed.
pub const MAX_NAMES: usize = 10_000;
/// Longest name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The section as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamesConfig {
    /// The daemon looks remotes up by reverse DNS when no DNS answer named them.
    pub reverse_dns: bool,
    /// `"tcp/PORT"` or `"udp/PORT"` -> name.
    pub services: BTreeMap<String, String>,
    /// `"ADDRESS/PREFIX"` (or a bare address) -> name.
    pub networks: BTreeMap<String, String>,
}

/// The names, checked and ready to look up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserNames {
    services: HashMap<(u8, u16), String>,
    networks: Networks,
}

/// Shared by the engine, the store and the dashboard of one process.
pub type SharedNames = Arc<UserNames>;

/// How the daemon's engine names things: what `[names]` says, checked. A reload hands the
/// engine a new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamingSettings {
    pub names: SharedNames,
    /// Fill remotes no DNS answer named from reverse DNS (`names.reverse_dns`).
    pub reverse_dns: bool,
}

impl UserNames {
    /// Checks every entry; the error says which key (`names.services."tcp/x"`) and why.
    pub fn from_config(c: &NamesConfig) -> Result<Self, (String, String)> {
        let mut names = UserNames::default();
        for (table, len) in [
            ("names.services", c.services.len()),
            ("names.networks", c.networks.len()),
        ] {
            if len > MAX_NAMES {
                return Err((
                    table.to_owned(),
                    format!("{len} entries; allowed: at most {MAX_NAMES}"),
                ));
            }
        }
        for (key, name) in &c.services {
            let at = || format!("names.services.\"{key}\"");
            check_name(name).map_err(|m| (at(), m))?;
            let port = parse_service(key).map_err(|m| (at(), m))?;
            names.services.insert(port, name.clone());
        }
        for (key, name) in &c.networks {
            let at = || format!("names.networks.\"{key}\"");
            check_name(name).map_err(|m| (at(), m))?;
            let net = Cidr::parse(key).map_err(|m| (at(), m))?;
            names.networks.0.push((net, name.clone()));
        }
        // Longest prefix first, so the first match is the most specific network.
        names
            .networks
            .0
            .sort_by(|a, b| b.0.prefix.cmp(&a.0.prefix).then(a.0.cmp(&b.0)));
        Ok(names)
    }

    /// The user's name for the service on `port` of `proto` (a kaipo protocol number).
    pub fn service(&self, proto: u8, port: u16) -> Option<&str> {
        self.services.get(&(proto, port)).map(String::as_str)
    }

    /// The name of the most specific network `ip` is in. IPv4-mapped IPv6 addresses are
    /// looked up as IPv4.
    pub fn network(&self, ip: IpAddr) -> Option<&str> {
        self.networks.name_of(ip)
    }

    /// The network of a remote as text (`10.0.0.1`, `2001:db8::1`); empty and unparsable
    /// text names none.
    pub fn network_of_text(&self, addr: &str) -> Option<&str> {
        self.network(addr.parse().ok()?)
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.networks.0.is_empty()
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the name is {} bytes; allowed: at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the name holds a control character".into());
    }
    Ok(())
}

/// `tcp/8443` -> (PROTO_TCP, 8443).
fn parse_service(key: &str) -> Result<(u8, u16), String> {
    let allowed = "allowed: tcp/PORT or udp/PORT, PORT 1 to 65535";
    let (proto, port) = key
        .split_once('/')
        .ok_or_else(|| format!("not a protocol and port; {allowed}"))?;
    let proto = match proto {
        "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        other => return Err(format!("unknown protocol {other:?}; {allowed}")),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((proto, p)),
        _ => Err(format!("bad port {port:?}; {allowed}")),
    }
}

/// An address block: the address with its host bits clear, and the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address; allowed: ADDRESS/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("bad prefix length {p:?}; allowed: 0 to {max}")),
            },
        };
        let net = Cidr {
            addr: mask(addr, prefix),
            prefix,
        };
        if net.addr != addr {
            return Err(format!(
                "{text} has bits set past its prefix; the network is {}/{prefix}",
                net.addr
            ));
        }
        Ok(net)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Named networks, longest prefix first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Networks(Vec<(Cidr, String)>);

impl Networks {
    fn name_of(&self, ip: IpAddr) -> Option<&str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_canonical(),
            v4 => v4,
        };
        self.0
            .iter()
            .find(|(net, _)| net.contains(ip))
            .map(|(_, name)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(services: &[(&str, &str)], networks: &[(&str, &str)]) -> Result<UserNames, String> {
        let map = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
                .collect()
        };
        UserNames::from_config(&NamesConfig {
            services: map(services),
            networks: map(networks),
            ..NamesConfig::default()
        })
        .map_err(|(at, m)| format!("{at}: {m}"))
    }

    #[test]
    fn services_by_protocol_and_port() {
        let n = names(&[("tcp/8443", "admin-api"), ("udp/8443", "telemetry")], &[]).unwrap();
        assert_eq!(n.service(PROTO_TCP, 8443), Some("admin-api"));
        assert_eq!(n.service(PROTO_UDP, 8443), Some("telemetry"));
        assert_eq!(n.service(PROTO_TCP, 443), None);
        for (key, err) in [
            ("8443", "names.services.\"8443\": not a protocol and port"),
            (
                "sctp/1",
                "names.services.\"sctp/1\": unknown protocol \"sctp\"",
            ),
            ("tcp/0", "names.services.\"tcp/0\": bad port \"0\""),
            (
                "tcp/70000",
                "names.services.\"tcp/70000\": bad port \"70000\"",
            ),
        ] {
            let e = names(&[(key, "x")], &[]).unwrap_err();
            assert!(e.starts_with(err), "{e}");
        }
        let e = names(&[("tcp/1", " ")], &[]).unwrap_err();
        assert_eq!(e, "names.services.\"tcp/1\": the name is empty");
        let e = names(&[("tcp/1", "a\nb")], &[]).unwrap_err();
        assert!(e.ends_with("control character"), "{e}");
    }

    #[test]
    fn networks_by_longest_prefix() {
        let n = names(
            &[],
            &[
                ("10.20.0.0/16", "office"),
                ("10.20.5.0/24", "office-lab"),
                ("0.0.0.0/0", "internet"),
                ("192.0.2.7", "gateway"),
                ("fd31::/16", "ula"),
            ],
        )
        .unwrap();
        let at = |s: &str| n.network(s.parse().unwrap());
        assert_eq!(at("10.20.5.9"), Some("office-lab"));
        assert_eq!(at("10.20.6.9"), Some("office"));
        assert_eq!(at("10.21.0.1"), Some("internet"));
        assert_eq!(at("192.0.2.7"), Some("gateway"));
        assert_eq!(at("::ffff:10.20.5.1"), Some("office-lab"));
        assert_eq!(at("fd31:1::1"), Some("ula"));
        assert_eq!(at("2001:db8::1"), None);
        assert_eq!(n.network_of_text("10.20.0.1"), Some("office"));
        assert_eq!(n.network_of_text(""), None);
    }

    #[test]
    fn bad_networks_say_why() {
        for (key, err) in [
            (
                "10.20.1.0/16",
                "has bits set past its prefix; the network is 10.20.0.0/16",
            ),
            ("10.20.0.0/33", "bad prefix length \"33\"; allowed: 0 to 32"),
            ("office", "\"office\" is not an IP address"),
            ("fd31::1/16", "the network is fd31::/16"),
        ] {
            let e = names(&[], &[(key, "x")]).unwrap_err();
            assert!(e.contains(err), "{key}: {e}");
        }
    }
}
