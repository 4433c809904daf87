//! A minimal HTTP/1.1 server for `GET /metrics`: one request per connection, then close.
//! Enough for Prometheus and curl; no TLS and no keep-alive, so put a proxy in front for
//! anything beyond a trusted network.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
};

use super::{exposition::CONTENT_TYPE, process, SharedMetrics};

/// A request head larger than this is refused; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8192;
/// A client that has not sent its request (or read the answer) by then is dropped, so that
/// idle connections cannot pile up.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 16;

pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, metrics: SharedMetrics, mut stop: watch::Receiver<bool>) {
    let slots = std::sync::Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = crate::pipeline::bus::stopped(&mut stop) => return,
        };
        let Ok(permit) = std::sync::Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = std::sync::Arc::clone(&metrics);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = tokio::time::timeout(IO_TIMEOUT, answer(stream, &metrics)).await
                    {
                        log::debug!("metrics client too slow: {e}");
                    }
                });
            }
            // Out of fds, most likely; accepting again at once would spin.
            Err(e) => {
                log::warn!("metrics endpoint: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &SharedMetrics) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > MAX_REQUEST {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            )
            .await;
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let _ = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = {
                let stats = process::read();
                let state = metrics.lock().unwrap_or_else(|p| p.into_inner());
                state.render(stats.as_ref())
            };
            let body = if method == "HEAD" {
                &b""[..]
            } else {
                body.as_bytes()
            };
            respond(&mut stream, "200 OK", CONTENT_TYPE, body).await
        }
        ("GET" | "HEAD", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"kaipo serves /metrics\n",
            )
            .await
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", b"").await,
    };
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}
