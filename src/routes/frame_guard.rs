//! Bounds what one WebSocket client can make herald buffer before a frame is
//! decoded. actix-web-actors reads everything the connection has ready into
//! its buffer before it decodes, and its codec compares a frame's length with
//! the limit only once the whole frame has arrived: a client that declares a
//! 1 TiB frame and keeps streaming would be buffered until memory runs out.
//!
//! `FrameGuard` sits between the request payload and that codec. It reads
//! each frame header as the bytes pass through and fails the stream the
//! moment a header declares more than the limit, or a fragmented message's
//! frames add up to more; and it hands over about one frame's worth of bytes
//! per poll (then wakes itself), so the decoder always runs before the buffer
//! can grow past a frame.

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;
/// RFC 6455 §5.5: control frames carry at most 125 bytes.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Why the scanner refused the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized;

/// Follows frame boundaries in the raw byte stream, looking only at headers.
#[derive(Debug, Default)]
struct Scanner {
    header: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: u64,
    /// Bytes of the fragmented data message in progress.
    message: u64,
}

impl Scanner {
    /// Feeds the next bytes of the stream.
    fn feed(&mut self, mut bytes: &[u8], max: u64) -> Result<(), Oversized> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len() as u64);
                self.remaining -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some((opcode, fin, length)) = self.parsed_header() {
                self.have = 0;
                self.remaining = length;
                self.check(opcode, fin, length, max)?;
            }
        }
        Ok(())
    }

    /// The header's (opcode, fin, payload length) once all of it is here.
    fn parsed_header(&self) -> Option<(u8, bool, u64)> {
        let h = &self.header[..self.have];
        if h.len() < 2 {
            return None;
        }
        let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
        let (extended, needed) = match h[1] & 0x7f {
            126 => (2, 4 + mask),
            127 => (8, 10 + mask),
            _ => (0, 2 + mask),
        };
        if h.len() < needed {
            return None;
        }
        let length = match extended {
            0 => u64::from(h[1] & 0x7f),
            n => h[2..2 + n]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        };
        Some((h[0] & 0x0f, h[0] & 0x80 != 0, length))
    }

    fn check(&mut self, opcode: u8, fin: bool, length: u64, max: u64) -> Result<(), Oversized> {
        if opcode & 0x08 != 0 {
            // Control frames may come between fragments; they never count
            // toward the message, and are tiny by definition.
            return if length > MAX_CONTROL_PAYLOAD {
                Err(Oversized)
            } else {
                Ok(())
            };
        }
        if opcode != 0 {
            self.message = 0;
        }
        self.message = self.message.saturating_add(length);
        if self.message > max {
            return Err(Oversized);
        }
        if fin {
            self.message = 0;
        }
        Ok(())
    }
}

/// The request payload, scanned and rationed (see the module comment).
pub struct FrameGuard<S> {
    inner: S,
    max: u64,
    scanner: Scanner,
    /// Bytes handed over since the stream last returned `Pending`.
    handed: usize,
    tripped: Arc<AtomicBool>,
    done: bool,
}

impl<S> FrameGuard<S> {
    /// Guards `inner` with a limit of `max` bytes per message; `tripped` is
    /// set when the guard ends the stream, so the session can close with 1009.
    pub fn new(inner: S, max: usize, tripped: Arc<AtomicBool>) -> FrameGuard<S> {
        FrameGuard {
            inner,
            max: max as u64,
            scanner: Scanner::default(),
            handed: 0,
            tripped,
            done: false,
        }
    }

    fn per_poll(&self) -> usize {
        (self.max as usize).saturating_add(MAX_HEADER)
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.handed >= this.per_poll() {
            // Let the decoder take what it has before reading on.
            this.handed = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if this.scanner.feed(&chunk, this.max).is_err() {
                    this.done = true;
                    this.tripped.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                this.handed += chunk.len();
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Pending => {
                this.handed = 0;
                Poll::Pending
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame header (masked) with this opcode, fin bit and length.
    fn header(opcode: u8, fin: bool, length: u64) -> Vec<u8> {
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
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(opcode: u8, fin: bool, length: usize) -> Vec<u8> {
        let mut f = header(opcode, fin, length as u64);
        f.extend(std::iter::repeat_n(b'x', length));
        f
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_split() {
        let mut bytes = frame(1, true, 100);
        bytes.extend(frame(9, true, 4));
        bytes.extend(frame(1, true, 70_000));
        bytes.extend(frame(2, true, 0));
        for split in [1, 3, 7, 1000, bytes.len()] {
            let mut s = Scanner::default();
            for chunk in bytes.chunks(split) {
                assert_eq!(s.feed(chunk, 70_000), Ok(()), "split {split}");
            }
            assert_eq!((s.remaining, s.have), (0, 0));
        }
    }

    #[test]
    fn a_declared_huge_frame_is_refused_at_its_header() {
        let mut s = Scanner::default();
        let h = header(1, true, 1 << 40);
        assert_eq!(s.feed(&h[..5], 65_536), Ok(()), "header not complete yet");
        assert_eq!(s.feed(&h[5..], 65_536), Err(Oversized));
    }

    #[test]
    fn fragments_count_together_and_control_frames_between_do_not() {
        let mut s = Scanner::default();
        assert_eq!(s.feed(&frame(1, false, 40_000), 65_536), Ok(()));
        assert_eq!(s.feed(&frame(9, true, 100), 65_536), Ok(()));
        assert_eq!(s.feed(&frame(0, false, 20_000), 65_536), Ok(()));
        assert_eq!(s.feed(&header(0, true, 10_000), 65_536), Err(Oversized));
    }

    #[test]
    fn a_finished_message_resets_the_count() {
        let mut s = Scanner::default();
        for _ in 0..10 {
            assert_eq!(s.feed(&frame(1, false, 30_000), 65_536), Ok(()));
            assert_eq!(s.feed(&frame(0, true, 30_000), 65_536), Ok(()));
        }
    }

    #[test]
    fn an_oversized_control_frame_is_refused() {
        let mut s = Scanner::default();
        assert_eq!(s.feed(&header(9, true, 1 << 30), 65_536), Err(Oversized));
    }
}
