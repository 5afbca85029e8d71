//! The sending side of one server connection: a bounded queue drained by the connection's writer task.
//! A peer that does not read its frames fills the queue and is dropped, so one slow consumer never makes
//! a server (the gateway, the bridge) buffer without bound.

use crate::connection::FrameWriter;
use crate::protocol::{EventFrame, Frame};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

/// What the writer task is asked to send.
pub enum Outgoing {
    /// Boxed: frames are large next to the other variants, and most of the queue is frames anyway.
    Frame(Box<Frame>),
    /// A frame in its wire form, relayed as it arrived.
    Text(Utf8Bytes),
    Ping,
    /// Send a close frame after everything queued before it, then stop.
    Close(CloseCode, &'static str),
}

#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Outgoing>,
    /// Held while numbering and queueing an event, so `seq` order is queue order.
    seq: Arc<Mutex<u64>>,
    /// Cancelled when the connection must close (slow consumer, shutdown, replaced node).
    close: CancellationToken,
}

impl Outbound {
    pub fn new(capacity: usize) -> (Outbound, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity);
        let outbound = Outbound { tx, seq: Arc::new(Mutex::new(0)), close: CancellationToken::new() };
        (outbound, rx)
    }

    /// Queues a frame. Returns false if the connection is gone or was just dropped for being too slow.
    pub fn send(&self, frame: Frame) -> bool {
        self.queue(Outgoing::Frame(Box::new(frame)))
    }

    /// Queues a frame that is already text (relayed unchanged).
    pub fn send_text(&self, text: Utf8Bytes) -> bool {
        self.queue(Outgoing::Text(text))
    }

    pub fn ping(&self) -> bool {
        self.queue(Outgoing::Ping)
    }

    /// Closes gracefully: frames already queued go out first, then the close frame.
    pub fn finish(&self, code: CloseCode, reason: &'static str) {
        self.queue(Outgoing::Close(code, reason));
    }

    fn queue(&self, outgoing: Outgoing) -> bool {
        match self.tx.try_send(outgoing) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("client is not reading its frames; dropping the connection");
                self.close.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues an event with the next sequence number.
    pub fn event(&self, event: &str, payload: Value) -> bool {
        let mut seq = self.seq.lock().expect("seq lock");
        *seq += 1;
        self.send(Frame::Event(EventFrame { event: event.to_string(), payload, seq: *seq }))
    }

    /// Drops the connection now, without flushing.
    pub fn close(&self) {
        self.close.cancel();
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.close
    }
}

/// Finds half-open peers: the caller pings on every tick and reports every sign of life; a peer silent for
/// two intervals is dead.
pub struct Keepalive {
    timer: tokio::time::Interval,
    interval: std::time::Duration,
    last_heard: tokio::time::Instant,
}

impl Keepalive {
    pub fn new(interval: std::time::Duration) -> Keepalive {
        let start = tokio::time::Instant::now() + interval;
        Keepalive {
            timer: tokio::time::interval_at(start, interval),
            interval,
            last_heard: tokio::time::Instant::now(),
        }
    }

    pub fn heard(&mut self) {
        self.last_heard = tokio::time::Instant::now();
    }

    /// Waits for the next tick. False when the peer has been silent too long; else send a ping.
    pub async fn tick(&mut self) -> bool {
        self.timer.tick().await;
        self.last_heard.elapsed() <= self.interval * 2
    }
}

/// A connection's writer task with its queue: spawned once, ended once, the same way by every server.
pub struct WriterTask {
    pub outbound: Outbound,
    task: tokio::task::JoinHandle<()>,
}

/// How long a writer may take to flush the last frames and the close frame.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl WriterTask {
    /// Spawns the task that drains a queue of `capacity` frames into `writer`.
    pub fn spawn<S>(writer: FrameWriter<S>, capacity: usize) -> WriterTask
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (outbound, queue) = Outbound::new(capacity);
        let task = tokio::spawn(write_loop(writer, queue, outbound.closed().clone()));
        WriterTask { outbound, task }
    }

    /// Closes gracefully (queued frames first, then a close frame) when `reason` is given, else drops the
    /// connection now; waits a bounded time for the writer either way.
    pub async fn finish(mut self, reason: Option<(CloseCode, &'static str)>) {
        match reason {
            Some((code, why)) => self.outbound.finish(code, why),
            None => self.outbound.close(),
        }
        if tokio::time::timeout(WRITER_GRACE, &mut self.task).await.is_err() {
            self.outbound.close();
            self.task.abort();
        }
    }
}

/// Writes queued frames in order until a close is queued or the connection is dropped.
async fn write_loop<S>(mut writer: FrameWriter<S>, mut queue: mpsc::Receiver<Outgoing>, dropped: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let drain = async {
        while let Some(outgoing) = queue.recv().await {
            let sent = match outgoing {
                Outgoing::Frame(frame) => writer.send(&frame).await,
                Outgoing::Text(text) => writer.send_text(text).await,
                Outgoing::Ping => writer.send_message(Message::Ping(Default::default())).await,
                Outgoing::Close(code, reason) => {
                    writer.close(code, reason).await;
                    return;
                }
            };
            if sent.is_err() {
                // The peer closed first: closing still sends the Close that answers its own.
                writer.close(CloseCode::Normal, "").await;
                return;
            }
        }
    };
    tokio::select! {
        () = drain => {}
        // A peer that stopped reading would block the write forever: give up on it.
        () = dropped.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_closes_instead_of_growing() {
        let (out, mut rx) = Outbound::new(2);
        assert!(out.event("e", 1.into()));
        assert!(out.event("e", 2.into()));
        assert!(!out.event("e", 3.into()));
        assert!(out.closed().is_cancelled());
        let Some(Outgoing::Frame(frame)) = rx.recv().await else { panic!() };
        let Frame::Event(first) = *frame else { panic!() };
        assert_eq!(first.seq, 1);
    }
}
