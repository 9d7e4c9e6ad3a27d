//! A counting TCP proxy in front of the relay: it forwards bytes unchanged and counts, per
//! direction, every TCP byte and every WebSocket frame (protocol messages are binary data
//! frames; pings, pongs and closes are control frames). It reads only frame headers, so it
//! adds a copy but no parsing of the protocol itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What went one way over one or more connections.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Direction {
    /// WebSocket data messages: protocol messages (each frame is one `crm_sync::Message`).
    pub(crate) messages: u64,
    /// Their payload bytes: the encoded messages (what the relay's `bytes_*_total` count).
    pub(crate) message_bytes: u64,
    /// Ping, pong and close frames.
    pub(crate) control_frames: u64,
    /// Every TCP payload byte: the HTTP upgrade, WebSocket frame headers (and client masks),
    /// control frames and the messages.
    pub(crate) wire_bytes: u64,
}

impl Direction {
    fn add(&mut self, o: &Direction) {
        self.messages += o.messages;
        self.message_bytes += o.message_bytes;
        self.control_frames += o.control_frames;
        self.wire_bytes += o.wire_bytes;
    }
}

/// Both directions: `up` is device → relay, `down` relay → device.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub(crate) up: Direction,
    pub(crate) down: Direction,
    pub(crate) connections: u64,
}

struct Shared {
    upstream: SocketAddr,
    counts: Mutex<Counts>,
    open: watch::Sender<usize>,
}

pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the counting proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            counts: Mutex::new(Counts::default()),
            open: watch::channel(0).0,
        });
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(inbound, accept.clone()));
            }
        });
        Ok(Proxy { addr, shared, task })
    }

    /// The relay URL a device should join to go through the proxy.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The counts since the last `take`, once every connection has ended (at most `wait`).
    pub(crate) async fn take(&self, wait: Duration) -> Counts {
        let mut open = self.shared.open.subscribe();
        if tokio::time::timeout(wait, open.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            eprintln!("warning: a proxied connection was still open; its counts may be partial");
        }
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(inbound: TcpStream, shared: Arc<Shared>) {
    let Ok(outbound) = TcpStream::connect(shared.upstream).await else {
        eprintln!("warning: the proxy could not reach the relay");
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    shared.open.send_modify(|n| *n += 1);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let (up, down) = tokio::join!(pump(in_read, out_write), pump(out_read, in_write));
    {
        let mut counts = shared.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.up.add(&up);
        counts.down.add(&down);
        counts.connections += 1;
    }
    shared.open.send_modify(|n| *n -= 1);
}

/// Copies one direction until its end, counting.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) -> Direction {
    let mut counter = FrameCounter::default();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        counter.feed(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    counter.dir
}

/// Follows one direction of a WebSocket connection: the HTTP head, then frames.
#[derive(Default)]
struct FrameCounter {
    /// Past the HTTP upgrade request or response.
    in_frames: bool,
    /// How much of the blank line ending the HTTP head has been seen.
    head_end: usize,
    /// The frame header read so far.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    skip: u64,
    dir: Direction,
}

impl FrameCounter {
    fn feed(&mut self, mut bytes: &[u8]) {
        self.dir.wire_bytes += bytes.len() as u64;
        while let Some((&first, rest)) = bytes.split_first() {
            if !self.in_frames {
                const END: &[u8; 4] = b"\r\n\r\n";
                if first == END[self.head_end] {
                    self.head_end += 1;
                    self.in_frames = self.head_end == END.len();
                } else {
                    self.head_end = usize::from(first == b'\r');
                }
                bytes = rest;
            } else if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.skip -= n as u64;
                bytes = &bytes[n..];
            } else {
                self.header.push(first);
                bytes = rest;
                if let Some((opcode, len)) = frame_header(&self.header) {
                    self.header.clear();
                    match opcode {
                        // Text and binary messages; a continuation adds to its message.
                        1 | 2 => {
                            self.dir.messages += 1;
                            self.dir.message_bytes += len;
                        }
                        0 => self.dir.message_bytes += len,
                        _ => self.dir.control_frames += 1,
                    }
                    self.skip = len;
                }
            }
        }
    }
}

/// The opcode and payload length of a complete frame header, or `None` if more is needed.
fn frame_header(h: &[u8]) -> Option<(u8, u64)> {
    let (&b0, &b1) = (h.first()?, h.get(1)?);
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let need = 2 + ext + if masked { 4 } else { 0 };
    if h.len() < need {
        return None;
    }
    let len = match len7 {
        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        127 => u64::from_be_bytes(h[2..10].try_into().ok()?),
        n => u64::from(n),
    };
    Some((b0 & 0x0f, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_frames_split_anywhere() {
        let mut stream = b"GET /v1/sync HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        // A masked binary frame of 5 bytes, one of 300 bytes (16-bit length), a close.
        stream.extend([0x82, 0x85, 1, 2, 3, 4, 9, 9, 9, 9, 9]);
        stream.extend([0x82, 0xfe, 0x01, 0x2c, 1, 2, 3, 4]);
        stream.extend(vec![7; 300]);
        stream.extend([0x88, 0x80, 1, 2, 3, 4]);
        for cut in 1..stream.len() {
            let mut c = FrameCounter::default();
            for chunk in stream.chunks(cut) {
                c.feed(chunk);
            }
            assert_eq!(c.dir.messages, 2, "cut {cut}");
            assert_eq!(c.dir.message_bytes, 305, "cut {cut}");
            assert_eq!(c.dir.control_frames, 1, "cut {cut}");
            assert_eq!(c.dir.wire_bytes, stream.len() as u64);
        }
    }
}
