//! A presence storm with the default flags: hundreds of connections join one room at once, then a
//! hundred leave at once. Nobody is evicted, every member's view (its presence query, then the
//! events) ends equal to the room, and the events come coalesced, not one frame per change.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use serde_json::json;

use crate::common::{presence_changes, start_server, Client};

const JOINERS: usize = 400;
const LEAVERS: usize = 100;

/// A member's view of who is in the room, and how many presence events built it.
struct View {
    client: Client,
    users: BTreeSet<String>,
    events: usize,
}

impl View {
    /// Reads until the view is `wanted` (the query answer first, then events).
    async fn until(&mut self, wanted: &BTreeSet<String>) {
        while self.users != *wanted {
            let frame = self.client.recv_type("presence").await;
            if let Some(users) = frame["data"]["users"].as_array() {
                self.users.extend(users.iter().filter_map(|u| u.as_str().map(str::to_owned)));
                continue;
            }
            self.events += 1;
            for (user, status) in presence_changes(&frame) {
                if status == "join" {
                    self.users.insert(user);
                } else {
                    self.users.remove(&user);
                }
            }
        }
    }
}

#[tokio::test]
async fn hundreds_joining_one_room_at_once_are_told_coalesced_and_nobody_is_evicted() {
    let server = start_server().await;
    let paths: Vec<String> = (0..JOINERS).map(|n| format!("/ws?user=u{n}&room=storm")).collect();
    let connects = paths.iter().map(|path| server.connect(path));
    let mut views: Vec<View> = join_all(connects)
        .await
        .into_iter()
        .map(|client| View { client, users: BTreeSet::new(), events: 0 })
        .collect();
    for view in &mut views {
        view.client.send(json!({"type": "presence", "room": "storm", "id": "q"})).await;
    }
    let everyone: BTreeSet<String> = (0..JOINERS).map(|n| format!("u{n}")).collect();
    for view in &mut views {
        view.until(&everyone).await;
    }
    let leavers: Vec<View> = views.drain(..LEAVERS).collect();
    join_all(leavers.into_iter().map(|mut view| async move { view.client.ws.close(None).await }))
        .await;
    let stayed: BTreeSet<String> = (LEAVERS..JOINERS).map(|n| format!("u{n}")).collect();
    for view in &mut views {
        view.until(&stayed).await;
    }
    assert_eq!(server.metric("wsbroker_slow_consumer_evictions_total").await, 0, "nobody evicted");
    let most = views.iter().map(|view| view.events).max().unwrap();
    assert!(
        most < (JOINERS + LEAVERS) / 4,
        "{} joins and leaves reached each member in at most {most} presence frames",
        JOINERS + LEAVERS
    );
}
