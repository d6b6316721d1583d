//! A session's writing: the frames its shard queued, in batches with one flush each.
//!
//! Owns: the batch limits. May touch: the session's socket, its outbox, and its frame counter. Must not: decide anything about the
//! connection (the session closes it).

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Socket;
use crate::metrics::ShardCounters;
use crate::protocol::{self, Frame};

/// Most frames gathered into one write before flushing.
const MAX_BATCH_FRAMES: u64 = 64;
/// Most bytes gathered into one write before flushing.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Writes `first` and whatever else is ready (up to a batch), then flushes once.
pub(super) async fn write_batch(
    socket: &mut Socket,
    outbox: &flume::Receiver<Frame>,
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
        next = outbox.try_recv().ok();
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
