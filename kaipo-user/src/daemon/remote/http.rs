//! The little HTTP/1.1 the remote API speaks: one GET request head per connection (no body),
//! bounded in size, parsed without trusting a byte of it.

/// Longest request head kaipo reads (request line and headers).
pub const MAX_HEAD: usize = 8192;

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    /// `name=value` pairs of the query string, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The bearer token of the Authorization header, if any.
    pub bearer: Option<String>,
}

/// Why a head cannot be served; each maps to a status code.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x, or not a well-formed head: 400.
    Malformed(&'static str),
    /// Over [`MAX_HEAD`]: 431.
    TooLarge,
}

/// Where the head ends (just past the blank line), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn decode(part: &str) -> Result<String, HeadError> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(HeadError::Malformed("bad percent escape"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| HeadError::Malformed("query is not UTF-8"))
}

/// Parses a complete head (up to and including the blank line).
pub fn parse_head(head: &[u8]) -> Result<Head, HeadError> {
    if head.len() > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request = lines
        .next()
        .ok_or(HeadError::Malformed("no request line"))?;
    let mut parts = request.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Malformed("not HTTP/1.0 or HTTP/1.1"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("the target must be a path"));
    }
    let (path, query_text) = target.split_once('?').unwrap_or((target, ""));
    let mut query = Vec::new();
    for pair in query_text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        query.push((decode(name)?, decode(value)?));
    }
    let mut bearer = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("a header without a colon"))?;
        if name.eq_ignore_ascii_case("authorization") {
            let value = value.trim();
            let token = value
                .get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .map(|_| value[7..].trim().to_owned());
            bearer = token.filter(|t| !t.is_empty());
        }
    }
    Ok(Head {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        bearer,
    })
}

/// A whole response: status line, headers, body.
pub fn response(code: u16, reason: &str, content_type: &str, body: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\nCache-Control: no-store\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// A JSON error body with `message`, the socket API's error line.
pub fn error(code: u16, reason: &str, message: &str, extra: &str) -> String {
    response(
        code,
        reason,
        "application/json",
        &crate::api::protocol::error_line(message),
        extra,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_with_a_query_and_a_token() {
        let head = b"GET /v1/query?from_ms=1&by=app&x=a%20b+c HTTP/1.1\r\nHost: h\r\n\
                     authorization: Bearer  s3cr3t \r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(
            parse_head(head),
            Ok(Head {
                method: "GET".into(),
                path: "/v1/query".into(),
                query: vec![
                    ("from_ms".into(), "1".into()),
                    ("by".into(), "app".into()),
                    ("x".into(), "a b c".into())
                ],
                bearer: Some("s3cr3t".into()),
            })
        );
    }

    #[test]
    fn refuses_what_is_not_a_plain_request() {
        for bad in [
            &b"GET /v1/status\r\n\r\n"[..],
            b"GET v1 HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET /?a=%zz HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"\xff\xfe HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(bad), Err(HeadError::Malformed(_))),
                "{bad:?}"
            );
        }
        let big = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        let head = parse_head(b"GET / HTTP/1.1\r\nAuthorization: Basic abc\r\n\r\n").unwrap();
        assert_eq!(head.bearer, None);
    }
}
