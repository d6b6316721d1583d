//! The moderation frames a client sends in a room: `mute`, `unmute`, `kick`, `ban`, `unban`,
//! `report`, each answered with `ack` or an error (the rules are the moderation service's).
//!
//! Owns: their `data` shapes and the checks on them. Must not: decide who may.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{validate_user, UserId, MAX_NAME_CHARS};

/// A moderation request, checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moderate {
    /// `duration`: seconds (`None`: until lifted).
    Mute {
        user: UserId,
        duration: Option<i64>,
        reason: Option<String>,
    },
    Unmute {
        user: UserId,
    },
    Kick {
        user: UserId,
        reason: Option<String>,
    },
    Ban {
        user: UserId,
        duration: Option<i64>,
        reason: Option<String>,
    },
    Unban {
        user: UserId,
    },
    /// Report message `id` (by `from`, where two senders used the id).
    Report {
        id: String,
        from: Option<String>,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnUser {
    user: String,
    duration: Option<i64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnMessage {
    id: String,
    from: Option<String>,
    reason: String,
}

/// Whether `kind` is a moderation frame's type.
pub fn is_moderation(kind: &str) -> bool {
    matches!(kind, "mute" | "unmute" | "kick" | "ban" | "unban" | "report")
}

/// The request of a `kind` frame ([`is_moderation`]) with `data`, or why it is malformed.
pub fn parse(kind: &str, data: Option<&RawValue>) -> Result<Moderate, String> {
    let data = data.ok_or_else(|| format!("{kind} needs data"))?;
    if kind == "report" {
        let OnMessage { id, from, reason } = serde_json::from_str(data.get()).map_err(|_| {
            "data must be {\"id\": message id, \"from\"?: its sender, \"reason\": text}".to_owned()
        })?;
        if id.is_empty() || id.chars().count() > MAX_NAME_CHARS {
            return Err("id must be a message id".into());
        }
        return Ok(Moderate::Report { id, from, reason });
    }
    let OnUser { user, duration, reason } = serde_json::from_str(data.get()).map_err(|_| {
        format!(
            "data must be {{\"user\": id, \"duration\"?: seconds, \"reason\"?: text}} for {kind}"
        )
    })?;
    let user = validate_user(&user).map_err(|why| format!("user: {why}"))?;
    let timed = matches!(kind, "mute" | "ban");
    if (duration.is_some() && !timed) || (reason.is_some() && kind.starts_with("un")) {
        return Err(format!("{kind} takes only the fields it uses"));
    }
    Ok(match kind {
        "mute" => Moderate::Mute { user, duration, reason },
        "unmute" => Moderate::Unmute { user },
        "kick" => Moderate::Kick { user, reason },
        "ban" => Moderate::Ban { user, duration, reason },
        _ => Moderate::Unban { user },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn requests_parse_and_malformed_ones_say_why() {
        let mute = parse("mute", Some(&raw(r#"{"user":"bob","duration":60,"reason":"spam"}"#)));
        let expected =
            Moderate::Mute { user: "bob".into(), duration: Some(60), reason: Some("spam".into()) };
        assert_eq!(mute, Ok(expected));
        assert!(parse("kick", None).is_err(), "no data");
        assert!(parse("ban", Some(&raw(r#"{"reason":"x"}"#))).is_err(), "no user");
        assert!(parse("kick", Some(&raw(r#"{"user":"bob","duration":5}"#))).is_err());
        assert!(parse("unban", Some(&raw(r#"{"user":"bob","reason":"x"}"#))).is_err());
        assert!(parse("mute", Some(&raw(r#"{"user":"bob","extra":1}"#))).is_err());
        assert!(parse("report", Some(&raw(r#"{"id":"m1"}"#))).is_err(), "no reason");
        assert!(is_moderation("report") && !is_moderation("chat"));
    }
}
