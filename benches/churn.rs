//! Membership under churn: committing room transitions to the copy-on-write directory (one, or a
//! batch, among many rooms), and a member joining and leaving a busy room in a shard's cache.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsbroker::directory::{RoomDirectory, Transition};
use wsbroker::protocol::Room;
use wsbroker::shard::cache::{Connection, LocalCache};

fn transitions(count: usize, present: bool) -> Vec<Transition> {
    (0..count).map(|r| Transition { room: Arc::from(format!("churn-{r}")), present }).collect()
}

fn directory_commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("directory_commit");
    for existing in [1_000, 100_000] {
        let directory = RoomDirectory::new();
        let rooms: Vec<Transition> = (0..existing)
            .map(|r| Transition { room: Arc::from(format!("room-{r}")), present: true })
            .collect();
        directory.apply(0, &rooms);
        for batch in [1, 256] {
            let (joins, leaves) = (transitions(batch, true), transitions(batch, false));
            group.throughput(Throughput::Elements(2 * batch as u64));
            let name = format!("{existing}_rooms/batch_{batch}");
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    directory.apply(1, &joins);
                    directory.apply(1, &leaves);
                });
            });
        }
    }
    group.finish();
}

fn cache_join_leave(c: &mut Criterion) {
    let room: Room = Arc::from("busy");
    let mut cache = LocalCache::default();
    for conn in 0..1_001 {
        let (outbox, _) = flume::bounded(1);
        let user = Arc::from(format!("user-{conn}"));
        cache.insert(conn, Connection::new(user, outbox.into(), None));
        if conn < 1_000 {
            cache.join(conn, &room).expect("a new member");
        }
    }
    c.bench_function("cache_join_and_leave_room_of_1000", |b| {
        b.iter(|| {
            cache.join(1_000, &room).expect("joins");
            cache.leave(1_000, &room).expect("leaves");
        });
    });
}

criterion_group!(benches, directory_commits, cache_join_leave);
criterion_main!(benches);
