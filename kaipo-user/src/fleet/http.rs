//! Just enough HTTP to ask Prometheus a question: `GET` over plain HTTP/1.0, so the answer
//! comes whole, without chunked encoding, and ends when the server closes the connection.
//! (kaipo carries no TLS stack; put Prometheus behind a local port or a tunnel.)

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use super::FleetError;

/// The longest answer read (a fleet-wide query over many hosts is a few MB).
const MAX_ANSWER: u64 = 256 << 20;

/// Where Prometheus listens: `http://HOST[:PORT][/PREFIX]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (`--web.route-prefix`), often empty.
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<Self, FleetError> {
        let bad = |why: &str| FleetError::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad(
                "https is not supported; reach Prometheus over http (a local port or a tunnel)",
            ));
        } else {
            return Err(bad("expected http://HOST[:PORT][/PATH]"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("user names and passwords in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
            None => 80,
        };
        if port == 0 {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
        if path.contains(['?', '#']) {
            return Err(bad("no query or fragment: give the base URL only"));
        }
        Ok(Self {
            host,
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// `http://host:port/prefix`, for messages.
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}{}", self.host, self.port, self.prefix)
        } else {
            format!("http://{}:{}{}", self.host, self.port, self.prefix)
        }
    }
}

/// Percent-encodes a query parameter's value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET path_and_query`: the status code and the body.
pub async fn get(
    base: &BaseUrl,
    path_and_query: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), FleetError> {
    let io = |source: std::io::Error| FleetError::Io {
        url: base.display(),
        source,
    };
    let exchange = async {
        let mut stream = TcpStream::connect((base.host.as_str(), base.port))
            .await
            .map_err(io)?;
        let host = if base.host.contains(':') {
            format!("[{}]", base.host)
        } else {
            base.host.clone()
        };
        let request = format!(
            "GET {}{path_and_query} HTTP/1.0\r\nHost: {host}:{}\r\nAccept: application/json\r\nUser-Agent: kaipo\r\n\r\n",
            base.prefix, base.port
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await
            .map_err(io)?;
        Ok::<_, FleetError>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FleetError::Timeout {
            url: base.display(),
            secs: timeout.as_secs(),
        })??;
    parse_answer(&answer).ok_or_else(|| FleetError::NotHttp {
        url: base.display(),
    })
}

fn parse_answer(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, answer[end + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why_not() {
        assert_eq!(
            BaseUrl::parse("http://prom.lan:9090/prometheus/").unwrap(),
            BaseUrl {
                host: "prom.lan".into(),
                port: 9090,
                prefix: "/prometheus".into()
            }
        );
        let v6 = BaseUrl::parse("http://[::1]:9091").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9091));
        assert_eq!(v6.display(), "http://[::1]:9091");
        assert_eq!(BaseUrl::parse("http://p").unwrap().port, 80);
        let err = |u: &str| BaseUrl::parse(u).unwrap_err().to_string();
        assert_eq!(
            err("https://p:9090"),
            "https://p:9090: https is not supported; reach Prometheus over http (a local port or a tunnel)"
        );
        assert_eq!(err("p:9090"), "p:9090: expected http://HOST[:PORT][/PATH]");
        assert_eq!(
            err("http://p:99999"),
            "http://p:99999: the port is not a number from 1 to 65535"
        );
        assert_eq!(err("http://:80"), "http://:80: no host");
        assert_eq!(
            err("http://p/api?x=1"),
            "http://p/api?x=1: no query or fragment: give the base URL only"
        );
    }

    #[test]
    fn answers_and_encoding() {
        assert_eq!(
            parse_answer(b"HTTP/1.0 422 Unprocessable\r\nA: b\r\n\r\n{\"x\":1}"),
            Some((422, b"{\"x\":1}".to_vec()))
        );
        assert_eq!(parse_answer(b"garbage"), None);
        assert_eq!(
            encode("sum by (host) (x{a=\"b\"}[5m])"),
            "sum%20by%20%28host%29%20%28x%7Ba%3D%22b%22%7D%5B5m%5D%29"
        );
    }
}
