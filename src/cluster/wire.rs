//! The cluster's names and payloads in Redis: channel and key names, and the message envelope.
//!
//! Owns: the naming scheme (docs/cluster.md). Must not: talk to Redis.
//!
//! A message on a channel is `<instance id>\n<frame>`: the frame exactly as local clients get it, so
//! a receiving instance checks the sender, wraps the bytes and fans them out without decoding JSON.
//! A message for users goes to the channel of each instance where one of them is online, addressed:
//! `<user>\n<user>...\n\n<instance id>\n<frame>` (user ids hold no control characters).

use crate::mailbox::Target;
use crate::protocol::{Frame, UserId};

/// Names under one prefix (`--redis-prefix`), so several clusters can share a Redis.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub fn room_channel(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    /// The channel of one instance: messages for the users online there.
    pub fn instance_channel(&self, instance: &str) -> String {
        format!("{}:instance:{instance}", self.prefix)
    }

    /// Where moderation actions (a room's rules, a kick, an instance ban) go to every instance.
    pub fn notice_channel(&self) -> String {
        format!("{}:moderation", self.prefix)
    }

    pub fn global_channel(&self) -> String {
        format!("{}:global", self.prefix)
    }

    /// Where a publish to `target` goes.
    pub fn route_of<'a>(&self, target: &'a Target) -> Route<'a> {
        match target {
            Target::Room(room) => Route::Channel(self.room_channel(room)),
            Target::User(user) => Route::Users(std::slice::from_ref(user)),
            Target::Users(users) => Route::Users(users),
            Target::All => Route::Channel(self.global_channel()),
        }
    }

    /// Who a message on a room or the global `channel` is for; `None` for any other channel.
    pub fn target_of(&self, channel: &str) -> Option<Target> {
        let rest = channel.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        if rest == "global" {
            return Some(Target::All);
        }
        let room = rest.strip_prefix("room:")?;
        crate::protocol::validate_room(room).ok().map(Target::Room)
    }

    /// Hash of a room's stream: its last `seq` and its `epoch`.
    pub fn stream_of(&self, room: &str) -> String {
        format!("{}:s:{room}", self.prefix)
    }

    /// Prefix of the keys that remember, for `--dedup-window`, the seq a sender's id got in a room
    /// (`<prefix>:sent:<room>:<sender>\n<id>`).
    pub fn sent_of(&self, room: &str) -> String {
        format!("{}:sent:{room}:", self.prefix)
    }

    /// Capped Redis stream of a room's last numbered messages (entry id `<seq>-1`), for resumes.
    pub fn recent_of(&self, room: &str) -> String {
        format!("{}:sx:{room}", self.prefix)
    }

    /// Set of the users online on `instance`.
    pub fn users_of(&self, instance: &str) -> String {
        format!("{}:i:{instance}:users", self.prefix)
    }

    /// Set of the rooms with members on `instance`.
    /// The users of `instance` that it told away.
    pub fn away_of(&self, instance: &str) -> String {
        format!("{}:i:{instance}:away", self.prefix)
    }

    pub fn rooms_of(&self, instance: &str) -> String {
        format!("{}:i:{instance}:rooms", self.prefix)
    }

    /// Set of the users in `room` on `instance`.
    pub fn room_members_of(&self, instance: &str, room: &str) -> String {
        format!("{}:i:{instance}:r:{room}", self.prefix)
    }
}

/// Where a publish goes: one channel, or the instances where these users are online (the
/// direct script, [`super::presence::Presence::add_direct`], finds them).
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Channel(String),
    Users(&'a [UserId]),
}

/// `<instance>\n<frame>`.
pub fn encode_payload(instance: &str, frame: &Frame) -> Vec<u8> {
    let mut payload = Vec::with_capacity(instance.len() + 1 + frame.len());
    payload.extend_from_slice(instance.as_bytes());
    payload.push(b'\n');
    payload.extend_from_slice(frame.as_bytes());
    payload
}

/// The header of a numbered room message: `<instance>#<seq>#<epoch>` (the stamp script writes it).
pub fn decode_numbered(header: &str) -> Option<(&str, u64, &str)> {
    let mut parts = header.splitn(3, '#');
    let (sender, seq, epoch) = (parts.next()?, parts.next()?, parts.next()?);
    Some((sender, seq.parse().ok()?, epoch))
}

/// The users an addressed payload is for (at least one, each valid), and the payload after them.
pub fn decode_addressed(payload: &[u8]) -> Option<(Target, &[u8])> {
    let split = payload.windows(2).position(|pair| pair == b"\n\n")?;
    let list = std::str::from_utf8(&payload[..split]).ok()?;
    let users: Vec<UserId> =
        list.split('\n').map(crate::protocol::validate_user).collect::<Result<_, _>>().ok()?;
    let target = match <[UserId; 1]>::try_from(users) {
        Ok([user]) => Target::User(user),
        Err(users) => Target::Users(users),
    };
    Some((target, &payload[split + 2..]))
}

/// The header (the sender, for a numbered message with its place) and frame of a payload; `None`
/// when it is not one of ours.
pub fn decode_payload(payload: &[u8]) -> Option<(&str, Frame)> {
    let split = payload.iter().position(|&byte| byte == b'\n')?;
    let sender = std::str::from_utf8(&payload[..split]).ok()?;
    let frame = std::str::from_utf8(&payload[split + 1..]).ok()?;
    Some((sender, Frame::from(frame)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_their_target_and_foreign_ones_are_ignored() {
        let names = Names::new("wsb");
        for target in [Target::Room("lobby".into()), Target::All] {
            let Route::Channel(channel) = names.route_of(&target) else { panic!("{target:?}") };
            assert_eq!(format!("{:?}", names.target_of(&channel).unwrap()), format!("{target:?}"));
        }
        let users: Vec<UserId> = vec!["a".into(), "b".into()];
        assert_eq!(names.route_of(&Target::Users(users.clone())), Route::Users(&users));
        assert_eq!(names.route_of(&Target::User("a".into())), Route::Users(&users[..1]));
        assert!(names.target_of(&names.instance_channel("n1")).is_none(), "addressed, not named");
        assert!(names.target_of("other:room:lobby").is_none());
        assert!(names.target_of("wsb:room:").is_none(), "an invalid room name");
    }

    #[test]
    fn addressed_payloads_name_their_users_before_the_payload() {
        let (target, rest) = decode_addressed(b"alice\nbob smith\n\nnode-1\n{}").unwrap();
        assert_eq!(
            format!("{target:?}"),
            format!("{:?}", Target::Users(vec!["alice".into(), "bob smith".into()]))
        );
        assert_eq!(rest, b"node-1\n{}");
        let (target, rest) = decode_addressed(b"alice\n\nnode-1\n{\"a\":\"\n\n\"}").unwrap();
        assert_eq!(format!("{target:?}"), format!("{:?}", Target::User("alice".into())));
        assert_eq!(rest, b"node-1\n{\"a\":\"\n\n\"}", "only the first blank line ends the list");
        assert!(decode_addressed(b"\n\nnode-1\n{}").is_none(), "no user");
        assert!(decode_addressed(b"alice\nnode-1\n{}").is_none(), "no end of the list");
        assert!(decode_addressed(b"\xff\n\nnode-1\n{}").is_none(), "not UTF-8");
    }

    #[test]
    fn payloads_carry_their_sender_and_the_frame_untouched() {
        let frame = Frame::from(r#"{"type":"chat","data":{"content":"a\nb"}}"#);
        let payload = encode_payload("node-1", &frame);
        let (sender, decoded) = decode_payload(&payload).unwrap();
        assert_eq!((sender, decoded.as_str()), ("node-1", frame.as_str()));
        assert!(decode_payload(b"no separator").is_none());
        let (header, _) = decode_payload(b"node-1#42#e0f1\n{}").unwrap();
        assert_eq!(decode_numbered(header), Some(("node-1", 42, "e0f1")));
        assert_eq!(decode_numbered("node-1"), None);
        assert_eq!(decode_numbered("node-1#x#e"), None);
        assert!(decode_payload(b"node\n\xff\xfe").is_none(), "not UTF-8");
    }
}
