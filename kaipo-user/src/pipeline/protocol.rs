//! The protocol analyzer: names the service a connection talks to from its protocol and ports.
//!
//! kaipo never looks into payloads, so a service is a guess from the port. The guess takes the
//! well-known side of the connection (a port in the table below, or any port under 1024): a
//! client talking to 443 and a server answering from 443 are both `https`. When neither side
//! is well known, the remote port is kept as `tcp/<port>` or `udp/<port>`, which still tells
//! apart the peers of an application that uses its own ports.

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

/// The service of a connection: `dns`, `https`, `quic`, `tcp/8086`, `icmp`, ...
///
/// `remote_port` 0 means the remote is unknown (an unconnected socket that talked to several
/// peers); the local port then decides.
pub fn service(proto: u8, local_port: u16, remote_port: u16) -> String {
    let transport = match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_SCTP => "sctp",
        PROTO_ICMP => return "icmp".into(),
        PROTO_ICMPV6 => return "icmpv6".into(),
        other => return format!("ip/{other}"),
    };
    let ports = [remote_port, local_port].into_iter().filter(|&p| p != 0);
    // A named port first: an ephemeral port never falls under 1024, but a server on a named
    // high port (postgres on 5432) may well talk to a client whose port is under 1024.
    if let Some(name) = ports.clone().find_map(|p| lookup(proto, p)) {
        return name.into();
    }
    match ports.clone().find(|&p| p < 1024).or(ports.clone().next()) {
        Some(port) => format!("{transport}/{port}"),
        None => transport.into(),
    }
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
    fn unknown_ports_keep_the_low_side_or_the_remote() {
        assert_eq!(service(PROTO_TCP, 40000, 999), "tcp/999");
        assert_eq!(service(PROTO_TCP, 999, 40000), "tcp/999");
        assert_eq!(service(PROTO_UDP, 40000, 9999), "udp/9999");
        assert_eq!(service(PROTO_UDP, 9999, 40000), "udp/40000");
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
    fn portless_protocols_are_named_by_protocol() {
        assert_eq!(service(PROTO_ICMP, 0, 0), "icmp");
        assert_eq!(service(PROTO_ICMPV6, 0, 0), "icmpv6");
        assert_eq!(service(47, 0, 0), "ip/47");
    }
}
