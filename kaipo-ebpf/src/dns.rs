//! DNS answers for names: a packet received by a socket whose remote port is 53 is copied,
//! from its IP header on, to the `DNS_EVENTS` ring buffer for userspace to read names from.
//!
//! The check is one load of the program's context (the socket's remote port, which the kernel
//! keeps in the socket) and a compare, so the packets of every other socket pay nothing more.
//! Answers reach the application's own socket whatever the path: from a resolver in another
//! namespace, over loopback from a local stub (127.0.0.53), over UDP or TCP.

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{bpf_get_socket_cookie, bpf_skb_load_bytes},
};
use kaipo_common::{counter, DnsCapture, DNS_CAPTURE_BYTES, DNS_PORT};

use crate::{bump, DNS_EVENTS};

/// `__sk_buff.remote_port` holds the port in network byte order; kernels on little-endian
/// machines hand it over shifted into the upper half (see `bpf_convert_ctx_access` in
/// net/core/filter.c), so both spellings are accepted.
const PORT_LOW: u32 = DNS_PORT.to_be() as u32;
const PORT_HIGH: u32 = PORT_LOW << 16;

#[inline(always)]
pub fn on_ingress(skb: *mut __sk_buff) {
    // SAFETY: reading a field of the program's own context.
    let remote_port = unsafe { (*skb).remote_port };
    if remote_port == PORT_HIGH || remote_port == PORT_LOW {
        // SAFETY: the program's own context; the helper only reads the socket it points to.
        let cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };
        capture(skb, cookie);
    }
}

#[inline(always)]
fn capture(skb: *mut __sk_buff, cookie: u64) {
    let Some(mut entry) = DNS_EVENTS.reserve::<DnsCapture>(0) else {
        bump(counter::DNS_RINGBUF_FULL);
        return;
    };
    // SAFETY: reading a field of the program's own context.
    let len = unsafe { (*skb).len };
    let n = if len as usize > DNS_CAPTURE_BYTES {
        DNS_CAPTURE_BYTES as u32
    } else {
        len
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points to a reserved, exclusively owned record of
    // `size_of::<DnsCapture>()` bytes; `n` is at most the size of its `data`, and the helper
    // checks the range against the packet and writes only into `data`.
    unsafe {
        (*record).cookie = cookie;
        (*record).len = len;
        let loaded =
            n > 0 && bpf_skb_load_bytes(skb.cast(), 0, (&raw mut (*record).data).cast(), n) == 0;
        (*record).captured = if loaded { n } else { 0 };
    }
    entry.submit(0);
}
