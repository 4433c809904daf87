#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into corpus/<target>/ (run from anywhere).

Frames and DNS answers are laid out field by field as the RFCs and the parsers' unit tests do;
requests and heads are the README's examples; configurations are the file `kaipo config init`
writes (taken from a built `kaipo`, when there is one) and the README's sections. The input
layout of each target is described at the top of its file in fuzz_targets/.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# --- frames -----------------------------------------------------------------------------------
# pcap_frame's LINKTYPES order.
EN10MB, SLL, SLL2, NULL, LOOP, RAW, RAW_OPENBSD, RAW_LINKTYPE, IPV4, IPV6 = range(10)
HOST = bytes([2, 0, 0, 0, 0, 1])
PEER = bytes([2, 0, 0, 0, 0, 2])
V4A, V4B = bytes([10, 213, 250, 2]), bytes([10, 213, 250, 1])
V6A = bytes.fromhex("20010db8000000000000000000000002")
V6B = bytes.fromhex("20010db8000000000000000000000001")


def ipv4(proto, payload, frag=0x4000, options=b""):
    ihl = 5 + len(options) // 4
    total = 4 * ihl + len(payload)
    return struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, proto, 0, V4A, V4B) + options + payload


def ipv6(next_header, payload):
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), next_header, 64, V6A, V6B) + payload


def udp(sport, dport, payload):
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport, dport, payload, flags=0x18):
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 1, 0x50, flags, 0xFFFF, 0, 0) + payload


def ether(ethertype, rest, vlans=()):
    tags = b"".join(struct.pack(">HH", tpid, vid) for tpid, vid in vlans)
    return HOST + PEER + tags + struct.pack(">H", ethertype) + rest


def sll(pkttype, hatype, ethertype, rest):
    return struct.pack(">HHH8sH", pkttype, hatype, 6, PEER + b"\0\0", ethertype) + rest


def sll2(pkttype, hatype, ethertype, rest):
    return struct.pack(">HHIHBB8s", ethertype, 0, 3, hatype, pkttype, 6, PEER + b"\0\0") + rest


def frame(name, linktype, data, wire_len=0):
    write("pcap_frame", name, struct.pack("<BI", linktype, wire_len or len(data)) + data)


def frames():
    u4 = ipv4(17, udp(40000, 53, b"\xab" * 32))
    t4 = ipv4(6, tcp(443, 51000, b"\x17\x03\x03\x00\x10" + b"\xcd" * 16))
    u6 = ipv6(17, udp(5353, 5353, b"\x00" * 12))
    t6 = ipv6(6, tcp(22, 40022, b"SSH-2.0-OpenSSH_9.6\r\n"))
    # IPv6 with a hop-by-hop option header, then a first fragment header, then UDP.
    hop = bytes([44, 0, 1, 4, 0, 0, 0, 0])
    frag = bytes([17, 0, 0, 1, 0, 0, 0, 7])
    ext6 = ipv6(0, hop + frag + udp(4789, 4789, b"\x08" + b"\0" * 15))
    icmp6 = ipv6(58, bytes([128, 0, 0, 0, 0, 1, 0, 1]) + b"ping")
    frame("eth-ipv4-udp", EN10MB, ether(0x0800, u4))
    frame("eth-ipv4-tcp", EN10MB, ether(0x0800, t4))
    frame("eth-ipv4-tcp-snap", EN10MB, ether(0x0800, t4)[:54], wire_len=len(ether(0x0800, t4)))
    frame("eth-ipv4-fragment", EN10MB, ether(0x0800, ipv4(17, b"\0" * 24, frag=0x00B9)))
    frame("eth-ipv4-options", EN10MB, ether(0x0800, ipv4(6, tcp(80, 1234, b""), options=b"\x94\x04\0\0")))
    frame("eth-ipv4-icmp", EN10MB, ether(0x0800, ipv4(1, bytes([8, 0, 0, 0, 0, 1, 0, 1]))))
    frame("eth-ipv6-udp", EN10MB, ether(0x86DD, u6))
    frame("eth-ipv6-tcp", EN10MB, ether(0x86DD, t6))
    frame("eth-ipv6-ext-fragment", EN10MB, ether(0x86DD, ext6))
    frame("eth-ipv6-icmp", EN10MB, ether(0x86DD, icmp6))
    frame("eth-vlan-ipv4-udp", EN10MB, ether(0x0800, u4, vlans=[(0x8100, 42)]))
    frame("eth-qinq-ipv6-tcp", EN10MB, ether(0x86DD, t6, vlans=[(0x88A8, 100), (0x8100, 7)]))
    frame("eth-arp", EN10MB, ether(0x0806, bytes.fromhex("0001080006040001") + PEER + V4B + b"\0" * 6 + V4A))
    frame("sll-out-ipv4-tcp", SLL, sll(4, 1, 0x0800, t4))
    frame("sll-lo-ipv6-udp", SLL, sll(0, 772, 0x86DD, u6))
    frame("sll2-in-vlan-ipv4", SLL2, sll2(0, 1, 0x8100, struct.pack(">HH", 5, 0x0800) + u4))
    frame("null-ipv4", NULL, struct.pack("<I", 2) + u4)
    frame("null-ipv6-bsd", NULL, struct.pack(">I", 30) + t6)
    frame("loop-ipv6", LOOP, struct.pack(">I", 24) + u6)
    frame("raw-ipv4", RAW, t4)
    frame("raw-openbsd-ipv6", RAW_OPENBSD, u6)
    frame("raw-linktype-ipv6", RAW_LINKTYPE, ext6)
    frame("ipv4-tso", IPV4, t4[:2] + b"\0\0" + t4[4:], wire_len=9000)
    frame("ipv6-jumbo", IPV6, t6[:4] + b"\0\0" + t6[6:], wire_len=70000)


# --- DNS answers ------------------------------------------------------------------------------
def name(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".") if l) + b"\0"


def dns(asked, records, rcode=0, qtype=1, compress=False):
    """A response to `asked` with `records`: (owner, type, rdata bytes or a name, ttl). With
    `compress`, owners equal to the asked name point back at the question, as servers do."""
    m = struct.pack(">HHHHHH", 0x1234, 0x8180 | rcode, 1, len(records), 0, 0)
    m += name(asked) + struct.pack(">HH", qtype, 1)
    for owner, kind, rdata, ttl in records:
        m += b"\xc0\x0c" if compress and owner == asked else name(owner)
        data = name(rdata) if kind == 5 else rdata
        m += struct.pack(">HHIH", kind, 1, ttl, len(data)) + data
    return m


def dns_seeds():
    chain = dns("api.example.com", [
        ("api.example.com", 5, "edge.cdn.net", 300),
        ("edge.cdn.net", 5, "e1.cdn.net", 60),
        ("e1.cdn.net", 1, bytes([192, 0, 2, 7]), 600),
        ("e1.cdn.net", 1, bytes([192, 0, 2, 8]), 20),
        ("other.net", 1, bytes([192, 0, 2, 9]), 600),
    ])
    aaaa = dns("db.internal", [("db.internal", 28, bytes.fromhex("fd310001000000000000000000000005"), 120)], qtype=28, compress=True)
    a = dns("Example.ORG.", [("Example.ORG.", 1, bytes([93, 184, 215, 14]), 3600)], compress=True)
    nx = dns("gone.example", [], rcode=3)
    seeds = {
        "udp4-cname-chain": ipv4(17, udp(53, 49152, chain)),
        "udp4-a-compressed": ipv4(17, udp(53, 49153, a)),
        "udp4-nxdomain": ipv4(17, udp(53, 49154, nx)),
        "udp6-aaaa": ipv6(17, udp(53, 49155, aaaa)),
        "tcp6-aaaa": ipv6(6, tcp(53, 40000, struct.pack(">H", len(aaaa)) + aaaa)),
        "tcp4-a": ipv4(6, tcp(53, 40001, struct.pack(">H", len(a)) + a)),
        "tcp4-ack": ipv4(6, tcp(53, 40002, b"", flags=0x10)),
    }
    for key, packet in seeds.items():
        write("dns_answer", key, b"\0" + packet)
    # The same answers, as a whole frame, for the frame parser.
    frame("eth-ipv4-dns-answer", EN10MB, ether(0x0800, seeds["udp4-cname-chain"]))


# --- requests ---------------------------------------------------------------------------------
def requests():
    for key, line in {
        "status": '{"v":1,"op":"status"}',
        "subscribe": '{"v":1,"op":"subscribe"}',
        "query-app": '{"v":1,"op":"query","query":{"from_ms":1796000000000,"to_ms":1796003600000,"by":"app","top":20,"uid":null}}',
        "query-process-uid": '{"v":1,"op":"query","query":{"from_ms":0,"to_ms":9223372036854775807,"by":"process","top":0,"uid":1000}}',
        "query-per-day": '{"v":1,"op":"query","query":{"from_ms":1,"to_ms":2,"by":"remote","top":5,"uid":null,"per":{"period":"day","by_app":true}}}',
        "unknown-op": '{"v":1,"op":"reboot","extra":[1,2.5e3,"\\u00e9",{}]}',
    }.items():
        write("api_request", key, line)
    token = "4f1c0e7a9b2d4f1c0e7a9b2d"
    for key, head in {
        "status": f"GET /v1/status HTTP/1.1\r\nHost: kaipo-host:9443\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nAuthorization: Bearer {token}\r\n\r\n",
        "query": f"GET /v1/query?from_ms=1796000000000&to_ms=1796003600000&by=process&top=10 HTTP/1.1\r\nHost: kaipo-host:9443\r\nAuthorization: Bearer {token}\r\n\r\n",
        "subscribe": f"GET /v1/subscribe HTTP/1.0\r\nauthorization: bearer {token}\r\nAccept: text/event-stream\r\n\r\n",
        "escapes": "GET /v1/query?by=app&x=a%20b+c&%C3%A9=%e2%82%ac HTTP/1.1\r\nHost: h\r\n\r\n",
        "no-token": "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    }.items():
        write("http_head", key, head)


# --- configurations ---------------------------------------------------------------------------
README_SECTIONS = {
    "api": '[api]\nlisten = "0.0.0.0:9443"\ncert_file = "/etc/kaipo/api.crt"\nkey_file = "/etc/kaipo/api.key"\ntokens_file = "/etc/kaipo/api.tokens"\nmax_connections = 16\nrequests_per_minute = 120\n',
    "names": '[names.services]\n"tcp/8443" = "admin-api"\n"udp/4789" = "vxlan"\n\n[names.networks]\n"10.20.0.0/16" = "office"\n"10.20.5.0/24" = "office-lab"\n"2001:db8:5::/48" = "lab"\n',
    "alerts": '''[alerts]
webhook = "http://127.0.0.1:9000/hook"
webhook_timeout = "5s"
syslog = true

[[alerts.rule]]
name = "upload-burst"
kind = "rate"
scope = "app"
target = "rsync"
direction = "tx"
above = 10000000
for = "30s"

[[alerts.rule]]
name = "backup-quota"
kind = "quota"
scope = "interface"
target = "eth0"
quota = 500000000000

[[alerts.rule]]
name = "new-peer"
kind = "new_destination"
target = "postgres"
learn = "1h"

[[alerts.rule]]
name = "unusual"
kind = "anomaly"
score = 6
for = "5m"
''',
    "daemon": '[daemon]\ninterfaces = ["eth0", "wlan0"]\ninterval = "30s"\nlive_interval = "500ms"\nuser = "root"\n\n[storage]\nencryption_key_file = "credential:kaipo-db-key"\n\n[metrics]\nlisten = "127.0.0.1:9542"\ntop_apps = 1000\n\n[client]\nreport_format = "json"\n',
    "bad-key": '[metrics]\ntop_app = 5\n',
}


def configs():
    for key, text in README_SECTIONS.items():
        write("config", key, text)
    kaipo = os.path.join(ROOT, "target", "debug", "kaipo")
    if shutil.which(kaipo):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "kaipo.toml")
            subprocess.run([kaipo, "--config", path, "config", "init"], check=True, capture_output=True)
            with open(path, "rb") as f:
                write("config", "init-template", f.read())
    else:
        print(f"seeds: no {kaipo}; `cargo build` it for the `config init` template seed", file=sys.stderr)


frames()
dns_seeds()
requests()
configs()
