//! The `PresenceManager` contract: who announces a change, what the answers cover, and a handover
//! that ends.

use std::time::Duration;

use tokio::sync::oneshot;
use wsbroker::broker::{Announce, Coverage, LocalChange, PresenceManager, Question};
use wsbroker::mailbox::Delivery;
use wsbroker::protocol::PresenceStatus;

use super::{Deployment, Instance};
use crate::common::WAIT;
use crate::contract;

/// The next join or leave of the deployment that the manager tells this instance's home: (user,
/// joined).
async fn next_told(instance: &mut Instance) -> (String, bool) {
    match instance.next(|delivery| matches!(delivery, Delivery::PresenceChange { .. })).await {
        Delivery::PresenceChange { user, status, .. } => {
            (user.to_string(), status == PresenceStatus::Join)
        }
        _ => unreachable!(),
    }
}

fn left(instance: &Instance, room: &str, user: &str) -> Announce {
    let change = LocalChange::Left { room: room.into(), user: user.into() };
    instance.seams.presence.local_change(change)
}

contract!(a_join_and_a_leave_are_announced_once_for_the_whole_deployment);
async fn a_join_and_a_leave_are_announced_once_for_the_whole_deployment(deployment: Deployment) {
    let (mut a, mut b) = (deployment.instance("a").await, deployment.instance("b").await);
    if !deployment.connects_instances() {
        // Each instance is the whole deployment: the shard that made a change announces it.
        assert_eq!(a.join("lobby", "alice").await, Announce::Here);
        assert_eq!(left(&a, "lobby", "alice"), Announce::Here);
        assert!(a.drain().is_empty() && b.drain().is_empty(), "the manager tells nobody");
        return;
    }
    // The instance where a change is the deployment's tells its home (which publishes the event).
    assert_eq!(a.join("lobby", "alice").await, Announce::ByManager);
    assert_eq!(next_told(&mut a).await, ("alice".into(), true));
    // Alice on a second instance: no second join, nor a leave when she leaves it.
    assert_eq!(b.join("lobby", "alice").await, Announce::ByManager);
    b.join("lobby", "bob").await;
    assert_eq!(next_told(&mut b).await, ("bob".into(), true), "nothing told of alice before");
    assert_eq!(left(&b, "lobby", "alice"), Announce::ByManager);
    left(&b, "lobby", "bob");
    assert_eq!(next_told(&mut b).await, ("bob".into(), false), "nothing told of alice before");
    left(&a, "lobby", "alice");
    assert_eq!(next_told(&mut a).await, ("alice".into(), false), "her last connection left");
}

async fn ask<T>(
    manager: &dyn PresenceManager,
    question: impl FnOnce(oneshot::Sender<T>) -> Question,
) -> T {
    let (reply, answer) = oneshot::channel();
    manager.ask(question(reply));
    tokio::time::timeout(WAIT, answer).await.expect("answered in time").expect("answered")
}

/// Asks until `wanted` holds of the answers (presence spreads between instances as it can).
async fn until_answers(manager: &dyn PresenceManager, wanted: impl Fn(&[String], bool) -> bool) {
    let answers = async {
        loop {
            let online: Vec<String> =
                ask(manager, Question::OnlineUsers).await.iter().map(|u| u.to_string()).collect();
            let in_room: Vec<String> =
                ask(manager, |reply| Question::RoomUsers("lobby".into(), reply))
                    .await
                    .iter()
                    .map(|u| u.to_string())
                    .collect();
            let alice = ask(manager, |reply| Question::UserOnline("alice".into(), reply)).await;
            let seen =
                online.contains(&"alice".to_owned()) && in_room.contains(&"alice".to_owned());
            if wanted(&online, alice) && (seen == alice) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, answers).await.expect("the answers came to agree");
}

contract!(the_answers_cover_the_users_of_the_other_instances);
async fn the_answers_cover_the_users_of_the_other_instances(deployment: Deployment) {
    let (mut a, b) = (deployment.instance("a").await, deployment.instance("b").await);
    a.join("lobby", "alice").await;
    if !deployment.connects_instances() {
        assert_eq!(b.seams.presence.coverage(), Coverage::Instance);
        until_answers(b.seams.presence.as_ref(), |online, alice| online.is_empty() && !alice).await;
        return;
    }
    assert_eq!(b.seams.presence.coverage(), Coverage::Cluster);
    until_answers(b.seams.presence.as_ref(), |_, alice| alice).await;
    left(&a, "lobby", "alice");
    a.seams.presence.local_change(LocalChange::UserOffline("alice".into()));
    until_answers(b.seams.presence.as_ref(), |_, alice| !alice).await;
}

contract!(a_handover_holds_the_leaves_until_it_ends);
async fn a_handover_holds_the_leaves_until_it_ends(deployment: Deployment) {
    let (mut a, b) = (deployment.instance("a").await, deployment.instance("b").await);
    a.join("lobby", "alice").await;
    if deployment.connects_instances() {
        until_answers(b.seams.presence.as_ref(), |_, alice| alice).await;
    }
    a.seams.presence.begin_handover();
    left(&a, "lobby", "alice");
    a.seams.presence.local_change(LocalChange::UserOffline("alice".into()));
    let handed = a.seams.presence.finish_handover(Duration::ZERO);
    tokio::time::timeout(WAIT, handed).await.expect("the handover ends").expect("and says so");
    until_answers(b.seams.presence.as_ref(), |_, alice| !alice).await;
}
