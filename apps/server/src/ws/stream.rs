//! A server-side WebSocket over any byte stream: whole messages in, framed bytes out.
//!
//! Written for many mostly idle connections: an idle [`WsStream`] holds no buffer at all. Reads
//! go through a stack buffer and only bytes of an incomplete frame are kept; queued output lives
//! in one `Vec` that is written with as few calls as the socket allows and freed once written.
//! Callers append any number of frames and flush once per wakeup, which is what lets a busy
//! connection send many frames per system call.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{self, FrameError, Incoming, Reassembly};

/// Bytes read per `read` call; chat frames are far smaller, big ones take several reads.
const READ_CHUNK: usize = 8 * 1024;

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The client broke RFC 6455 or the size limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// One WebSocket connection after the handshake (see the module docs).
#[derive(Debug)]
pub(crate) struct WsStream<IO> {
    io: IO,
    /// Received bytes not yet parsed: an incomplete frame, or nothing (and no allocation).
    inbuf: BytesMut,
    /// A fragmented message being joined; boxed, as fragments are rare.
    partial: Option<Box<Reassembly>>,
    max_message: usize,
    /// Framed output not yet written, from `written` on.
    out: Vec<u8>,
    written: usize,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> WsStream<IO> {
    /// Wraps `io`, whose first bytes may already have been read into `leftover` (by the HTTP
    /// server, after the upgrade request).
    pub(crate) fn new(io: IO, leftover: &[u8], max_message: usize) -> Self {
        Self {
            io,
            inbuf: BytesMut::from(leftover),
            partial: None,
            // Frame arithmetic stays far from overflow whatever the operator configured.
            max_message: max_message.min(usize::MAX / 4),
            out: Vec::new(),
            written: 0,
        }
    }

    /// The next complete message; `None` once the client closed the TCP stream.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Incoming, ReadError>>> {
        loop {
            let mut fresh = Reassembly::default();
            let partial = self.partial.as_deref_mut().unwrap_or(&mut fresh);
            let parsed = frame::parse(&mut self.inbuf, partial, self.max_message);
            if fresh.in_progress() {
                self.partial = Some(Box::new(fresh));
            } else if self.partial.as_ref().is_some_and(|p| !p.in_progress()) {
                self.partial = None;
            }
            match parsed {
                Ok(Some(message)) => {
                    if self.inbuf.is_empty() {
                        self.inbuf = BytesMut::new();
                    }
                    return Poll::Ready(Some(Ok(message)));
                }
                Ok(None) => {}
                Err(err) => return Poll::Ready(Some(Err(err.into()))),
            }
            let mut chunk = [const { MaybeUninit::<u8>::uninit() }; READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            if let Err(err) = ready!(Pin::new(&mut self.io).poll_read(cx, &mut read)) {
                return Poll::Ready(Some(Err(err.into())));
            }
            if read.filled().is_empty() {
                return Poll::Ready(None);
            }
            self.inbuf.extend_from_slice(read.filled());
        }
    }

    /// Where to append framed output (see [`super::frame::encode`]); written by
    /// [`Self::poll_flush`].
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Output bytes not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.out.len() - self.written
    }

    /// Writes queued output until all of it is written (then frees the buffer) or the socket
    /// would block (then drops what was written from the buffer, so that a client that reads
    /// slowly but steadily never makes it grow beyond what is unwritten).
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    self.compact();
                    return Poll::Pending;
                }
            }
        }
        self.out = Vec::new();
        self.written = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Moves the unwritten output to the front of the buffer, and gives back capacity that a
    /// burst left far above what is still unwritten.
    fn compact(&mut self) {
        if self.written > 0 {
            self.out.drain(..self.written);
            self.written = 0;
        }
        if self.out.capacity() > 4 * self.out.len().max(READ_CHUNK) {
            self.out.shrink_to(2 * self.out.len().max(READ_CHUNK));
        }
    }

    /// Flushes, then shuts the write side down.
    pub(crate) async fn close(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await?;
        std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn messages_in_and_frames_out_without_idle_buffers() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut ws = WsStream::new(server, &[], 1024);
        // Masked "hi" with an all-zero mask, split across two writes.
        client.write_all(&[0x81, 0x82, 0, 0]).await.unwrap();
        let reader = tokio::spawn(async move {
            let message = poll_fn(|cx| ws.poll_next(cx)).await;
            (ws, message)
        });
        client.write_all(&[0, 0, b'h', b'i']).await.unwrap();
        let (mut ws, message) = reader.await.unwrap();
        assert_eq!(message.unwrap().unwrap(), Incoming::Text("hi".into()));
        assert_eq!(ws.inbuf.capacity(), 0, "nothing held between messages");

        for i in 0..100 {
            frame::encode(ws.out(), frame::OP_TEXT, format!("m{i:02}").as_bytes());
        }
        // 500 bytes through a 64-byte pipe: the flush resumes until everything is written.
        let writer = tokio::spawn(async move {
            poll_fn(|cx| ws.poll_flush(cx)).await.unwrap();
            ws
        });
        let mut got = vec![0; 500];
        client.read_exact(&mut got).await.unwrap();
        let ws = writer.await.unwrap();
        assert_eq!(&got[..5], &[0x81, 3, b'm', b'0', b'0']);
        assert_eq!(
            ws.out.capacity(),
            0,
            "the output buffer is freed once written"
        );
        drop(client);
    }

    #[tokio::test]
    async fn a_slow_reader_never_makes_the_output_grow_past_what_is_unwritten() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut ws = WsStream::new(server, &[], 1024);
        let mut read = vec![0; 1000];
        for round in 0..200 {
            // The client reads a little, the server appends as much again: steady progress,
            // never fully caught up.
            frame::encode(ws.out(), frame::OP_TEXT, &[b'x'; 996]);
            let _ = poll_fn(|cx| Poll::Ready(ws.poll_flush(cx))).await;
            if round > 2 {
                client.read_exact(&mut read).await.unwrap();
            }
            assert!(
                ws.out.len() <= 4 * 1000,
                "round {round}: {} bytes held",
                ws.out.len()
            );
        }
        assert!(
            ws.out.capacity() <= 4 * READ_CHUNK,
            "capacity {}",
            ws.out.capacity()
        );
    }
}
