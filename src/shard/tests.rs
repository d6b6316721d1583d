//! The shard's ordering rules, checked deterministically by driving one shard by hand.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::oneshot;

use super::*;
use crate::broker::{Numbering, Seams, Sequencer};
use crate::close::CloseReason;
use crate::config::Config;
use crate::directory::ShardId;
use crate::mailbox::{Origin, Registration, ReplayRequest, Stamp, ToSequence};
use crate::protocol;
use crate::protocol::{Action, ClientRequest, MessageType};

struct Peer {
    frames: flume::Receiver<Frame>,
    closed: oneshot::Receiver<CloseReason>,
    registered: oneshot::Receiver<Enrolment>,
}

impl Peer {
    fn next_json(&self) -> Option<Value> {
        self.frames.try_recv().ok().map(|frame| serde_json::from_str(frame.as_str()).unwrap())
    }
}

fn one_shard() -> (Shard, Inbox, Hub) {
    let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
    config.shards = Some(1);
    let (hub, mut inboxes) = Hub::new(config);
    let shard = Shard::new(0, hub.clone());
    (shard, inboxes.remove(0), hub)
}

fn register(shard: &mut Shard, conn: ConnId, user: &str, rooms: &[&str], capacity: usize) -> Peer {
    let (outbox, frames) = flume::bounded(capacity);
    let (closer, closed) = oneshot::channel();
    let (answer, registered) = oneshot::channel();
    let rooms = rooms.iter().map(|r| Room::from(*r)).collect();
    let remote = "127.0.0.1:1".parse().unwrap();
    let permissions = crate::auth::Permissions::unrestricted();
    let registration = Registration {
        conn,
        user: Arc::from(user),
        rooms,
        since: Vec::new(),
        outbox: outbox.into(),
        closer: Some(closer),
        remote,
        permissions,
    };
    shard.on_command(Command::Register(Box::new(registration), answer));
    Peer { frames, closed, registered }
}

fn request(conn: ConnId, id: &str, action: Action) -> Command {
    Command::Request { conn, request: ClientRequest { id: Some(id.into()), action } }
}

#[test]
fn a_join_is_announced_only_after_the_directory_lists_the_shard() {
    let (mut shard, _inbox, hub) = one_shard();
    let alice = register(&mut shard, 1, "alice", &[], 16);
    shard.finish_batch();
    shard.on_command(request(1, "j", Action::Join(Room::from("r"))));
    assert!(hub.directory().shards_of("r").is_empty(), "not committed yet");
    assert!(alice.next_json().is_none(), "the presence event and the ack wait for the commit");
    shard.finish_batch();
    assert!(hub.directory().shards_of("r").contains(0));
    assert_eq!(alice.next_json().unwrap()["data"]["status"], "join");
    assert_eq!(alice.next_json().unwrap()["type"], "ack");
}

#[test]
fn a_registration_with_rooms_is_confirmed_only_after_the_commit() {
    let (mut shard, _inbox, hub) = one_shard();
    let mut bob = register(&mut shard, 1, "bob", &["lobby"], 16);
    assert!(bob.registered.try_recv().is_err(), "the 101 must wait");
    shard.finish_batch();
    assert!(hub.directory().shards_of("lobby").contains(0));
    assert_eq!(bob.registered.try_recv(), Ok(Enrolment::Accepted));
}

#[test]
fn a_delivery_waiting_before_a_leave_reaches_the_leaving_member() {
    let (mut shard, mut inbox, hub) = one_shard();
    let carol = register(&mut shard, 1, "carol", &["r"], 16);
    shard.finish_batch();
    carol.next_json();
    let frame = protocol::presence_event_frame("r", "someone", PresenceStatus::Join);
    hub.router().route(Target::Room(Room::from("r")), frame, Instant::now(), None);
    shard.run_batch(Step::Command(request(1, "l", Action::Leave(Room::from("r")))), &mut inbox);
    assert_eq!(carol.next_json().unwrap()["data"]["user"], "someone", "delivered before the leave");
    assert_eq!(carol.next_json().unwrap()["type"], "ack");
    assert!(hub.directory().shards_of("r").is_empty(), "the room emptied and left the directory");
}

#[test]
fn a_full_outbox_evicts_that_connection_alone_with_1008() {
    let (mut shard, _inbox, hub) = one_shard();
    let mut slow = register(&mut shard, 1, "slow", &["r"], 2);
    let fast = register(&mut shard, 2, "fast", &["r"], 64);
    shard.finish_batch();
    while fast.next_json().is_some() {}
    let chat = |n: u32| {
        let text = format!(r#"{{"type":"chat","room":"r","data":{{"content":"{n}"}}}}"#);
        match protocol::parse_client_frame(
            &text,
            "fast",
            protocol::Limits { max_content_chars: 10 },
        ) {
            Ok(protocol::ClientFrame::Request(request)) => request,
            other => panic!("not a chat request: {other:?}"),
        }
    };
    for n in 0..3 {
        shard.on_command(Command::Request { conn: 2, request: chat(n) });
    }
    shard.finish_batch();
    assert_eq!(slow.closed.try_recv(), Ok(close::SLOW_CONSUMER));
    // The presence window ends: the eviction's leave comes in the window's batch (fast's own join
    // was in that window too), like any other change.
    let later = Instant::now() + std::time::Duration::from_secs(1);
    for (room, told) in shard.presence.due(later) {
        shard.tell(room, told);
    }
    shard.finish_batch();
    let contents: Vec<Value> = std::iter::from_fn(|| fast.next_json()).collect();
    assert_eq!(
        contents.iter().filter(|f| f["type"] == "chat").count(),
        3,
        "the fast member got all three"
    );
    assert_eq!(
        contents.last().unwrap()["data"],
        serde_json::json!({"event": "batch", "joined": ["fast"], "left": ["slow"]})
    );
    assert_eq!(
        hub.metrics().shard(0).slow_consumer_evictions.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(shard.cache.get(1).is_none());
}

#[test]
fn an_answer_computed_off_the_shard_goes_through_its_output_and_a_full_outbox_evicts() {
    let (mut shard, inbox, _hub) = one_shard();
    let mut alice = register(&mut shard, 1, "alice", &[], 1);
    shard.finish_batch();
    let answer = || protocol::reply_frame(MessageType::Pong, Some("p"));
    shard.on_delivery(Delivery::Reply { conn: 1, frame: answer() });
    shard.finish_batch();
    assert_eq!(alice.next_json().unwrap()["id"], "p", "the answer reached its connection");
    shard.on_delivery(Delivery::Reply { conn: 1, frame: answer() });
    shard.on_delivery(Delivery::Reply { conn: 1, frame: answer() });
    shard.finish_batch();
    assert_eq!(alice.closed.try_recv(), Ok(close::SLOW_CONSUMER), "its outbox of 1 was full");
    assert!(inbox.deliveries.is_empty());
}

/// Two shards; `room` is homed on shard 0 and `user` lives on shard 1.
fn two_shards() -> (Shard, Vec<Inbox>, Hub, Room, UserId) {
    two_shards_with(Seams::standalone())
}

fn two_shards_with(seams: Seams) -> (Shard, Vec<Inbox>, Hub, Room, UserId) {
    let mut settings = Config::with_listen("127.0.0.1:0".parse().unwrap());
    settings.shards = Some(2);
    let (router, inboxes) = crate::router::Router::new(2);
    let metrics = crate::metrics::Metrics::new(2);
    let hub = Hub::from_parts(crate::hub::Parts { settings, router, seams, store: None, metrics });
    let router = hub.router();
    let named = |n: usize, shard: usize| {
        (0..).map(|i| format!("{n}-{i}")).find(|name| router.shard_of_user(name) == shard).unwrap()
    };
    let (room, user) = (Room::from(named(0, 0).as_str()), UserId::from(named(1, 1).as_str()));
    (Shard::new(0, hub.clone()), inboxes, hub, room, user)
}

fn room_chat(room: &Room, sender: &UserId, conn: ConnId) -> ToSequence {
    ToSequence {
        room: room.clone(),
        id: "m1".into(),
        sender: sender.clone(),
        kind: MessageType::Chat,
        data: serde_json::value::RawValue::from_string(r#"{"content":"hi"}"#.into()).unwrap(),
        at: 0,
        origin: Origin::Connection { shard: 1, conn, acked: true, admin: false },
    }
}

#[test]
fn a_room_message_ack_never_overtakes_its_fan_out_held_for_a_commit() {
    let (mut home, mut inboxes, _hub, room, sender) = two_shards();
    // A member joins in the same batch as the message: the home holds its output for the commit.
    let member = register(&mut home, 1, "member", &[room.as_ref()], 16);
    home.on_delivery(Delivery::Sequence(Box::new(room_chat(&room, &sender, 7))));
    assert!(inboxes[1].deliveries.is_empty(), "the sender's ack must wait for the fan-out");
    home.finish_batch();
    let chat = std::iter::from_fn(|| member.next_json()).find(|f| f["type"] == "chat");
    assert_eq!(chat.unwrap()["seq"], 1, "the member got the message");
    let ack = inboxes[1].deliveries.try_recv().expect("the sender's shard is told");
    assert!(matches!(ack, Delivery::Stored { conn: 7, seq: Some(1), .. }));
}

#[test]
fn a_commit_told_to_the_room_home_reaches_the_sender_after_the_home_output() {
    let (mut home, mut inboxes, _hub, room, sender) = two_shards();
    // The home numbers the message first (seq 1), as it does before any commit of it.
    home.on_delivery(Delivery::Sequence(Box::new(room_chat(&room, &sender, 6))));
    home.finish_batch();
    while inboxes[1].deliveries.try_recv().is_ok() {}
    let _member = register(&mut home, 1, "member", &[room.as_ref()], 16);
    let (user, id) = (sender.clone(), "m1".to_owned());
    let committed = Delivery::Committed { conn: 7, user, room: Some(room), id, seq: Some(1) };
    home.on_delivery(committed);
    assert!(inboxes[1].deliveries.is_empty(), "held with the home's pending output");
    home.finish_batch();
    let passed_on = inboxes[1].deliveries.try_recv().expect("passed on to the sender's shard");
    assert!(matches!(passed_on, Delivery::Stored { conn: 7, seq: Some(1), .. }));
}

/// A sequencer that takes every message (as the cluster's does) and sends nothing anywhere: the
/// test hands the shard what Redis would (`Stamped`, `Sequenced`) itself.
#[derive(Debug)]
struct Takes;

impl Sequencer for Takes {
    fn stamp(&self, _item: ToSequence, _home: ShardId) -> Numbering<ToSequence> {
        Numbering::Taken
    }
    fn read_stream(&self, request: ReplayRequest, _home: ShardId) -> Numbering<ReplayRequest> {
        Numbering::Refused(request)
    }
}

#[test]
fn in_cluster_mode_an_ack_waits_until_the_home_heard_its_message_back() {
    let (mut home, mut inboxes, _hub, room, sender) =
        two_shards_with(Seams { sequencer: Arc::new(Takes), ..Seams::standalone() });
    let member = register(&mut home, 1, "member", &[room.as_ref()], 16);
    home.finish_batch();
    let epoch: Arc<str> = Arc::from("e1");
    let stamped = Ok(Stamp { seq: 1, epoch: Arc::clone(&epoch), again: false });
    let item = Box::new(room_chat(&room, &sender, 7));
    home.on_delivery(Delivery::Stamped { item, stamped });
    home.finish_batch();
    assert!(inboxes[1].deliveries.is_empty(), "stamped, not yet heard back: no ack yet");
    let frame = protocol::reply_frame(MessageType::Pong, Some("the numbered message"));
    home.on_delivery(Delivery::Sequenced { room, seq: 1, epoch, frame });
    home.finish_batch();
    let heard =
        std::iter::from_fn(|| member.next_json()).find(|f| f["id"] == "the numbered message");
    assert!(heard.is_some(), "the member got the message");
    let ack = inboxes[1].deliveries.try_recv().expect("then the sender's shard is told");
    assert!(matches!(ack, Delivery::Stored { conn: 7, seq: Some(1), .. }));
}
