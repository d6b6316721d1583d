//! A session's writing: the frames its shard queued, in batches with one flush each, or, on a lane,
//! only what the kernel left.
//!
//! Owns: the batch limits, and where the session's frames come from ([`Inflow`]). May touch: the
//! session's socket, its outbox or lane, and its frame counter. Must not: decide anything about the
//! connection (the session closes it).

use std::sync::Arc;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Socket;
use crate::lane::Lane;
use crate::metrics::ShardCounters;
use crate::protocol::{self, Frame};

/// Where a session's frames come from.
#[derive(Debug)]
pub enum Inflow {
    /// The frames its shard queued, for the session to write (TLS, or `--fast-path false`).
    Queue(flume::Receiver<Frame>),
    /// The shard writes the socket; the session writes what the kernel left queued.
    Lane(Arc<Lane>),
}

impl Inflow {
    /// The next frame to write (a lane has none: it returns only the error that ends it).
    pub(super) async fn next(&self) -> Result<Frame, String> {
        match self {
            Self::Queue(queue) => queue.recv_async().await.map_err(|_| "outbox closed".into()),
            Self::Lane(lane) => {
                Err(std::future::poll_fn(|cx| lane.poll_drain(cx)).await.to_string())
            }
        }
    }

    pub(super) fn try_recv(&self) -> Option<Frame> {
        match self {
            Self::Queue(queue) => queue.try_recv().ok(),
            Self::Lane(_) => None,
        }
    }
}

/// Most frames gathered into one write before flushing.
const MAX_BATCH_FRAMES: u64 = 64;
/// Most bytes gathered into one write before flushing.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Writes `first` and whatever else is ready (up to a batch), then flushes once.
pub(super) async fn write_batch(
    socket: &mut Socket,
    inflow: &Inflow,
    first: Frame,
    counters: &ShardCounters,
) -> Result<(), WsError> {
    let mut bytes = first.len();
    let mut frames = 1u64;
    let mut next = Some(first);
    while let Some(frame) = next.take() {
        if protocol::is_bundle(&frame) {
            // Rare (a replay): boxed, so the idle session's task does not grow for it.
            frames += Box::pin(feed_bundle(socket, frame)).await?.saturating_sub(1);
        } else {
            socket.feed(Message::Text(frame)).await?;
        }
        if frames >= MAX_BATCH_FRAMES || bytes >= MAX_BATCH_BYTES {
            break;
        }
        next = inflow.try_recv();
        if let Some(frame) = &next {
            bytes += frame.len();
            frames += 1;
        }
    }
    // Counted before the write, so no client can hold a frame the counter has not counted yet.
    counters.frames_out.fetch_add(frames, std::sync::atomic::Ordering::Relaxed);
    socket.flush().await?;
    Ok(())
}

/// Feeds a bundle of frames (a replay, [`protocol::bundle`]), each its own WebSocket message. How
/// many messages it was.
async fn feed_bundle(socket: &mut Socket, bundle: Frame) -> Result<u64, WsError> {
    let mut count = 0;
    for part in protocol::bundle_parts(&bundle) {
        socket.feed(Message::Text(Frame::from(part))).await?;
        count += 1;
    }
    Ok(count)
}
