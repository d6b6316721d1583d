//! The `Broker` contract: a publish reaches every other instance in the room once, never this one;
//! `when_subscribed` hands its delivery over.

use wsbroker::mailbox::{Delivery, Target};
use wsbroker::protocol::{self, Frame, MessageType};

use super::{Deployment, Instance};
use crate::contract;

fn frame(id: &str) -> Frame {
    protocol::reply_frame(MessageType::Pong, Some(id))
}

/// The next publish an instance gets (its frame's text).
async fn next_publish(instance: &mut Instance) -> String {
    match instance.next(|delivery| matches!(delivery, Delivery::Publish { .. })).await {
        Delivery::Publish { frame, .. } => frame.as_str().to_owned(),
        _ => unreachable!(),
    }
}

fn publishes(instance: &mut Instance) -> usize {
    let drained = instance.drain();
    drained.iter().filter(|delivery| matches!(delivery, Delivery::Publish { .. })).count()
}

contract!(a_publish_reaches_each_other_instance_in_the_room_once_and_never_comes_back);
async fn a_publish_reaches_each_other_instance_in_the_room_once_and_never_comes_back(
    deployment: Deployment,
) {
    let (mut a, mut b) = (deployment.instance("a").await, deployment.instance("b").await);
    a.join("lobby", "alice").await;
    b.join("lobby", "bob").await;
    let room = || Target::Room("lobby".into());
    a.seams.broker.publish(&room(), &frame("x"));
    if !deployment.connects_instances() {
        assert_eq!(publishes(&mut a) + publishes(&mut b), 0, "nobody else to reach");
        return;
    }
    assert!(next_publish(&mut b).await.contains(r#""x""#), "b got a's message");
    b.seams.broker.publish(&room(), &frame("y"));
    // One channel carries the room in order: anything a got of its own came before b's answer.
    assert!(next_publish(&mut a).await.contains(r#""y""#), "a never hears its own message");
    a.seams.broker.publish(&room(), &frame("z"));
    assert!(next_publish(&mut b).await.contains(r#""z""#), "b got a's message once");
}

contract!(a_publish_to_a_room_skips_the_instances_not_in_it);
async fn a_publish_to_a_room_skips_the_instances_not_in_it(deployment: Deployment) {
    let (mut a, mut b) = (deployment.instance("a").await, deployment.instance("b").await);
    a.join("lobby", "alice").await;
    b.join("elsewhere", "bob").await;
    a.seams.broker.publish(&Target::Room("lobby".into()), &frame("x"));
    a.seams.broker.publish(&Target::Room("elsewhere".into()), &frame("y"));
    if deployment.connects_instances() {
        assert!(next_publish(&mut b).await.contains(r#""y""#), "the room b listens to, only");
    }
    assert_eq!(publishes(&mut b), 0);
}

contract!(when_subscribed_hands_its_delivery_to_the_shard);
async fn when_subscribed_hands_its_delivery_to_the_shard(deployment: Deployment) {
    let mut a = deployment.instance("a").await;
    a.join("lobby", "alice").await;
    // `join` waits through `when_subscribed`; a second one after nothing new is handed over too.
    a.subscribed().await;
    assert!(a.seams.broker.is_ready());
}
