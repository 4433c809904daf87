//! Lines over a Unix stream: a reader that never holds more than one line's cap, and a
//! writer. Built on the socket's readiness calls, which is all the `net` feature of tokio
//! offers; a reader that could buffer without bound would let one client exhaust memory.

use std::io;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line without its newline (a last line without one counts too).
    Line(Vec<u8>),
    /// The peer closed the connection between lines.
    Eof,
    /// More than the cap arrived without a newline.
    TooLong,
}

pub struct LineReader {
    half: OwnedReadHalf,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    cap: usize,
}

impl LineReader {
    pub fn new(half: OwnedReadHalf, cap: usize) -> Self {
        Self {
            half,
            buf: Vec::new(),
            scanned: 0,
            cap,
        }
    }

    /// The next line. Cancel-safe: nothing is consumed while it waits.
    pub async fn next_line(&mut self) -> io::Result<Line> {
        loop {
            if let Some(at) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + at;
                if end > self.cap {
                    return Ok(Line::TooLong);
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                return Ok(Line::Line(line));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.cap {
                return Ok(Line::TooLong);
            }
            let mut chunk = [0u8; 8192];
            // Never read past the cap (plus the newline): the rest stays in the socket.
            let room = (self.cap + 1 - self.buf.len()).min(chunk.len());
            self.half.readable().await?;
            match self.half.try_read(&mut chunk[..room]) {
                Ok(0) if self.buf.is_empty() => return Ok(Line::Eof),
                Ok(0) => {
                    self.scanned = 0;
                    return Ok(Line::Line(std::mem::take(&mut self.buf)));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Waits until the peer closes its side (or the connection fails), discarding whatever
    /// it sends meanwhile.
    pub async fn wait_closed(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            if self.half.readable().await.is_err() {
                return;
            }
            match self.half.try_read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// Writes all of `bytes`.
pub async fn write_all(half: &OwnedWriteHalf, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        half.writable().await?;
        match half.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::net::UnixStream;

    use super::*;

    #[tokio::test]
    async fn splits_lines_and_stops_at_the_cap() {
        let (a, b) = UnixStream::pair().unwrap();
        let (read, _keep) = b.into_split();
        let (_, write) = a.into_split();
        let mut reader = LineReader::new(read, 8);
        write_all(&write, b"one\ntwo\n12345678\n123456789\nrest")
            .await
            .unwrap();
        drop(write);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(reader.next_line().await.unwrap());
        }
        assert_eq!(
            got,
            [
                Line::Line(b"one".to_vec()),
                Line::Line(b"two".to_vec()),
                Line::Line(b"12345678".to_vec())
            ]
        );
        assert_eq!(reader.next_line().await.unwrap(), Line::TooLong);
        assert!(reader.buf.len() <= 9 + 8192, "buffer stays bounded");
    }

    #[tokio::test]
    async fn a_last_line_without_newline_then_eof() {
        let (a, b) = UnixStream::pair().unwrap();
        let (read, _keep) = b.into_split();
        let (_, write) = a.into_split();
        let mut reader = LineReader::new(read, 64);
        write_all(&write, b"x\ntail").await.unwrap();
        drop(write);
        assert_eq!(reader.next_line().await.unwrap(), Line::Line(b"x".to_vec()));
        assert_eq!(
            reader.next_line().await.unwrap(),
            Line::Line(b"tail".to_vec())
        );
        assert_eq!(reader.next_line().await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn an_endless_line_is_refused_without_reading_it_all() {
        let (a, b) = UnixStream::pair().unwrap();
        let (read, keep) = b.into_split();
        let (_, write) = a.into_split();
        let mut reader = LineReader::new(read, 1000);
        let writer = tokio::spawn(async move {
            let junk = vec![b'a'; 100_000];
            // Fails once the reader is gone; only the first part matters.
            let _ = write_all(&write, &junk).await;
        });
        assert_eq!(reader.next_line().await.unwrap(), Line::TooLong);
        assert_eq!(reader.buf.len(), 1001);
        // Closing the socket fails the writer's remaining writes.
        drop((reader, keep));
        writer.await.unwrap();
    }
}
