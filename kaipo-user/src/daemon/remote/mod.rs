//! The remote API: the Unix socket's operations over HTTPS (rustls), off unless `[api]
//! listen` is set. Bearer tokens from `[api] tokens_file` each map to a view: everything, or
//! one uid's own processes, exactly as the socket decides for a local caller.
//!
//! - `GET /v1/status`: the socket's `status` answer line.
//! - `GET /v1/query?from_ms=…&to_ms=…&by=app&top=10[&per=day]`: its `query` answer line.
//! - `GET /v1/subscribe`: its snapshots as server-sent events, one `data:` line each.
//!
//! Every connection is bounded: `[api] max_connections` at once (more are closed at accept),
//! 10 s for the TLS handshake and for the request head, an 8 KiB head, one request per
//! connection, and `[api] requests_per_minute` per token (429 with Retry-After beyond).

pub mod http;
pub mod tokens;

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
    time::timeout,
};
use tokio_rustls::TlsAcceptor;

use self::{
    http::{HeadError, MAX_HEAD},
    tokens::{RateLimit, Tokens},
};
use super::server::{self, Shared};
use crate::{
    api::protocol::{ok_line, parse_request, Request},
    config::ApiConfig,
};

const HANDSHAKE: Duration = Duration::from_secs(10);
const HEAD: Duration = Duration::from_secs(10);

/// The listener and everything read from files, prepared while the daemon may still read
/// them and bind any port.
pub struct RemoteApi {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tokens: Tokens,
    limit: RateLimit,
    slots: Arc<Semaphore>,
    pub addr: SocketAddr,
}

fn required<'a>(path: &'a Option<std::path::PathBuf>, key: &str) -> anyhow::Result<&'a Path> {
    path.as_deref().with_context(|| {
        format!("[api] listen is set but api.{key} is not; the remote API needs it")
    })
}

/// Binds and loads what `[api]` names; None when the API is off.
pub async fn prepare(config: &ApiConfig) -> anyhow::Result<Option<RemoteApi>> {
    let Some(listen) = config.listen else {
        return Ok(None);
    };
    let cert_file = required(&config.cert_file, "cert_file")?;
    let key_file = required(&config.key_file, "key_file")?;
    let tokens_file = required(&config.tokens_file, "tokens_file")?;
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("reading the certificate {}: {e}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| anyhow::anyhow!("reading the private key {}: {e}", key_file.display()))?;
    #[expect(
        deprecated,
        reason = "ring builds with a C compiler alone (aws-lc needs CMake); its key exchanges \
                  lack only the post-quantum hybrid"
    )]
    let provider = rustls::crypto::ring::default_provider();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "the certificate {} and key {} do not make a TLS identity",
                cert_file.display(),
                key_file.display()
            )
        })?;
    let tokens = Tokens::load(tokens_file).map_err(|e| anyhow::anyhow!("api.tokens_file {e}"))?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening for the remote API on {listen}"))?;
    let addr = listener.local_addr().context("the remote API's address")?;
    Ok(Some(RemoteApi {
        listener,
        acceptor: TlsAcceptor::from(Arc::new(tls)),
        tokens,
        limit: RateLimit::new(config.requests_per_minute),
        slots: Arc::new(Semaphore::new(config.max_connections)),
        addr,
    }))
}

/// Serves until `stop` turns true.
pub async fn serve(api: RemoteApi, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let api = Arc::new(api);
    loop {
        let accepted = tokio::select! {
            a = api.listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        // Over the limit: closed before any TLS work is spent on it.
        let Ok(slot) = Arc::clone(&api.slots).try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let (api, shared, stop) = (Arc::clone(&api), Arc::clone(&shared), stop.clone());
        tokio::spawn(async move {
            connection(tcp, &api, &shared, stop).await;
            drop(slot);
        });
    }
}

async fn connection(tcp: TcpStream, api: &RemoteApi, shared: &Shared, stop: watch::Receiver<bool>) {
    let Ok(Ok(mut tls)) = timeout(HANDSHAKE, api.acceptor.accept(tcp)).await else {
        return;
    };
    let mut buf = Vec::with_capacity(1024);
    let head = timeout(HEAD, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = http::head_end(&buf) {
                return Ok(end);
            }
            if buf.len() > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(HeadError::Malformed("closed before the head ended")),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let answer = match head {
        Err(_) => http::error(408, "Request Timeout", "no complete request in 10 s", ""),
        Ok(Err(HeadError::TooLarge)) => http::error(
            431,
            "Request Header Fields Too Large",
            &format!("the request head is over {MAX_HEAD} bytes"),
            "",
        ),
        Ok(Err(HeadError::Malformed(why))) => http::error(400, "Bad Request", why, ""),
        Ok(Ok(end)) => match http::parse_head(&buf[..end]) {
            Err(HeadError::TooLarge) => http::error(431, "Request Header Fields Too Large", "", ""),
            Err(HeadError::Malformed(why)) => http::error(400, "Bad Request", why, ""),
            Ok(head) => match answer(head, api, shared).await {
                Answer::Whole(text) => text,
                Answer::Subscribe(only_uid) => {
                    return subscribe(tls, only_uid, shared, stop).await;
                }
            },
        },
    };
    let _ = timeout(shared.limits.write_timeout, async {
        tls.write_all(answer.as_bytes()).await?;
        tls.shutdown().await
    })
    .await;
}

enum Answer {
    Whole(String),
    Subscribe(Option<u32>),
}

fn json(body: String) -> Answer {
    Answer::Whole(http::response(200, "OK", "application/json", &body, ""))
}

async fn answer(head: http::Head, api: &RemoteApi, shared: &Shared) -> Answer {
    let Some((index, scope)) = head.bearer.as_deref().and_then(|t| api.tokens.scope(t)) else {
        return Answer::Whole(http::error(
            401,
            "Unauthorized",
            "a valid token is needed: Authorization: Bearer TOKEN",
            "WWW-Authenticate: Bearer realm=\"kaipo\"\r\n",
        ));
    };
    if let Err(wait) = api.limit.take(index, Instant::now()) {
        let secs = wait.as_secs() + 1;
        return Answer::Whole(http::error(
            429,
            "Too Many Requests",
            &format!("this token's requests per minute are used up; retry in {secs} s"),
            &format!("Retry-After: {secs}\r\n"),
        ));
    }
    if head.method != "GET" {
        return Answer::Whole(http::error(
            405,
            "Method Not Allowed",
            "only GET",
            "Allow: GET\r\n",
        ));
    }
    let only_uid = scope.only_uid();
    let uid = only_uid.unwrap_or(0);
    match head.path.as_str() {
        "/v1/status" => json(ok_line("status", &server::status(shared, uid, only_uid))),
        "/v1/subscribe" => Answer::Subscribe(only_uid),
        "/v1/query" => {
            // The socket's own request, so that both check a query the same way.
            let mut query = serde_json::Map::new();
            for (name, value) in head.query {
                let v = match value.parse::<i64>() {
                    Ok(n) if name != "by" && name != "per" => serde_json::Value::from(n),
                    _ => serde_json::Value::from(value),
                };
                query.insert(name, v);
            }
            let request = serde_json::json!({"v": 1, "op": "query", "query": query});
            match parse_request(request.to_string().as_bytes()) {
                Ok(Request::Query(mut q)) => {
                    if only_uid.is_some() {
                        q.uid = only_uid;
                    }
                    match server::ask_store(shared, q).await {
                        Ok(report) => json(ok_line("report", &report)),
                        Err(message) => {
                            Answer::Whole(http::error(503, "Service Unavailable", &message, ""))
                        }
                    }
                }
                Ok(_) => Answer::Whole(http::error(400, "Bad Request", "not a query", "")),
                Err(message) => Answer::Whole(http::error(400, "Bad Request", &message, "")),
            }
        }
        _ => Answer::Whole(http::error(
            404,
            "Not Found",
            "known: /v1/status, /v1/query, /v1/subscribe",
            "",
        )),
    }
}

/// Server-sent events: one `data:` line per snapshot until the client or the daemon goes.
async fn subscribe(
    mut tls: tokio_rustls::server::TlsStream<TcpStream>,
    only_uid: Option<u32>,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) {
    let start = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                 Connection: close\r\n\r\n";
    let limit = shared.limits.write_timeout;
    if !matches!(
        timeout(limit, tls.write_all(start.as_bytes())).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let _ = tls.flush().await;
    let mut subscriber = shared.snapshots.subscribe();
    // A client that has gone is seen at once by reading, rather than at the next write (which
    // the kernel may still take), so its connection slot is free for the next one.
    let mut unread = [0u8; 256];
    loop {
        let snapshot = tokio::select! {
            next = subscriber.next() => match next {
                Some(s) => s,
                None => return,
            },
            read = tls.read(&mut unread) => match read {
                Ok(0) | Err(_) => return,
                // Nothing is asked of a subscriber after its request: what it sends is ignored.
                Ok(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let line = super::view::snapshot_line(&snapshot, only_uid);
        let event = format!("data: {}\n\n", line.trim_end());
        match timeout(limit, async {
            tls.write_all(event.as_bytes()).await?;
            tls.flush().await
        })
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => return subscriber.abandon(1),
        }
    }
}
