//! The broker's wire contract as loadgen speaks it (see docs/protocol.md).
//!
//! Owns: the probe carried in every published message (`data.p` publisher, `data.s` sequence, `data.t`
//! send time in ns since the Unix epoch) and its parsing. Parsing borrows from the received frame and
//! allocates nothing.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// Nanoseconds since the Unix epoch: comparable across the worker processes on one machine.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Writes a chat message for `room` carrying the probe into `out` (cleared first).
pub fn write_chat(out: &mut String, room: &str, publisher: u32, seq: u64, padding: &str) {
    out.clear();
    let _ = write!(
        out,
        r#"{{"type":"chat","room":"{room}","data":{{"p":{publisher},"s":{seq},"t":{},"content":"{padding}"}}}}"#,
        now_ns()
    );
}

/// What a received message probe says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Probe {
    pub p: u32,
    pub s: u64,
    pub t: u64,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    data: Option<MaybeProbe>,
}

#[derive(Deserialize)]
struct MaybeProbe {
    p: Option<u32>,
    s: Option<u64>,
    t: Option<u64>,
}

/// The probe of a chat frame sent by loadgen; `None` for anything else (presence, acks, errors).
pub fn parse_probe(text: &str) -> Option<Probe> {
    let incoming: Incoming<'_> = serde_json::from_str(text).ok()?;
    if incoming.kind != "chat" {
        return None;
    }
    let data = incoming.data?;
    Some(Probe { p: data.p?, s: data.s?, t: data.t? })
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
    }
}
