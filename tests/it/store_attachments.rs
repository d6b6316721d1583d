//! The store contract's attachment checks (migration 0010), run by `store.rs` against every
//! engine: bytes in chunks come back as they went (blobs bind and read alike), a chat takes its
//! files once, unclaimed uploads are swept, retention deletes files with their messages.

use std::sync::Arc;

use wsbroker::store::attachments::{Get, Got, Put};
use wsbroker::store::ops::{self, Answer, Outcome, Read, Write};
use wsbroker::store::{Engine, NewMessage};

fn put(engine: &mut dyn Engine, put: Put) -> Outcome {
    engine.begin().unwrap();
    let outcome = ops::apply(engine, &[Write::Attachment(Box::new(put))]).unwrap().pop().unwrap();
    engine.commit().unwrap();
    outcome
}

fn get(engine: &mut dyn Engine, get: Get) -> Got {
    match ops::read(engine, &Read::Attachment(get)).unwrap() {
        Answer::Attachment(got) => got,
        other => panic!("{other:?}"),
    }
}

fn begin(engine: &mut dyn Engine, id: &str, at: i64) {
    let begin = Put::Begin {
        id: id.into(),
        room: "docs".into(),
        uploader: "ann".into(),
        name: format!("{id}.bin"),
        at,
    };
    assert_eq!(put(engine, begin), Outcome::Done);
}

pub fn attachment_contract(engine: &mut dyn Engine) {
    // Every byte value, in two chunks, back as it went.
    begin(engine, "f1", 100);
    let (first, second): (Vec<u8>, Vec<u8>) = ((0..=255).collect(), vec![0, 255, 0]);
    put(engine, Put::Chunk { id: "f1".into(), n: 0, data: first.clone() });
    put(engine, Put::Chunk { id: "f1".into(), n: 1, data: second.clone() });
    let finish = Put::Finish {
        id: "f1".into(),
        content_type: "image/png".into(),
        width: Some(2),
        height: Some(1),
        thumbnail: Some(vec![9, 9]),
    };
    assert_eq!(put(engine, finish), Outcome::Done);
    let Got::Chunks(chunks) = get(engine, Get::Chunks { id: "f1".into(), first: 0, last: 5 })
    else {
        panic!()
    };
    assert_eq!(chunks, [(0, first), (1, second)]);
    let Got::Meta(Some(meta)) = get(engine, Get::Meta { id: "f1".into() }) else { panic!() };
    assert_eq!(
        (meta.size, meta.complete, meta.has_thumbnail, meta.message.clone()),
        (259, true, true, None)
    );
    assert_eq!(get(engine, Get::Thumbnail { id: "f1".into() }), Got::Thumbnail(Some(vec![9, 9])));
    assert_eq!(
        get(engine, Get::Usage { user: "ann".into(), since: 50 }),
        Got::Usage { bytes: 259, recent: 1 }
    );

    // A chat takes its sender's file once; another sender's claim takes nothing.
    begin(engine, "f2", 100);
    let chat = |sender: &str, id: &str, files: &str| NewMessage {
        id: id.into(),
        room: Some(Arc::from("docs")),
        sender: Arc::from(sender),
        kind: "chat",
        data: format!(r#"{{"content":"x","attachments":[{files}]}}"#).into(),
        created_at: 120,
        metadata: None,
        stream: None,
        target: None,
    };
    engine.begin().unwrap();
    let writes = vec![
        Write::Message(chat("bo", "b1", r#"{"id":"f1"}"#)),
        Write::Message(chat("ann", "a1", r#"{"id":"f1"}"#)),
        Write::Message(chat("ann", "a2", r#"{"id":"f1"}"#)),
    ];
    ops::apply(engine, &writes).unwrap();
    engine.commit().unwrap();
    let Got::Meta(Some(meta)) = get(engine, Get::Meta { id: "f1".into() }) else { panic!() };
    assert_eq!(meta.message, Some(("ann".into(), "a1".into())), "the first of its uploader's");

    // The sweep takes unclaimed uploads made before its time; retention takes the rest with
    // their messages.
    assert_eq!(get(engine, Get::Unclaimed { before: 100 }), Got::Unclaimed(false), "f2 is 100");
    assert_eq!(get(engine, Get::Unclaimed { before: 101 }), Got::Unclaimed(true), "f2");
    assert_eq!(put(engine, Put::Sweep { before: 101, limit: 10 }), Outcome::Purged(1), "f2");
    assert_eq!(get(engine, Get::Meta { id: "f2".into() }), Got::Meta(None));
    let claimed = get(engine, Get::Unclaimed { before: 1_000_000 });
    assert_eq!(claimed, Got::Unclaimed(false), "f1 is claimed: nothing to sweep");
    engine.begin().unwrap();
    ops::apply(engine, &[Write::Purge { before: 1_000_000, limit: 1000 }]).unwrap();
    engine.commit().unwrap();
    assert_eq!(get(engine, Get::Meta { id: "f1".into() }), Got::Meta(None));
    let Got::Chunks(chunks) = get(engine, Get::Chunks { id: "f1".into(), first: 0, last: 5 })
    else {
        panic!()
    };
    assert!(chunks.is_empty(), "its chunks went with it");
}
