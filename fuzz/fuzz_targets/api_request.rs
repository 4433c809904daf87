//! The daemon's JSON request parser (Unix socket and remote API) on any line.
#![no_main]

use kaipo::api::protocol::{parse_request, Request, MAX_LINE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    // The framing refuses longer lines before the parser sees them.
    if line.len() > MAX_LINE {
        return;
    }
    let Ok(request) = parse_request(line) else {
        return;
    };
    if let Request::Query(query) = &request {
        assert!(query.from_ms <= query.to_ms);
    }
    // What a client sends for a request is read back as the same request.
    let again = request.to_line();
    assert!(again.ends_with('\n') && !again[..again.len() - 1].contains('\n'));
    assert_eq!(parse_request(again.trim_end().as_bytes()), Ok(request));
});
