//! Names the service a connection is for from its protocol and its server side's port.
//!
//! kaipo never looks into payloads, so a service is named by the port of the connection's
//! server side: the local port of a server socket (listening, accepted, or an unconnected UDP
//! socket answering many peers), the remote port of a client. A client talking to 443 and a
//! server answering from 443 are both `https`; a UDP server on 9999 is `udp/9999` whatever
//! ephemeral ports its clients use. Where the side is not known, a named port or a port
//! outside the ephemeral range (`net.ipv4.ip_local_port_range`, which clients' ports are
//! taken from) marks the server side.

use kaipo_common::{PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

/// Which transport a table entry applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum On {
    Tcp,
    Udp,
    Both,
}

/// Port, transport and service name. TLS variants of a protocol (imaps, ldaps, smtps, ...)
/// carry the protocol's name: a report by service should put them together.
const SERVICES: &[(u16, On, &str)] = &[
    (20, On::Tcp, "ftp"),
    (21, On::Tcp, "ftp"),
    (22, On::Tcp, "ssh"),
    (23, On::Tcp, "telnet"),
    (25, On::Tcp, "smtp"),
    (53, On::Both, "dns"),
    (67, On::Udp, "dhcp"),
    (68, On::Udp, "dhcp"),
    (69, On::Udp, "tftp"),
    (80, On::Tcp, "http"),
    (88, On::Both, "kerberos"),
    (110, On::Tcp, "pop3"),
    (111, On::Both, "rpcbind"),
    (123, On::Udp, "ntp"),
    (137, On::Udp, "netbios"),
    (138, On::Udp, "netbios"),
    (139, On::Tcp, "netbios"),
    (143, On::Tcp, "imap"),
    (161, On::Udp, "snmp"),
    (162, On::Udp, "snmp"),
    (179, On::Tcp, "bgp"),
    (389, On::Both, "ldap"),
    (443, On::Tcp, "https"),
    // HTTP/3 and other QUIC traffic.
    (443, On::Udp, "quic"),
    (445, On::Tcp, "smb"),
    (465, On::Tcp, "smtp"),
    (500, On::Udp, "ipsec"),
    (514, On::Udp, "syslog"),
    (546, On::Udp, "dhcp"),
    (547, On::Udp, "dhcp"),
    (587, On::Tcp, "smtp"),
    (631, On::Tcp, "ipp"),
    (636, On::Tcp, "ldap"),
    (853, On::Both, "dns"),
    (873, On::Tcp, "rsync"),
    (993, On::Tcp, "imap"),
    (995, On::Tcp, "pop3"),
    (1194, On::Udp, "openvpn"),
    (1900, On::Udp, "ssdp"),
    (2049, On::Both, "nfs"),
    (3306, On::Tcp, "mysql"),
    (3389, On::Both, "rdp"),
    (3478, On::Udp, "stun"),
    (4500, On::Udp, "ipsec"),
    (5060, On::Both, "sip"),
    (5222, On::Tcp, "xmpp"),
    (5353, On::Udp, "mdns"),
    (5355, On::Udp, "llmnr"),
    (5432, On::Tcp, "postgres"),
    (5672, On::Tcp, "amqp"),
    (5900, On::Tcp, "vnc"),
    (6379, On::Tcp, "redis"),
    (6443, On::Tcp, "kubernetes"),
    (8080, On::Tcp, "http"),
    (8443, On::Tcp, "https"),
    (9092, On::Tcp, "kafka"),
    (9200, On::Tcp, "elasticsearch"),
    (11211, On::Tcp, "memcached"),
    (27017, On::Tcp, "mongodb"),
    (51820, On::Udp, "wireguard"),
];

fn lookup(proto: u8, port: u16) -> Option<&'static str> {
    let on = match proto {
        PROTO_TCP => On::Tcp,
        PROTO_UDP => On::Udp,
        _ => return None,
    };
    SERVICES
        .iter()
        .find(|(p, o, _)| *p == port && (*o == on || *o == On::Both))
        .map(|(_, _, name)| *name)
}

/// Which end of a connection is the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerSide {
    Local,
    Remote,
    /// Not known from the socket: decided from the ports.
    #[default]
    Unknown,
}

/// The ports clients are given when they do not pick one, as Linux hands them out by default.
pub const EPHEMERAL_DEFAULT: (u16, u16) = (32768, 60999);

/// The host's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`), else Linux's
/// default.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|w| w.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or(EPHEMERAL_DEFAULT)
}

/// The server side from the ports alone: a named port over an unnamed one, then a port
/// outside the ephemeral range over one inside it, then the lower port.
pub fn side_from_ports(
    proto: u8,
    local_port: u16,
    remote_port: u16,
    ephemeral: (u16, u16),
) -> ServerSide {
    if remote_port == 0 {
        return ServerSide::Local;
    }
    if local_port == 0 {
        return ServerSide::Remote;
    }
    match (lookup(proto, local_port), lookup(proto, remote_port)) {
        (Some(_), None) => return ServerSide::Local,
        (None, Some(_)) => return ServerSide::Remote,
        _ => {}
    }
    let ephemeral = |p: u16| (ephemeral.0..=ephemeral.1).contains(&p);
    match (ephemeral(local_port), ephemeral(remote_port)) {
        (false, true) => ServerSide::Local,
        (true, false) => ServerSide::Remote,
        _ if local_port < remote_port => ServerSide::Local,
        _ => ServerSide::Remote,
    }
}

/// The service of a connection: `dns`, `https`, `quic`, `tcp/8086`, `icmp`, ... named from
/// the server side's port.
pub fn service_of(proto: u8, local_port: u16, remote_port: u16, side: ServerSide) -> String {
    let transport = match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_SCTP => "sctp",
        PROTO_ICMP => return "icmp".into(),
        PROTO_ICMPV6 => return "icmpv6".into(),
        other => return format!("ip/{other}"),
    };
    let side = match side {
        ServerSide::Unknown => side_from_ports(proto, local_port, remote_port, EPHEMERAL_DEFAULT),
        known => known,
    };
    let port = match side {
        ServerSide::Local => local_port,
        _ => remote_port,
    };
    match (port, lookup(proto, port)) {
        (_, Some(name)) => name.into(),
        (0, None) => transport.into(),
        (port, None) => format!("{transport}/{port}"),
    }
}

/// The service of a connection whose server side is not known: see [`side_from_ports`].
#[cfg(test)]
fn service(proto: u8, local_port: u16, remote_port: u16) -> String {
    service_of(proto, local_port, remote_port, ServerSide::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_well_known_side_of_either_direction() {
        let cases = [
            (PROTO_UDP, 40000, 53, "dns"),
            (PROTO_UDP, 53, 40000, "dns"),
            (PROTO_TCP, 53, 40000, "dns"),
            (PROTO_TCP, 51000, 443, "https"),
            (PROTO_TCP, 443, 51000, "https"),
            (PROTO_UDP, 51000, 443, "quic"),
            (PROTO_TCP, 40000, 22, "ssh"),
            (PROTO_UDP, 123, 123, "ntp"),
            (PROTO_TCP, 40000, 587, "smtp"),
            (PROTO_TCP, 40000, 465, "smtp"),
            (PROTO_TCP, 25, 40000, "smtp"),
            (PROTO_TCP, 40000, 993, "imap"),
            (PROTO_TCP, 40000, 995, "pop3"),
            (PROTO_TCP, 40000, 636, "ldap"),
            (PROTO_TCP, 40000, 3306, "mysql"),
            (PROTO_TCP, 5432, 40000, "postgres"),
            (PROTO_TCP, 40000, 6379, "redis"),
            (PROTO_UDP, 5353, 5353, "mdns"),
            (PROTO_UDP, 68, 67, "dhcp"),
            (PROTO_TCP, 40000, 8080, "http"),
            (PROTO_TCP, 40000, 80, "http"),
        ];
        for (proto, local, remote, want) in cases {
            assert_eq!(
                service(proto, local, remote),
                want,
                "{proto} {local}->{remote}"
            );
        }
    }

    #[test]
    fn a_named_port_beats_a_low_unnamed_one() {
        // A client bound to a privileged port (rsh-style) talking to postgres.
        assert_eq!(service(PROTO_TCP, 1000, 5432), "postgres");
        assert_eq!(service(PROTO_TCP, 5432, 1000), "postgres");
    }

    #[test]
    fn unknown_ports_name_the_side_outside_the_ephemeral_range() {
        assert_eq!(service(PROTO_TCP, 40000, 999), "tcp/999");
        assert_eq!(service(PROTO_TCP, 999, 40000), "tcp/999");
        assert_eq!(service(PROTO_UDP, 40000, 9999), "udp/9999");
        // A server on udp/9999 answering a client's ephemeral port is still udp/9999.
        assert_eq!(service(PROTO_UDP, 9999, 37488), "udp/9999");
        assert_eq!(service(PROTO_TCP, 5001, 49748), "tcp/5001");
        assert_eq!(service(PROTO_TCP, 49748, 5001), "tcp/5001");
        // Both outside the range: the lower port.
        assert_eq!(service(PROTO_TCP, 20000, 9000), "tcp/9000");
        assert_eq!(service(PROTO_SCTP, 40000, 3868), "sctp/3868");
        // The table is for TCP and UDP only.
        assert_eq!(service(PROTO_SCTP, 40000, 443), "sctp/443");
    }

    #[test]
    fn an_unknown_remote_leaves_the_local_port() {
        assert_eq!(service(PROTO_UDP, 53, 0), "dns");
        assert_eq!(service(PROTO_UDP, 9999, 0), "udp/9999");
        assert_eq!(service(PROTO_UDP, 0, 0), "udp");
    }

    #[test]
    fn a_known_side_wins_over_the_ports() {
        assert_eq!(
            service_of(PROTO_TCP, 40001, 40000, ServerSide::Local),
            "tcp/40001"
        );
        assert_eq!(
            service_of(PROTO_TCP, 40001, 443, ServerSide::Remote),
            "https"
        );
        assert_eq!(
            service_of(PROTO_TCP, 443, 40001, ServerSide::Local),
            "https"
        );
    }

    #[test]
    fn ephemeral_range_falls_back_to_the_default() {
        let (lo, hi) = ephemeral_range();
        assert!(lo <= hi);
        assert_eq!(
            side_from_ports(PROTO_UDP, 9999, 37488, EPHEMERAL_DEFAULT),
            ServerSide::Local
        );
        assert_eq!(
            side_from_ports(PROTO_UDP, 9999, 37488, (1024, 65535)),
            ServerSide::Local,
            "both ephemeral: the lower port"
        );
    }

    #[test]
    fn portless_protocols_are_named_by_protocol() {
        assert_eq!(service(PROTO_ICMP, 0, 0), "icmp");
        assert_eq!(service(PROTO_ICMPV6, 0, 0), "icmpv6");
        assert_eq!(service(47, 0, 0), "ip/47");
    }
}
