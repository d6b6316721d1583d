//! The cache's bookkeeping: presence on first and last connections, rooms listing each user once.

use std::sync::Arc;

use super::*;

fn connection(user: &str, now: Instant) -> Connection {
    let (outbox, _) = flume::bounded(4);
    Connection { last_activity: now, ..Connection::new(Arc::from(user), outbox.into(), None) }
}

#[test]
fn presence_fires_on_a_users_first_and_last_connection_only() {
    let now = Instant::now();
    let room: Room = Arc::from("r");
    let mut cache = LocalCache::default();
    cache.insert(1, connection("alice", now));
    cache.insert(2, connection("alice", now));
    cache.insert(3, connection("bob", now));
    assert_eq!(cache.join(1, &room), Some(Joined { user_joined: true, room_new_here: true }));
    assert_eq!(cache.join(2, &room), Some(Joined { user_joined: false, room_new_here: false }));
    assert_eq!(cache.join(2, &room), None, "joining twice changes nothing");
    assert_eq!(cache.join(3, &room), Some(Joined { user_joined: true, room_new_here: false }));
    let users = cache.room_users("r", now, Duration::from_secs(30));
    assert_eq!(users, [(Arc::from("alice"), false), (Arc::from("bob"), false)], "each user once");
    let left = cache.leave(1, &room).unwrap();
    assert!(!left.user_left && !left.room_empty_here);
    let (_, left) = cache.remove(2).unwrap();
    assert_eq!(left, vec![Left { room: room.clone(), user_left: true, room_empty_here: false }]);
    assert_eq!(cache.room_outboxes("r").count(), 1);
    let (_, left) = cache.remove(3).unwrap();
    assert!(left[0].user_left && left[0].room_empty_here);
    assert!(cache.remove(3).is_none(), "a removed connection is gone");
}

#[test]
fn removing_every_connection_leaves_the_cache_empty() {
    let now = Instant::now();
    let mut cache = LocalCache::default();
    for conn in 0..10 {
        cache.insert(conn, connection(&format!("u{}", conn % 3), now));
        cache.join(conn, &Arc::from(format!("room{}", conn % 4))).unwrap();
    }
    assert_eq!(cache.online_users().len(), 3);
    for conn in 0..10 {
        cache.remove(conn).unwrap();
    }
    assert!(cache.is_empty() && cache.users.is_empty() && cache.rooms.is_empty());
}

#[test]
fn a_user_is_away_only_when_all_its_connections_are_idle() {
    let start = Instant::now();
    let away_after = Duration::from_secs(30);
    let mut cache = LocalCache::default();
    cache.insert(1, connection("alice", start));
    cache.insert(2, connection("alice", start));
    let later = start + Duration::from_secs(31);
    assert_eq!(cache.user_status("alice", later, away_after), UserStatus::Away);
    cache.touch(2, later);
    assert_eq!(cache.user_status("alice", later, away_after), UserStatus::Online);
    assert_eq!(cache.user_status("nobody", later, away_after), UserStatus::Offline);
}

#[test]
fn a_user_is_told_away_once_with_its_rooms_and_back_on_its_next_sign() {
    let start = Instant::now();
    let away_after = Duration::from_secs(30);
    let mut cache = LocalCache::default();
    cache.insert(1, connection("alice", start));
    cache.insert(2, connection("alice", start + Duration::from_secs(20)));
    cache.insert(3, connection("bob", start));
    cache.join(1, &Arc::from("a")).unwrap();
    cache.join(2, &Arc::from("b")).unwrap();
    cache.join(2, &Arc::from("a")).unwrap();
    let later = start + Duration::from_secs(31);
    let away = cache.newly_away(later, away_after);
    assert_eq!(away, vec![(UserId::from("bob"), vec![])], "alice's second is active: not away");
    assert!(cache.newly_away(later, away_after).is_empty(), "told once");
    let later = start + Duration::from_secs(51);
    let rooms = vec![Room::from("a"), Room::from("b")];
    assert_eq!(cache.newly_away(later, away_after), vec![(UserId::from("alice"), rooms.clone())]);
    assert_eq!(cache.touch(1, later), Some((UserId::from("alice"), rooms)), "back, in both rooms");
    assert_eq!(cache.touch(2, later), None, "back already");
    assert_eq!(cache.back(&UserId::from("bob")), Some((UserId::from("bob"), vec![])));
}
