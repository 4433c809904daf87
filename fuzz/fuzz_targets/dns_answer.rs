//! The DNS answer parser on any captured packet (IP header on).
//!
//! Input: one byte of bytes the capture cut off (the packet's length is the captured bytes plus
//! that), then the captured packet.
#![no_main]

use kaipo::dns::parse::answer_of;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, packet)) = data.split_first() else {
        return;
    };
    let len = u32::try_from(packet.len())
        .unwrap_or(u32::MAX)
        .saturating_add(u32::from(cut));
    let Ok(Some(answer)) = answer_of(packet, len) else {
        return;
    };
    assert!(!answer.asked.is_empty());
    assert!(!answer.asked.ends_with('.'));
    assert_eq!(answer.asked, answer.asked.to_ascii_lowercase());
    assert!(!answer.addrs.is_empty());
});
