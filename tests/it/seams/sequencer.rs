//! The `Sequencer` contract: a room's messages numbered in order with no gap, once each (a resend
//! keeps its first seq), heard by every instance in the room, and read back for a resume.

use std::sync::Arc;

use wsbroker::broker::Numbering;
use wsbroker::mailbox::{Delivery, ReplayRequest, Stamp};
use wsbroker::protocol::Since;

use super::{chat, Deployment, Instance};
use crate::contract;

/// Hands `id` (alice's, in the lobby) to `a`'s sequencer; `None`: the home numbers it itself.
fn stamp(a: &Instance, id: &str) -> Option<()> {
    match a.seams.sequencer.stamp(chat("lobby", "alice", id), 0) {
        Numbering::Here(_) => None,
        Numbering::Taken => Some(()),
        Numbering::Refused(_) => panic!("a ready sequencer refused {id}"),
    }
}

/// The next stamp the instance's home hears: (message id, stamp).
async fn next_stamp(instance: &mut Instance) -> (String, Stamp) {
    match instance.next(|delivery| matches!(delivery, Delivery::Stamped { .. })).await {
        Delivery::Stamped { item, stamped } => (item.id, stamped.expect("numbered")),
        _ => unreachable!(),
    }
}

/// The next numbered message the instance's home hears: (seq, epoch).
async fn next_sequenced(instance: &mut Instance) -> (u64, Arc<str>) {
    match instance.next(|delivery| matches!(delivery, Delivery::Sequenced { .. })).await {
        Delivery::Sequenced { seq, epoch, .. } => (seq, epoch),
        _ => unreachable!(),
    }
}

contract!(a_rooms_messages_are_numbered_in_order_with_no_gap_and_heard_by_each_instance);
async fn a_rooms_messages_are_numbered_in_order_with_no_gap_and_heard_by_each_instance(
    deployment: Deployment,
) {
    let (mut a, mut b) = (deployment.instance("a").await, deployment.instance("b").await);
    a.join("lobby", "alice").await;
    b.join("lobby", "bob").await;
    let taken: Vec<Option<()>> = ["m1", "m2", "m3"].iter().map(|id| stamp(&a, id)).collect();
    if taken.iter().all(Option::is_none) {
        return; // Here for every message: the room's home numbers them (tests/it/ordering.rs).
    }
    assert!(taken.iter().all(Option::is_some), "Here for every message, or for none");
    let (_, first) = next_stamp(&mut a).await;
    let epoch = first.epoch.clone();
    assert_eq!(first, Stamp { seq: 1, epoch: epoch.clone(), again: false });
    for (want, seq) in [("m2", 2), ("m3", 3)] {
        let (id, stamp) = next_stamp(&mut a).await;
        assert_eq!((id.as_str(), stamp), (want, Stamp { seq, epoch: epoch.clone(), again: false }));
    }
    for instance in [&mut a, &mut b] {
        for seq in 1..=3 {
            assert_eq!(next_sequenced(instance).await, (seq, epoch.clone()));
        }
    }
}

contract!(a_resend_keeps_its_first_seq_and_is_not_heard_twice);
async fn a_resend_keeps_its_first_seq_and_is_not_heard_twice(deployment: Deployment) {
    let mut a = deployment.instance("a").await;
    a.join("lobby", "alice").await;
    if stamp(&a, "m1").is_none() {
        // Here: the home numbers the message and drops a resend itself (tests/it/shutdown.rs).
        assert!(stamp(&a, "m1").is_none(), "Here for every message");
        return;
    }
    stamp(&a, "m1");
    stamp(&a, "m2");
    let (_, first) = next_stamp(&mut a).await;
    let (id, again) = next_stamp(&mut a).await;
    assert_eq!((id.as_str(), again.seq, again.again), ("m1", first.seq, true));
    assert_eq!(next_stamp(&mut a).await.1.seq, first.seq + 1, "no seq spent on the resend");
    assert_eq!(next_sequenced(&mut a).await.0, first.seq);
    assert_eq!(next_sequenced(&mut a).await.0, first.seq + 1, "the resend was not published");
}

contract!(a_read_gives_the_messages_after_the_resume_point);
async fn a_read_gives_the_messages_after_the_resume_point(deployment: Deployment) {
    let mut a = deployment.instance("a").await;
    a.join("lobby", "alice").await;
    let since = |epoch: &str| Since { seq: 1, epoch: epoch.to_owned() };
    let request = |since| ReplayRequest {
        room: "lobby".into(),
        since,
        shard: 0,
        conn: 1,
        id: None,
        kept: None,
    };
    let taken: Vec<Option<()>> = ["m1", "m2", "m3"].iter().map(|id| stamp(&a, id)).collect();
    if taken.iter().all(Option::is_none) {
        let read = a.seams.sequencer.read_stream(request(since("any")), 0);
        assert!(matches!(read, Numbering::Here(_)), "the home reads its own window and store");
        return;
    }
    let mut epoch = None;
    for _ in 0..3 {
        epoch = Some(next_stamp(&mut a).await.1.epoch);
    }
    let epoch = epoch.unwrap();
    let read = a.seams.sequencer.read_stream(request(since(&epoch)), 0);
    assert!(matches!(read, Numbering::Taken));
    let wanted = |delivery: &Delivery| matches!(delivery, Delivery::StreamRead { .. });
    let Delivery::StreamRead { read, .. } = a.next(wanted).await else { unreachable!() };
    let slice = read.expect("redis answered");
    assert_eq!(slice.stream, Some((epoch.to_string(), 3)));
    let seqs: Vec<u64> = slice.messages.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [2, 3]);
}
