//! Parser and encoder tests, including the property test that throws random frames at the parser.

use super::*;
use serde_json::value::RawValue;

const LIMITS: Limits = Limits { max_content_chars: 10 };

/// The shard request a frame parses into.
fn request(text: &str, user: &str) -> ClientRequest {
    match parse_client_frame(text, user, LIMITS) {
        Ok(ClientFrame::Request(request)) => request,
        other => panic!("not a request: {other:?}"),
    }
}

fn json(frame: &Frame) -> serde_json::Value {
    serde_json::from_str(frame.as_str()).unwrap()
}

#[test]
fn chat_is_encoded_once_with_server_fields_and_forged_from_ignored() {
    let text =
        r#"{"type":"chat","room":"lobby","from":"mallory","id":"c-1","data":{"content":"hi"}}"#;
    let request = request(text, "alice");
    assert_eq!(request.id.as_deref(), Some("c-1"));
    let Action::Chat(chat) = request.action else { panic!("not a chat") };
    assert_eq!(chat.room.as_deref(), Some("lobby"));
    assert_eq!(
        (chat.id.as_str(), chat.data.get()),
        ("c-1", r#"{"content":"hi"}"#),
        "what the store keeps"
    );
    assert!(chat.frame.is_none(), "a room chat is encoded by its room's home shard");
    let value = json(&chat.frame("alice"));
    assert_eq!(value["from"], "alice");
    assert_eq!(value["id"], "c-1");
    assert_eq!(value["data"]["content"], "hi");
    let timestamp = value["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z') && timestamp.len() == 24, "{timestamp}");
}

#[test]
fn chat_without_room_is_global_and_gets_a_generated_id() {
    let request = request(r#"{"type":"chat","room":"","data":{}}"#, "bob");
    let Action::Chat(chat) = request.action else { panic!("not a chat") };
    assert!(chat.room.is_none(), "global");
    let value = json(chat.frame.as_ref().expect("a chat to everyone is encoded at once"));
    assert_eq!(value["id"].as_str(), Some(chat.id.as_str()));
    assert!(value.get("room").is_none());
    assert_eq!(value["id"].as_str().unwrap().len(), 36);
}

#[test]
fn content_limit_counts_characters_not_bytes() {
    let ten_wide = r#"{"type":"chat","data":{"content":"éééééééééé"}}"#;
    assert!(parse_client_frame(ten_wide, "a", LIMITS).is_ok());
    let eleven = r#"{"type":"chat","id":"x","data":{"content":"ééééééééééé"}}"#;
    let err = parse_client_frame(eleven, "a", LIMITS).unwrap_err();
    assert_eq!((err.code, err.id.as_deref()), (ErrorCode::ContentTooLong, Some("x")));
}

#[test]
fn bad_input_is_rejected_with_its_code() {
    let cases = [
        ("not json", ErrorCode::BadRequest),
        (r#"{"id":"1"}"#, ErrorCode::BadRequest),
        (r#"{"type":"teleport"}"#, ErrorCode::UnknownType),
        (r#"{"type":"ack"}"#, ErrorCode::UnknownType),
        (r#"{"type":"join"}"#, ErrorCode::BadRequest),
        (r#"{"type":"join","room":"a b"}"#, ErrorCode::BadRequest),
        (r#"{"type":"chat","data":"text"}"#, ErrorCode::BadRequest),
        (r#"{"type":"chat","data":{"content":5}}"#, ErrorCode::BadRequest),
        (r#"{"type":"chat"}"#, ErrorCode::BadRequest),
        (r#"[1,2]"#, ErrorCode::BadRequest),
    ];
    for (text, code) in cases {
        let err = parse_client_frame(text, "a", LIMITS).expect_err(text);
        assert_eq!(err.code, code, "{text}");
        let frame = json(&err.to_frame());
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["data"]["code"], code.as_str());
    }
}

#[test]
fn data_may_nest_16_deep_and_no_deeper() {
    let nested = |depth: usize| {
        format!(
            r#"{{"type":"chat","data":{{"a":{}1{}}}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    assert!(parse_client_frame(&nested(16), "u", LIMITS).is_ok());
    let err = parse_client_frame(&nested(17), "u", LIMITS).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    let brackets_in_strings = r#"{"type":"chat","data":{"note":"[[[[[[[[[[[[[[[[[[[[\"{{{{"}}"#;
    let parsed = parse_client_frame(brackets_in_strings, "u", LIMITS);
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn refresh_carries_its_token_to_the_session_and_needs_one() {
    let parsed =
        parse_client_frame(r#"{"type":"refresh","id":"r1","data":{"token":"t.k.n"}}"#, "u", LIMITS);
    let Ok(ClientFrame::Refresh { id, token }) = parsed else {
        panic!("not a refresh: {parsed:?}")
    };
    assert_eq!((id.as_deref(), token.as_str()), (Some("r1"), "t.k.n"));
    for text in
        [r#"{"type":"refresh","id":"r2"}"#, r#"{"type":"refresh","id":"r2","data":{"token":5}}"#]
    {
        let err = parse_client_frame(text, "u", LIMITS).expect_err(text);
        assert_eq!((err.code, err.id.as_deref()), (ErrorCode::BadRequest, Some("r2")));
    }
}

#[test]
fn token_expiring_notice_names_the_expiry_in_rfc_3339() {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let value = json(&token_expiring_frame(at));
    assert_eq!(
        value,
        serde_json::json!({"type": "system", "data": {"event": "token_expiring", "expires_at": "2023-11-14T22:13:20Z"}})
    );
}

/// Whatever a client sends, the answer is a request (whose chat frame is valid JSON) or a
/// rejection (whose error frame is valid JSON): never a panic.
fn assert_answered(text: &str) {
    match parse_client_frame(text, "u", LIMITS) {
        Ok(ClientFrame::Request(ClientRequest { action: Action::Chat(chat), .. })) => {
            let value = json(&chat.frame("u"));
            assert_eq!((value["type"].as_str(), value["from"].as_str()), (Some("chat"), Some("u")));
        }
        Ok(_) => {}
        Err(rejection) => assert_eq!(json(&rejection.to_frame())["type"], "error"),
    }
}

proptest::proptest! {
    #[test]
    fn any_text_is_answered(text in ".{0,200}") {
        assert_answered(&text);
    }

    #[test]
    fn any_envelope_is_answered(
        kind in "chat|join|leave|presence|ping|refresh|ack|error|[a-z]{0,8}",
        room in proptest::option::of("[a-zA-Z0-9_ @:.\\-]{0,140}"),
        id in proptest::option::of(".{0,140}"),
        content in ".{0,12}",
        depth in 0usize..40,
    ) {
        let string = |s: &str| serde_json::to_string(s).unwrap();
        let room = room.map_or("null".into(), |r| string(&r));
        let id = id.map_or("null".into(), |i| string(&i));
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let text = format!(
            r#"{{"type":{},"room":{room},"id":{id},"from":"x","data":{{"content":{},"deep":{deep}}}}}"#,
            string(&kind),
            string(&content),
        );
        assert_answered(&text);
    }
}

#[test]
fn room_names_are_validated() {
    assert!(validate_room("lobby-1.eu:x@y_z").is_ok());
    for bad in ["", "a b", "é", GLOBAL_ROOM, &"r".repeat(129)] {
        assert!(validate_room(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_chats_to_everyone_have_a_history_paged_before_only() {
    assert_eq!(history_of(GLOBAL_ROOM, &Page::Before(None)).as_deref(), Ok(GLOBAL_ROOM));
    assert!(history_of(GLOBAL_ROOM, &Page::After(0)).is_err(), "no seq to page after");
    assert_eq!(history_of("lobby", &Page::After(3)).as_deref(), Ok("lobby"));
    assert!(history_of("a b", &Page::Before(None)).is_err());
    let join = parse_client_frame(r#"{"type":"join","room":"_global"}"#, "u", LIMITS);
    assert!(join.is_err(), "no room to join");
    let history = request(r#"{"type":"history","room":"_global"}"#, "u");
    assert!(matches!(history.action, Action::History { ref room, .. } if &**room == GLOBAL_ROOM));
}

#[test]
fn replies_carry_only_type_and_id() {
    assert_eq!(reply_frame(MessageType::Ack, Some("c-1")).as_str(), r#"{"id":"c-1","type":"ack"}"#);
    assert_eq!(reply_frame(MessageType::Pong, None).as_str(), r#"{"type":"pong"}"#);
}

#[test]
fn history_and_delete_requests_are_checked() {
    let page = request(
        r#"{"type":"history","room":"r","id":"h","data":{"limit":100,"before":"42"}}"#,
        "u",
    );
    assert!(matches!(
        page.action,
        Action::History { limit: 100, page: Page::Before(Some(42)), .. }
    ));
    let default = request(r#"{"type":"history","room":"r"}"#, "u");
    assert!(matches!(
        default.action,
        Action::History { limit: HISTORY_DEFAULT, page: Page::Before(None), .. }
    ));
    let after = request(r#"{"type":"history","room":"r","data":{"after":7}}"#, "u");
    assert!(matches!(after.action, Action::History { page: Page::After(7), .. }));
    for bad in [
        r#"{"type":"history","room":"r","data":{"limit":0}}"#,
        r#"{"type":"history","room":"r","data":{"limit":101}}"#,
        r#"{"type":"history","room":"r","data":{"before":"x1"}}"#,
        r#"{"type":"history","room":"r","data":{"after":-1}}"#,
        r#"{"type":"history","room":"r","data":{"after":"x"}}"#,
        r#"{"type":"history","room":"r","data":{"after":1,"before":"2"}}"#,
        r#"{"type":"history","data":{}}"#,
        r#"{"type":"delete","room":"r","data":{}}"#,
        r#"{"type":"delete","room":"r"}"#,
    ] {
        let rejection = parse_client_frame(bad, "u", LIMITS).expect_err(bad);
        assert_eq!(rejection.code, ErrorCode::BadRequest, "{bad}");
    }
    let delete = request(r#"{"type":"delete","room":"r","data":{"id":"m1","from":"bob"}}"#, "u");
    let Action::Delete { id, from, .. } = delete.action else { panic!("not a delete") };
    assert_eq!((id.as_str(), from.as_deref()), ("m1", Some("bob")));
}

#[test]
fn a_stamp_made_from_the_parts_is_the_frame_stamped_here() {
    let data = RawValue::from_string(r#"{"content":"hi \"there\""}"#.into()).unwrap();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
    let message = Published {
        kind: MessageType::Chat,
        id: "m1",
        room: Some("lobby"),
        from: "alice",
        data: &data,
        at,
        stream: None,
        annotations: Annotations::default(),
    };
    let head = room_message_parts(message);
    let joined = format!("{head}42{STAMP_MID}e0f1{STAMP_TAIL}");
    let stamped = room_message_frame(Published { stream: Some((42, "e0f1")), ..message });
    assert_eq!(joined, stamped.as_str());
}

#[test]
fn every_error_code_is_listed_once_at_its_place() {
    for (at, code) in ErrorCode::ALL.into_iter().enumerate() {
        assert_eq!(code as usize, at, "{code:?}");
    }
}

#[test]
fn only_typing_events_may_wait() {
    let typers = [UserId::from("a")];
    assert!(may_wait(&typing_frame("r", "a", true)));
    assert!(may_wait(&typing_batch_frame("r", &typers, &[])));
    let chat = r#"{"type":"chat","room":"r","data":{"content":"{\"type\":\"typing\","}}"#;
    assert!(!may_wait(&Frame::from(chat)), "a chat that quotes one is due");
    assert!(!may_wait(&bundle(&[typing_frame("r", "a", true)])), "a bundle is due");
}
