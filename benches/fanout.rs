//! The fan-out path: finding the shards of a room in the directory, routing one delivery to each, and
//! a shard pushing the shared frame into every local member's outbox. Queues are drained inside the
//! measured loop, so nothing piles up between iterations.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsbroker::config::Config;
use wsbroker::directory::Transition;
use wsbroker::hub::Hub;
use wsbroker::mailbox::{Outbox, Target};
use wsbroker::protocol::{self, Frame, PresenceStatus, Room};
use wsbroker::shard::cache::{Connection, LocalCache};

fn room_with_members(members: u64) -> (LocalCache, Vec<flume::Receiver<Frame>>) {
    let room: Room = Arc::from("r");
    let mut cache = LocalCache::default();
    let mut receivers = Vec::new();
    for conn in 0..members {
        let (outbox, frames) = flume::bounded(4);
        let user = Arc::from(format!("user-{conn}"));
        cache.insert(conn, Connection::new(user, outbox.into(), None));
        cache.join(conn, &room).expect("a new member");
        receivers.push(frames);
    }
    (cache, receivers)
}

fn local_delivery(c: &mut Criterion) {
    let frame = protocol::presence_event_frame("r", "someone", PresenceStatus::Join);
    let mut group = c.benchmark_group("shard_local_delivery");
    for members in [10, 1_000, 10_000] {
        let (cache, receivers) = room_with_members(members);
        group.throughput(Throughput::Elements(members));
        group.bench_function(BenchmarkId::from_parameter(members), |b| {
            b.iter(|| {
                for (_, outbox) in cache.room_outboxes("r") {
                    let Outbox::Queue(queue) = outbox else { unreachable!("queues only here") };
                    queue.try_send(frame.clone()).expect("drained every iteration");
                }
                for frames in &receivers {
                    frames.try_recv().expect("one frame each");
                }
            });
        });
    }
    group.finish();
}

fn route_to_shards(c: &mut Criterion) {
    let mut config = Config::with_listen("127.0.0.1:0".parse().expect("an address"));
    config.shards = Some(4);
    let (hub, mut inboxes) = Hub::new(config);
    for shard in 0..4 {
        let rooms: Vec<Transition> = (0..10_000)
            .map(|r| Transition { room: Arc::from(format!("room-{r}")), present: true })
            .collect();
        hub.directory().apply(shard, &rooms);
    }
    let frame = protocol::presence_event_frame("room-42", "someone", PresenceStatus::Join);
    let room: Room = Arc::from("room-42");
    c.bench_function("directory_lookup_and_route_to_3_shards", |b| {
        b.iter(|| {
            hub.router().route(
                Target::Room(Arc::clone(&room)),
                frame.clone(),
                Instant::now(),
                Some(0),
            );
            for inbox in &mut inboxes[1..] {
                inbox.deliveries.try_recv().expect("one delivery per shard");
            }
        });
    });
}

criterion_group!(benches, local_delivery, route_to_shards);
criterion_main!(benches);
