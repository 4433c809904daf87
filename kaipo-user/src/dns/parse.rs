//! From a DNS answer the kernel captured (the packet from its IP header on, as a DNS client
//! socket received it) to the addresses it gives for the name the application asked for.
//!
//! The message is parsed with `simple-dns`; the IP, UDP and TCP headers around it here. Over
//! TCP a message is prefixed by its length and must be whole in the one segment captured;
//! segments without payload (handshake, acknowledgements) are no answer and no error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kaipo_common::{PROTO_TCP, PROTO_UDP};
use simple_dns::{rdata::RData, Packet, PacketFlag, RCODE};

/// CNAME records followed from the asked name at most.
const MAX_CHAIN: usize = 16;

/// What one answer says: the name the application asked for and the addresses it resolves
/// to, each with the shortest TTL along its chain of CNAMEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Lower case, without the trailing dot.
    pub asked: String,
    pub addrs: Vec<(IpAddr, u32)>,
}

/// Why a captured packet gave nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("not an IPv4 or IPv6 packet with a UDP or TCP header")]
    NotIp,
    #[error("the message is longer than what was captured")]
    Truncated,
    #[error("not a DNS message: {0}")]
    NotDns(String),
}

/// The answer in `packet` (`captured` bytes of a packet of `len` bytes). `Ok(None)` for a
/// packet that is well formed but names nothing: a TCP segment without payload, a query, an
/// error answer, an answer without addresses for the asked name.
pub fn answer_of(packet: &[u8], len: u32) -> Result<Option<Answer>, DnsError> {
    let whole = packet.len() as u64 >= u64::from(len);
    let (proto, payload) = transport_payload(packet)?;
    let message = match proto {
        PROTO_UDP => {
            if !whole {
                return Err(DnsError::Truncated);
            }
            payload
        }
        _ => {
            if payload.is_empty() {
                return Ok(None);
            }
            let [hi, lo, rest @ ..] = payload else {
                return Err(DnsError::Truncated);
            };
            let n = usize::from(u16::from_be_bytes([*hi, *lo]));
            rest.get(..n).ok_or(DnsError::Truncated)?
        }
    };
    let parsed = Packet::parse(message).map_err(|e| DnsError::NotDns(e.to_string()))?;
    if !parsed.has_flags(PacketFlag::RESPONSE) || parsed.rcode() != RCODE::NoError {
        return Ok(None);
    }
    let Some(question) = parsed.questions.first() else {
        return Ok(None);
    };
    let asked = normal(&question.qname.to_string());
    if asked.is_empty() {
        return Ok(None);
    }
    // Names that stand for the asked one, and the shortest TTL of the CNAMEs leading there.
    let mut aliases: Vec<(String, u32)> = vec![(asked.clone(), u32::MAX)];
    for _ in 0..MAX_CHAIN {
        let mut grew = false;
        for rr in &parsed.answers {
            if let RData::CNAME(target) = &rr.rdata {
                let owner = normal(&rr.name.to_string());
                let Some(ttl) = aliases.iter().find(|(n, _)| *n == owner).map(|a| a.1) else {
                    continue;
                };
                let target = normal(&target.0.to_string());
                if !aliases.iter().any(|(n, _)| *n == target) {
                    aliases.push((target, ttl.min(rr.ttl)));
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let mut addrs = Vec::new();
    for rr in &parsed.answers {
        let ip = match &rr.rdata {
            RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
            RData::AAAA(a) => IpAddr::V6(Ipv6Addr::from(a.address)),
            _ => continue,
        };
        let owner = normal(&rr.name.to_string());
        if let Some((_, chain_ttl)) = aliases.iter().find(|(n, _)| *n == owner) {
            addrs.push((ip, rr.ttl.min(*chain_ttl)));
        }
    }
    Ok((!addrs.is_empty()).then_some(Answer { asked, addrs }))
}

fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The protocol and the bytes after the UDP or TCP header.
fn transport_payload(p: &[u8]) -> Result<(u8, &[u8]), DnsError> {
    let (proto, l4) = match p.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 || p.len() < ihl {
                return Err(DnsError::NotIp);
            }
            (p[9], &p[ihl..])
        }
        Some(6) if p.len() >= 40 => (p[6], &p[40..]),
        _ => return Err(DnsError::NotIp),
    };
    match proto {
        PROTO_UDP if l4.len() >= 8 => Ok((proto, &l4[8..])),
        PROTO_TCP if l4.len() >= 20 => {
            let off = usize::from(l4[12] >> 4) * 4;
            if off < 20 || l4.len() < off {
                return Err(DnsError::NotIp);
            }
            Ok((proto, &l4[off..]))
        }
        _ => Err(DnsError::NotIp),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DNS response to `asked` (type A) with `records`: (owner, kind, data, ttl), kind 1 = A
    /// (data 4 bytes), 28 = AAAA (16 bytes), 5 = CNAME (data a name).
    pub fn response(asked: &str, rcode: u8, records: &[(&str, u16, Vec<u8>, u32)]) -> Vec<u8> {
        let name = |n: &str| -> Vec<u8> {
            let mut out = Vec::new();
            for label in n.split('.').filter(|l| !l.is_empty()) {
                out.push(label.len() as u8);
                out.extend_from_slice(label.as_bytes());
            }
            out.push(0);
            out
        };
        let mut m = vec![0x12, 0x34, 0x81, 0x80 | rcode, 0, 1];
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend(name(asked));
        m.extend_from_slice(&[0, 1, 0, 1]);
        for (owner, kind, data, ttl) in records {
            m.extend(name(owner));
            m.extend_from_slice(&kind.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            let data = if *kind == 5 {
                name(std::str::from_utf8(data).unwrap())
            } else {
                data.clone()
            };
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend(data);
        }
        m
    }

    /// `message` in an IPv4 UDP packet from port 53.
    pub fn udp4(message: &[u8]) -> Vec<u8> {
        let total = (28 + message.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, PROTO_UDP, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[10, 231, 9, 1, 10, 231, 9, 2]);
        p.extend_from_slice(&[0, 53, 0xc0, 0x00]);
        p.extend_from_slice(&((8 + message.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(message);
        p
    }

    fn tcp6(payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[PROTO_TCP, 64]);
        p.extend_from_slice(&[0xfd, 0x31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xfd, 0x31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[
            0, 53, 0xc0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff,
        ]);
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn parse(p: &[u8]) -> Result<Option<Answer>, DnsError> {
        answer_of(p, p.len() as u32)
    }

    #[test]
    fn a_cname_chain_names_the_addresses_by_the_asked_name() {
        let m = response(
            "Api.Example.COM.",
            0,
            &[
                ("api.example.com", 5, b"edge.cdn.net".to_vec(), 300),
                ("edge.cdn.net", 5, b"e1.cdn.net".to_vec(), 60),
                ("e1.cdn.net", 1, vec![192, 0, 2, 7], 600),
                ("e1.cdn.net", 1, vec![192, 0, 2, 8], 20),
                // Not on the chain: left out.
                ("other.net", 1, vec![192, 0, 2, 9], 600),
            ],
        );
        let answer = parse(&udp4(&m)).unwrap().unwrap();
        assert_eq!(answer.asked, "api.example.com");
        assert_eq!(
            answer.addrs,
            [
                ("192.0.2.7".parse().unwrap(), 60),
                ("192.0.2.8".parse().unwrap(), 20)
            ]
        );
    }

    #[test]
    fn aaaa_over_tcp_with_its_length_prefix() {
        let mut v6 = vec![0xfd, 0x31, 0, 1];
        v6.extend_from_slice(&[0; 11]);
        v6.push(5);
        let m = response("db.internal", 0, &[("db.internal", 28, v6, 120)]);
        let mut payload = (m.len() as u16).to_be_bytes().to_vec();
        payload.extend(&m);
        let answer = parse(&tcp6(&payload)).unwrap().unwrap();
        assert_eq!(answer.addrs, [("fd31:1::5".parse().unwrap(), 120)]);
        // A pure acknowledgement names nothing and is no error.
        assert_eq!(parse(&tcp6(&[])), Ok(None));
        // The segment holds less than the prefix says.
        let cut = tcp6(&payload[..payload.len() - 3]);
        assert_eq!(parse(&cut), Err(DnsError::Truncated));
    }

    #[test]
    fn errors_queries_and_damage() {
        let nx = response("gone.example", 3, &[]);
        assert_eq!(parse(&udp4(&nx)), Ok(None));
        let mut query = response("a.example", 0, &[("a.example", 1, vec![1, 2, 3, 4], 9)]);
        query[2] &= 0x7f;
        assert_eq!(parse(&udp4(&query)), Ok(None));
        let ok = udp4(&response(
            "a.example",
            0,
            &[("a.example", 1, vec![1, 2, 3, 4], 9)],
        ));
        // Captured short of the packet's length.
        assert_eq!(
            answer_of(&ok[..ok.len() - 4], ok.len() as u32),
            Err(DnsError::Truncated)
        );
        // Garbage after the UDP header, and no IP header at all.
        let mut bad = ok[..28].to_vec();
        bad.extend_from_slice(&[0xff; 13]);
        assert!(matches!(parse(&bad), Err(DnsError::NotDns(_))));
        assert_eq!(parse(&[0x10, 0, 0]), Err(DnsError::NotIp));
        assert_eq!(parse(&[]), Err(DnsError::NotIp));
        assert_eq!(parse(&[0x4f]), Err(DnsError::NotIp));
    }
}
