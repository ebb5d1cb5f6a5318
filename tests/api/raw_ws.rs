//! A WebSocket client at the byte level, for tests that send what no
//! well-behaved library would: declared-huge frames, fragments, floods.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TEXT: u8 = 1;
pub const CONTINUATION: u8 = 0;
pub const PING: u8 = 9;

pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A frame as the server sent it.
#[derive(Debug)]
pub struct ServerFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        (self.opcode == TEXT)
            .then(|| serde_json::from_slice(&self.payload).ok())
            .flatten()
    }
}

/// A masked client frame header for `length` payload bytes.
pub fn header(opcode: u8, fin: bool, length: u64) -> Vec<u8> {
    let mut h = vec![opcode | if fin { 0x80 } else { 0 }];
    match length {
        0..=125 => h.push(0x80 | length as u8),
        126..=0xffff => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&length.to_be_bytes());
        }
    }
    // A zero mask keeps the payload readable in captures.
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

impl RawWs {
    /// Upgrades `path` (with its query) on 127.0.0.1:`port`, offering
    /// `["herald.v1", token]`; panics unless the server answers 101.
    pub async fn connect(port: u16, path: &str, token: &str) -> RawWs {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.v1, {token}\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send upgrade");
        let mut raw = RawWs {
            stream,
            buf: Vec::new(),
        };
        let head = raw.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        raw
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                self.buf.drain(..end + 4);
                return head;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "connection closed during the handshake");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one frame with a zero mask.
    pub async fn send_frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        let mut frame = header(opcode, fin, payload.len() as u64);
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await.expect("send frame");
    }

    /// The next server frame within `within`, or None (timeout or EOF).
    pub async fn next_frame(&mut self, within: Duration) -> Option<ServerFrame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(frame) = self.parse() {
                return Some(frame);
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next text frame of JSON `type` `kind`, skipping others; None on
    /// close, EOF or timeout.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame.opcode == 8 {
                return None;
            }
            if let Some(json) = frame.json().filter(|j| j["type"] == kind) {
                return Some(json);
            }
        }
    }

    /// Reads until a close frame; its code, or None on EOF or timeout.
    pub async fn close_code(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame.opcode == 8 {
                return frame.close_code();
            }
        }
    }

    fn parse(&mut self) -> Option<ServerFrame> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (length, start) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        if b.len() < start + length {
            return None;
        }
        let frame = ServerFrame {
            opcode: b[0] & 0x0f,
            payload: b[start..start + length].to_vec(),
        };
        self.buf.drain(..start + length);
        Some(frame)
    }
}
