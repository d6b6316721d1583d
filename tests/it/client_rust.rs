//! The Rust client (clients/rust) against a broker process that hangs, is killed and restarts on
//! the same port with chats in flight: every chat is acked once and delivered once, in order.

use std::time::Duration;

use serde_json::json;
use wsbroker_client::{Client, Event, Options};

use crate::common::{spawn_broker, BrokerProcess, TempDir, WAIT};

async fn broker(listen: &str, database: &str) -> BrokerProcess {
    let args = ["--listen", listen, "--database-url", database, "--rate-limit", "0"];
    spawn_broker(&args).await.0
}

fn quick(url: &str, user: &str) -> Options {
    let mut options = Options::new(url, user);
    options.backoff = Duration::from_millis(50);
    options.max_backoff = Duration::from_millis(500);
    options.answer_timeout = Duration::from_secs(1);
    options
}

/// The next event `wanted` picks (the others skipped), within [`WAIT`].
async fn next(client: &mut Client, wanted: impl Fn(&Event) -> bool) -> Event {
    let found = async {
        loop {
            let event = client.next_event().await.expect("the client runs");
            if wanted(&event) {
                return event;
            }
        }
    };
    tokio::time::timeout(WAIT, found).await.expect("the event came")
}

#[tokio::test]
async fn chats_through_a_hang_a_kill_and_a_restart_are_acked_and_delivered_once_in_order() {
    let dir = TempDir::new("rust-client");
    let database = dir.sqlite_url();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("ws://{listen}/ws");
    let mut process = broker(&listen, &database).await;
    let (mut alice, mut bob) =
        (Client::connect(quick(&url, "alice")), Client::connect(quick(&url, "bob")));
    for client in [&mut alice, &mut bob] {
        client.join("lobby");
        next(client, |event| matches!(event, Event::Joined { room } if room == "lobby")).await;
    }
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(alice.send("lobby", json!({"content": format!("m{i}")})));
    }
    let mut acked = Vec::new();
    while acked.len() < 5 {
        if let Event::Acked { id, .. } =
            next(&mut alice, |e| matches!(e, Event::Acked { .. })).await
        {
            acked.push(id);
        }
    }
    let pid = process.0.id().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    for i in 5..10 {
        sent.push(alice.send("lobby", json!({"content": format!("m{i}")})));
    }
    next(&mut alice, |event| matches!(event, Event::Reconnecting { .. })).await;
    drop(process);
    process = broker(&listen, &database).await;
    while acked.len() < 10 {
        match next(&mut alice, |e| matches!(e, Event::Acked { .. } | Event::Failed { .. })).await {
            Event::Acked { id, .. } => acked.push(id),
            failed => panic!("a chat failed: {failed:?}"),
        }
    }
    assert_eq!(acked, sent, "each acked once, in order");
    let mut got = Vec::new();
    while got.len() < 10 {
        if let Event::Message(frame) = next(&mut bob, |e| matches!(e, Event::Message(_))).await {
            got.push(frame["data"]["content"].as_str().unwrap().to_owned());
        }
    }
    let wanted: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(got, wanted, "bob got each once, in order");
    drop(process);
}
