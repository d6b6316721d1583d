//! The broker's wire contract as loadgen speaks it (see docs/protocol.md).
//!
//! Owns: the probe carried in every published message (`data.p` publisher, `data.s` sequence, `data.t`
//! send time in ns since the Unix epoch) and its parsing, in place: no JSON decode, no allocation.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch: comparable across the worker processes on one machine.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Writes a chat message for `room` carrying the probe into `out` (cleared first).
pub fn write_chat(out: &mut String, room: &str, publisher: u32, seq: u64, padding: &str) {
    write_room_chat(out, room, (publisher, seq), padding, None);
}

/// The same with an id, `p<publisher>-<seq>-<run>`: the broker acks it, and knows a resend of it.
pub fn write_chat_with_id(
    out: &mut String,
    room: &str,
    probe: (u32, u64),
    padding: &str,
    run: &str,
) {
    write_room_chat(out, room, probe, padding, Some(run));
}

fn write_room_chat(
    out: &mut String,
    room: &str,
    (publisher, seq): (u32, u64),
    padding: &str,
    run: Option<&str>,
) {
    out.clear();
    out.push_str(r#"{"type":"chat","#);
    if let Some(run) = run {
        let _ = write!(out, r#""id":"p{publisher}-{seq}-{run}","#);
    }
    let _ = write!(
        out,
        r#""room":"{room}","data":{{"p":{publisher},"s":{seq},"t":{},"content":"{padding}"}}}}"#,
        now_ns()
    );
}

/// Writes a join of `room` resuming from `(seq, epoch)` into `out` (cleared first).
pub fn write_resume(out: &mut String, room: &str, (seq, epoch): (u64, &str)) {
    out.clear();
    let _ = write!(
        out,
        r#"{{"type":"join","room":"{room}","id":"rejoin-{room}","data":{{"since":{{"seq":{seq},"epoch":"{epoch}"}}}}}}"#
    );
}

/// The `seq` and `epoch` a room frame carries. The broker writes them after `data`, so they are
/// the last of their names in the frame, whatever the data holds.
pub fn stream_position(text: &str) -> Option<(u64, &str)> {
    const SEQ: &str = r#""seq":"#;
    const EPOCH: &str = r#""epoch":""#;
    let (seq, _) = number(&text[text.rfind(SEQ)? + SEQ.len()..])?;
    let epoch = &text[text.rfind(EPOCH)? + EPOCH.len()..];
    Some((seq, &epoch[..epoch.find('"')?]))
}

/// The probe sequence a chat id written by [`write_chat_with_id`] names, from a frame that starts
/// with it (an ack or an error: `{"type":"ack","id":"p3-42-<run>",...}`).
pub fn acked_seq(text: &str) -> Option<u64> {
    const ID: &str = r#""id":"p"#;
    let id = &text[text.find(ID)? + ID.len()..];
    let (_, rest) = number(id)?;
    Some(number(rest.strip_prefix('-')?)?.0)
}

/// The publisher number global messages carry (no connection has it).
pub const GLOBAL_PUBLISHER: u32 = u32::MAX;

/// Writes a global message (no room: every connection gets it) carrying the probe into `out`.
pub fn write_global(out: &mut String, seq: u64) {
    out.clear();
    let _ = write!(
        out,
        r#"{{"type":"chat","data":{{"p":{GLOBAL_PUBLISHER},"s":{seq},"t":{},"content":"global"}}}}"#,
        now_ns()
    );
}

/// What a received message probe says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub p: u32,
    pub s: u64,
    pub t: u64,
}

/// The probe of a chat frame sent by loadgen; `None` for anything else (presence, acks, errors).
///
/// Read in place, without a JSON decode: the broker passes `data` through as loadgen wrote it, so
/// a chat frame holds `"type":"chat"` and `"data":{"p":P,"s":S,"t":T,` verbatim. Nothing is
/// allocated.
pub fn parse_probe(text: &str) -> Option<Probe> {
    const DATA: &str = r#""data":{"p":"#;
    const TYPE: &str = r#""type":"#;
    // The frame's own type, not one of a message it quotes (`unread` carries the last message).
    let kind = &text[text.find(TYPE)? + TYPE.len()..];
    if !kind.starts_with(r#""chat""#) {
        return None;
    }
    let rest = &text[text.find(DATA)? + DATA.len()..];
    let (p, rest) = number(rest)?;
    let (s, rest) = number(rest.strip_prefix(r#","s":"#)?)?;
    let (t, _) = number(rest.strip_prefix(r#","t":"#)?)?;
    Some(Probe { p: u32::try_from(p).ok()?, s, t })
}

/// The decimal number `text` starts with, and what follows it.
fn number(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    Some((text[..digits].parse().ok()?, &text[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_chat_parses_back_to_its_probe() {
        let mut out = String::new();
        write_chat(&mut out, "r7", 3, 42, "xx");
        let sent: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(sent["room"], "r7");
        // The broker adds id, from and timestamp around the same data.
        let delivered = out.replace(r#"{"type":"chat""#, r#"{"id":"a","type":"chat","from":"u""#);
        let probe = parse_probe(&delivered).unwrap();
        assert_eq!((probe.p, probe.s), (3, 42));
        assert!(probe.t > 0);
        assert_eq!(parse_probe(r#"{"type":"presence","data":{"user":"u","status":"join"}}"#), None);
        let unread =
            format!(r#"{{"type":"unread","room":"r7","data":{{"last_message":{delivered}}}}}"#);
        assert_eq!(parse_probe(&unread), None, "a chat quoted by another frame is no delivery");
        assert_eq!(parse_probe(r#"{"type":"chat","data":{"p":1,"s":"x"}}"#), None, "not numbers");
        assert_eq!(parse_probe(r#"{"type":"chat","data":{"p":99999999999,"s":1,"t":1}}"#), None);
    }

    #[test]
    fn a_chat_with_an_id_is_acked_by_it_and_its_frame_tells_the_stream_position() {
        let mut out = String::new();
        write_chat_with_id(&mut out, "r7", (3, 42), "xx", "k2x");
        let sent: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (sent["id"].as_str(), sent["data"]["s"].as_u64()),
            (Some("p3-42-k2x"), Some(42))
        );
        assert_eq!(acked_seq(r#"{"type":"ack","id":"p3-42-k2x","seq":9}"#), Some(42));
        assert_eq!(acked_seq(r#"{"type":"ack","id":"j1"}"#), None);
        let delivered = r#"{"id":"p3-42","type":"chat","room":"r7","from":"lg-3","data":{"seq":1,"epoch":"x"},"timestamp":"t","seq":45,"epoch":"e1f"}"#;
        assert_eq!(stream_position(delivered), Some((45, "e1f")));
        assert_eq!(stream_position(r#"{"type":"presence"}"#), None);
    }

    #[test]
    fn a_resume_join_names_the_room_and_the_place() {
        let mut out = String::from("left over");
        write_resume(&mut out, "r7", (45, "e1f"));
        let join: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(join["type"], "join");
        assert_eq!(join["room"], "r7");
        assert_eq!(join["data"]["since"], serde_json::json!({"seq": 45, "epoch": "e1f"}));
        assert_eq!(
            acked_seq(&format!(r#"{{"type":"ack","id":"{}"}}"#, join["id"].as_str().unwrap())),
            None
        );
    }
}
