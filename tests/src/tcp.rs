//! What the kernel says a TCP socket sent. A segment the stack sends again (a loss probe when
//! an ack is late, as on a busy machine) crosses the wire twice and counts twice: a test that
//! computes the bytes kaipo must show needs the retransmitted ones too.

use std::{net::TcpStream, os::fd::AsRawFd as _, time::Duration};

use anyhow::{bail, ensure, Context as _};

use crate::child::Spawned;

/// The start of the kernel's `struct tcp_info` (include/uapi/linux/tcp.h) up to the two byte
/// counters wanted here, which libc's own definition stops short of.
#[repr(C)]
#[derive(Default)]
struct TcpInfo {
    /// State, options, window scales and flags: eight single bytes.
    flags: [u8; 8],
    /// `tcpi_rto` to `tcpi_total_retrans`.
    words: [u32; 24],
    /// Pacing rates, bytes acked and received.
    rates_and_bytes: [u64; 4],
    /// `tcpi_segs_out` to `tcpi_data_segs_out`.
    segs: [u32; 6],
    /// Delivery rate, busy, receive-window-limited and send-buffer-limited time.
    times: [u64; 4],
    /// `tcpi_delivered`, `tcpi_delivered_ce`.
    delivered: [u32; 2],
    /// `tcpi_bytes_sent`: payload bytes sent, retransmissions included.
    bytes_sent: u64,
    /// `tcpi_bytes_retrans`: payload bytes sent again.
    bytes_retrans: u64,
}

/// `(sent, retransmitted)` payload bytes of `stream` from its TCP_INFO (Linux 4.19 or later).
/// Read once nothing can be sent again (all acked), it is what crossed the wire.
pub fn payload_sent(stream: &TcpStream) -> anyhow::Result<(u64, u64)> {
    let mut info = TcpInfo::default();
    let mut len = size_of::<TcpInfo>() as libc::socklen_t;
    // SAFETY: a valid socket fd, and a buffer of `len` bytes that outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("TCP_INFO");
    }
    if (len as usize) < size_of::<TcpInfo>() {
        bail!("TCP_INFO returned {len} bytes, too few for the bytes sent (Linux 4.19 or later)");
    }
    Ok((info.bytes_sent, info.bytes_retrans))
}

/// Reads the `sent BYTES RETRANSMITTED` line `kaipo-traffic tcp-send` and `tcp-serve` print
/// for an end that wrote `wrote` bytes, and returns the payload bytes the kernel sent, which
/// must be those plus the retransmitted ones.
pub fn expect_sent(end: &mut Spawned, wrote: u64, timeout: Duration) -> anyhow::Result<u64> {
    let line = end.expect("sent", timeout)?;
    let mut numbers = line.split(' ').map(str::parse::<u64>);
    let (Some(Ok(sent)), Some(Ok(retransmitted)), None) =
        (numbers.next(), numbers.next(), numbers.next())
    else {
        bail!("expected `sent BYTES RETRANSMITTED`, got `sent {line}`");
    };
    check_sent(sent, retransmitted, wrote)?;
    Ok(sent)
}

/// The kernel's count of payload bytes sent must be those written plus those sent again.
pub fn check_sent(sent: u64, retransmitted: u64, wrote: u64) -> anyhow::Result<()> {
    ensure!(
        sent == wrote + retransmitted,
        "the kernel sent {sent} payload bytes with {retransmitted} retransmitted, for {wrote} \
         written"
    );
    Ok(())
}
