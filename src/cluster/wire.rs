//! The cluster's names and payloads in Redis: channel and key names, and the message envelope.
//!
//! Owns: the naming scheme (docs/cluster.md). Must not: talk to Redis.
//!
//! A message on a channel is `<instance id>\n<frame>`: the frame exactly as local clients get it, so
//! a receiving instance checks the sender, wraps the bytes and fans them out without decoding JSON.

use crate::mailbox::Target;
use crate::protocol::Frame;

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

    pub fn user_channel(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    pub fn global_channel(&self) -> String {
        format!("{}:global", self.prefix)
    }

    /// The channels a publish to `target` goes to.
    pub fn channels_of(&self, target: &Target) -> Vec<String> {
        match target {
            Target::Room(room) => vec![self.room_channel(room)],
            Target::User(user) => vec![self.user_channel(user)],
            Target::Users(users) => users.iter().map(|user| self.user_channel(user)).collect(),
            Target::All => vec![self.global_channel()],
        }
    }

    /// Who a message on `channel` is for; `None` for a channel that is not ours.
    pub fn target_of(&self, channel: &str) -> Option<Target> {
        let rest = channel.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        if rest == "global" {
            return Some(Target::All);
        }
        if let Some(room) = rest.strip_prefix("room:") {
            return crate::protocol::validate_room(room).ok().map(Target::Room);
        }
        let user = rest.strip_prefix("user:")?;
        crate::protocol::validate_user(user).ok().map(Target::User)
    }

    /// Hash of a room's stream: its last `seq` and its `epoch`.
    pub fn stream_of(&self, room: &str) -> String {
        format!("{}:s:{room}", self.prefix)
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
    pub fn rooms_of(&self, instance: &str) -> String {
        format!("{}:i:{instance}:rooms", self.prefix)
    }

    /// Set of the users in `room` on `instance`.
    pub fn room_members_of(&self, instance: &str, room: &str) -> String {
        format!("{}:i:{instance}:r:{room}", self.prefix)
    }
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
        for target in [Target::Room("lobby".into()), Target::User("alice".into()), Target::All] {
            let channels = names.channels_of(&target);
            assert_eq!(channels.len(), 1);
            assert_eq!(
                format!("{:?}", names.target_of(&channels[0]).unwrap()),
                format!("{target:?}")
            );
        }
        assert_eq!(
            names.channels_of(&Target::Users(vec!["a".into(), "b".into()])),
            ["wsb:user:a", "wsb:user:b"]
        );
        assert!(names.target_of("other:room:lobby").is_none());
        assert!(names.target_of("wsb:room:").is_none(), "an invalid room name");
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
