//! The remote HTTPS API's request head parser on any bytes, as the connection reads them.
#![no_main]

use kaipo::daemon::remote::http::{head_end, parse_head, Head, HeadError, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fn check(head: &[u8]) {
    match parse_head(head) {
        Ok(Head {
            method,
            path,
            query: _,
            bearer,
        }) => {
            assert!(head.len() <= MAX_HEAD);
            assert!(!method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(path.starts_with('/') && !path.contains('?') && !path.contains(' '));
            if let Some(token) = bearer {
                assert!(!token.is_empty() && token.trim() == token);
            }
        }
        Err(HeadError::TooLarge) => assert!(head.len() > MAX_HEAD),
        Err(HeadError::Malformed(_)) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // The server parses the bytes up to the blank line once they have arrived.
    if let Some(end) = head_end(data) {
        assert!(end <= data.len() && data[..end].ends_with(b"\r\n\r\n"));
        check(&data[..end]);
    }
    check(data);
});
