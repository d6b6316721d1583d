//! A lane over a real loopback socket whose peer has a tiny receive window, so the kernel takes
//! writes in part.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::{encode, Lane, Pushed};
use crate::protocol::{self, Frame};

const WAIT: Duration = Duration::from_secs(10);

/// A lane attached to the server end of a connection (4 KiB buffers on both), the client end,
/// and a poll with the server end registered for writable events, as its reader would have it.
async fn lane_with_slow_peer(limit: usize) -> (Arc<Lane>, TcpStream, mio::Poll) {
    let listening = TcpSocket::new_v4().unwrap();
    listening.set_send_buffer_size(4096).unwrap();
    listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener: TcpListener = listening.listen(8).unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let client = socket.connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let mut server = mio::net::TcpStream::from_std(server.into_std().unwrap());
    let poll = mio::Poll::new().unwrap();
    poll.registry().register(&mut server, mio::Token(1), mio::Interest::WRITABLE).unwrap();
    let lane = Arc::new(Lane::new(limit, 0));
    lane.attach(server, Arc::default(), 1);
    (lane, client, poll)
}

/// Distinct frames, each 2 KB, numbered in their first bytes.
fn numbered_frames(count: usize) -> Vec<Bytes> {
    let filler = "x".repeat(2000);
    (0..count).map(|i| encode(&Frame::from(format!("{i:05}{filler}"))).0).collect()
}

/// Pushes `frames`, writing after every 50 as a shard does per batch; whether a write left some.
fn push_all(lane: &Lane, frames: &[Bytes]) -> bool {
    let mut left_some = false;
    for batch in frames.chunks(50) {
        for frame in batch {
            assert!(matches!(lane.push(frame.clone()), Pushed::First | Pushed::Queued));
        }
        left_some |= lane.flush();
    }
    left_some
}

async fn read_to_end(client: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut received)).await.unwrap().unwrap();
    received
}

#[tokio::test]
async fn what_the_kernel_leaves_goes_first_and_the_connections_own_frame_after_it() {
    let (lane, mut client, poll) = lane_with_slow_peer(1_000).await;
    let frames = numbered_frames(300);
    assert!(push_all(&lane, &frames), "600 KB into a 4 KiB window: some write went in part");
    let own = encode(&Frame::from("the session's own")).0;
    lane.write_own(&own).unwrap();
    let received = read_to_end_draining(&lane, poll, &mut client).await;
    let expected: Vec<u8> = frames.iter().chain([&own]).flat_map(|f| f.iter().copied()).collect();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "every byte, in push order, the connection's frame last");
}

#[tokio::test]
async fn an_own_frame_the_kernel_takes_in_part_goes_whole_before_the_next_push() {
    let (lane, mut client, poll) = lane_with_slow_peer(1_000).await;
    let big = encode(&Frame::from("y".repeat(600_000))).0;
    lane.write_own(&big).unwrap();
    assert!(lane.state().front_started, "600 KB into a 4 KiB window: written in part");
    let after = numbered_frames(3);
    assert!(push_all(&lane, &after), "the pushes wait behind the own frame's rest");
    let received = read_to_end_draining(&lane, poll, &mut client).await;
    let expected: Vec<u8> =
        [&big].into_iter().chain(&after).flat_map(|f| f.iter().copied()).collect();
    assert!(received == expected, "the own frame whole, then the pushes");
}

/// Drains the lane as its reader would (on each writable event, until nothing is left), closes
/// the socket, and returns what the client read.
async fn read_to_end_draining(
    lane: &Arc<Lane>,
    poll: mio::Poll,
    client: &mut TcpStream,
) -> Vec<u8> {
    let drain = {
        let (lane, mut poll) = (Arc::clone(lane), poll);
        tokio::task::spawn_blocking(move || {
            let mut events = mio::Events::with_capacity(8);
            while !lane.drain().unwrap() {
                poll.poll(&mut events, Some(WAIT)).unwrap();
                assert!(!events.is_empty(), "no writable event within the wait");
            }
            lane.detach();
        })
    };
    let received = read_to_end(client).await;
    drain.await.unwrap();
    received
}

#[tokio::test]
async fn a_discarding_close_keeps_the_frame_begun_and_drops_the_rest() {
    let (lane, mut client, poll) = lane_with_slow_peer(1_000).await;
    let frames = numbered_frames(900);
    let mut pushed = 0;
    while !lane.state().front_started {
        assert!(pushed < frames.len(), "no write stopped inside a frame");
        assert!(push_all(&lane, &frames[pushed..pushed + 50]));
        pushed += 50;
    }
    lane.close(true);
    assert_eq!(lane.push(frames[0].clone()), Pushed::Closed, "no push after the close");
    let received = read_to_end_draining(&lane, poll, &mut client).await;
    let whole = received.len() / frames[0].len();
    assert!(whole > 0 && whole < pushed, "a prefix went, the rest was dropped ({whole})");
    assert_eq!(received.len() % frames[0].len(), 0, "the stream ends on a frame boundary");
    let expected: Vec<u8> = frames[..whole].iter().flat_map(|f| f.iter().copied()).collect();
    assert!(received == expected);
}

#[tokio::test]
async fn a_lane_at_its_limit_refuses_and_a_lane_not_yet_upgraded_keeps_its_frames() {
    let frame = encode(&Frame::from("f")).0;
    let lane = Lane::new(2, 0);
    assert_eq!(lane.push(frame.clone()), Pushed::First);
    assert!(!lane.flush(), "not upgraded yet: nothing written, nothing counted as partial");
    assert_eq!(lane.push(frame.clone()), Pushed::Queued);
    assert_eq!(lane.push(frame.clone()), Pushed::Full);
    let lane = Lane::new(2, 3 * frame.len());
    let pushed: Vec<Pushed> = (0..7).map(|_| lane.push(frame.clone())).collect();
    assert!(pushed[..5].iter().all(|p| *p != Pushed::Full), "2 frames and 3 frames' bytes wait");
    assert_eq!(pushed[5..], [Pushed::Full, Pushed::Full]);
}

#[test]
fn a_bundle_goes_out_as_its_messages_back_to_back() {
    let (first, second) = (Frame::from("one"), Frame::from("two"));
    let (wire, messages) = encode(&protocol::bundle(&[first.clone(), second.clone()]));
    assert_eq!(messages, 2);
    let expected = [encode(&first).0, encode(&second).0].concat();
    assert_eq!(wire.as_ref(), expected.as_slice());
    assert_eq!(&encode(&first).0[..], b"\x81\x03one", "an unmasked final text frame");
}

#[tokio::test]
async fn a_frame_that_may_wait_goes_with_the_next_due_one_or_at_its_deferrals_end() {
    let (lane, mut client, poll) = lane_with_slow_peer(1_000).await;
    let (typing, chat) = (encode(&Frame::from("typing")).0, encode(&Frame::from("chat")).0);
    assert_eq!(lane.push_deferred(typing.clone()), Pushed::Deferred);
    assert_eq!(lane.push_deferred(typing.clone()), Pushed::Queued, "waits with the first");
    assert!(!lane.flush_deferred() && lane.queued() == 0, "its deferral's end writes it");
    assert_eq!(lane.push_deferred(typing.clone()), Pushed::Deferred);
    assert_eq!(lane.push(chat.clone()), Pushed::First, "a due frame has the lane written");
    assert!(!lane.flush() && lane.queued() == 0, "the waiting frame went with it");
    assert!(!lane.flush_deferred(), "nothing waits any more");
    assert_eq!(lane.push(chat.clone()), Pushed::First);
    assert_eq!(lane.push_deferred(typing.clone()), Pushed::Queued, "behind a due frame");
    assert!(!lane.flush_deferred() && lane.queued() == 2, "not its to write");
    let received = read_to_end_draining(&lane, poll, &mut client).await;
    let order = [&typing, &typing, &typing, &chat, &chat, &typing];
    let expected: Vec<u8> = order.into_iter().flat_map(|f| f.iter().copied()).collect();
    assert!(received == expected, "every frame, in push order");
}
