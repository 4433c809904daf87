//! Webhook delivery: a minimal HTTP/1.1 client (plain `http://` only: no TLS) on its own task
//! behind a bounded queue, so that an endpoint that is slow, down or hanging never holds up
//! the pipeline. A full queue drops the notification and counts it.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::mpsc,
};

/// Notifications that may wait for delivery.
pub const QUEUE: usize = 64;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, as connected to and sent in `Host`.
    pub authority: String,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "'{url}' is not supported; allowed: http://HOST[:PORT]/PATH (plain HTTP, no TLS)"
            )
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!(
                "'{url}' has no host; allowed: http://HOST[:PORT]/PATH"
            ));
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']');
        Ok(Endpoint {
            authority: if has_port {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            },
            path: path.to_owned(),
        })
    }
}

/// Delivery counters, shown with the daemon's status.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// POSTs `body`; Ok on any 2xx answer.
pub async fn post(endpoint: &Endpoint, body: &str, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(&endpoint.authority)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kaipo/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            endpoint.path,
            endpoint.authority,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // The status line is all that matters; read until it is whole.
        let mut head = Vec::new();
        let mut chunk = [0u8; 256];
        while !head.contains(&b'\n') {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 || head.len() > 4096 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let status = line.split_whitespace().nth(1).unwrap_or("");
        if status.starts_with('2') {
            Ok(())
        } else {
            Err(format!(
                "answered {}",
                line.lines().next().unwrap_or("nothing")
            ))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("no answer in {timeout:?}"))?
}

/// The sending side of the delivery task.
#[derive(Clone)]
pub struct Webhook {
    tx: mpsc::Sender<String>,
    pub stats: Arc<WebhookStats>,
}

impl Webhook {
    /// Starts the delivery task on the current runtime.
    pub fn spawn(endpoint: Endpoint, timeout: Duration, retries: u32) -> Webhook {
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let stats = Arc::new(WebhookStats::default());
        let task_stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Some(body) = rx.recv().await {
                let mut backoff = FIRST_BACKOFF;
                let mut attempt = 0;
                loop {
                    match post(&endpoint, &body, timeout).await {
                        Ok(()) => {
                            task_stats.delivered.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) if attempt >= retries => {
                            log::warn!(
                                "webhook {}{}: {e}; notification dropped",
                                endpoint.authority,
                                endpoint.path
                            );
                            task_stats.failed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            log::info!(
                                "webhook {}: {e}; retrying in {backoff:?}",
                                endpoint.authority
                            );
                            tokio::time::sleep(backoff).await;
                            backoff *= 2;
                            attempt += 1;
                        }
                    }
                }
            }
        });
        Webhook { tx, stats }
    }

    /// Never waits.
    pub fn send(&self, body: String) {
        if self.tx.try_send(body).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_http_only() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8080/hook"),
            Ok(Endpoint {
                authority: "127.0.0.1:8080".into(),
                path: "/hook".into()
            })
        );
        assert_eq!(
            Endpoint::parse("http://alerts.example"),
            Ok(Endpoint {
                authority: "alerts.example:80".into(),
                path: "/".into()
            })
        );
        assert!(Endpoint::parse("https://x/")
            .unwrap_err()
            .contains("plain HTTP"));
        assert!(Endpoint::parse("http:///x").is_err());
    }
}
