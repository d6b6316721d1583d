//! The binary's own tasks, as an operator runs them: `--config FILE` under flags and environment,
//! `wsbroker config`, and `wsbroker backup PATH` of a SQLite store that is being written.

use std::process::Command;

use crate::common::{chat, spawn_broker, TempDir};

fn wsbroker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsbroker"))
}

#[tokio::test]
async fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = TempDir::new("config");
    let file = dir.0.join("wsbroker.toml");
    std::fs::write(
        &file,
        "max-content = 5\nrate-limit = 3\nmax-frame = 1000\njwt-secret = \"hush\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = wsbroker()
        .args(["config", "--config", file, "--max-frame", "2000"])
        .env("RATE_LIMIT", "4")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    for line in [
        "max-frame = 2000  # flag",
        "rate-limit = 4  # environment",
        "max-content = 5  # file",
        "jwt-secret = \"<redacted>\"  # file",
        "send-buffer = 256  # default",
    ] {
        assert!(printed.contains(line), "{line} in {printed}");
    }
    assert!(!printed.contains("hush"), "the secret is not printed");

    // The broker serves with the file's settings.
    let url = dir.sqlite_url();
    let (_process, server) = spawn_broker(&["--config", file, "--database-url", &url]).await;
    let mut alice = server.member("alice", "lobby").await;
    let refused = alice.request(chat("lobby", "c1", "too long")).await;
    assert_eq!(refused["data"]["code"], "content_too_long", "max-content from the file: {refused}");

    std::fs::write(dir.0.join("typo.toml"), "max-contnet = 5\n").unwrap();
    let typo = dir.0.join("typo.toml");
    let out = wsbroker().args(["--config", typo.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("unknown key `max-contnet`"), "{said}");
}

/// `wsbroker backup COPY --database-url URL`, run to its end.
fn backup(copy: &std::path::Path, url: &str) -> std::process::Output {
    wsbroker().args(["backup", copy.to_str().unwrap(), "--database-url", url]).output().unwrap()
}

#[tokio::test]
async fn a_backup_of_a_store_being_written_is_whole_and_serves_as_the_store() {
    let dir = TempDir::new("backup");
    let url = dir.sqlite_url();
    let (_process, server) = spawn_broker(&["--database-url", &url, "--rate-limit", "0"]).await;
    let mut alice = server.member("alice", "lobby").await;
    for n in 0..200 {
        let ack = alice.request(chat("lobby", &format!("before-{n}"), "kept")).await;
        assert_eq!(ack["type"], "ack");
    }
    // Chats keep coming while the copy is made.
    for n in 0..500 {
        alice.send(chat("lobby", &format!("during-{n}"), "maybe")).await;
    }
    let copy = dir.0.join("copy.db");
    let out = backup(&copy, &url);
    assert!(out.status.success(), "{out:?}");
    assert!(!backup(&copy, &url).status.success(), "a backup never overwrites a file");

    let check = rusqlite::Connection::open(&copy).unwrap();
    let verdict: String = check.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(verdict, "ok");
    drop(check);
    let restored = format!("sqlite://{}", copy.display());
    let (_restored_process, restored) = spawn_broker(&["--database-url", &restored]).await;
    let mut ids = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let cursor = before.as_ref().map(|b| format!("&before={b}")).unwrap_or_default();
        let (_, page) =
            restored.get(&format!("/api/v1/chat/rooms/lobby/messages?limit=100{cursor}")).await;
        let messages = page["messages"].as_array().unwrap();
        ids.extend(messages.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match page["next_before"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => break,
        }
    }
    for n in 0..200 {
        assert!(
            ids.contains(&format!("before-{n}")),
            "before-{n}, acked before the backup, is in it"
        );
    }
    let during: Vec<&String> = ids.iter().filter(|id| id.starts_with("during-")).collect();
    let mut expected: Vec<String> = (0..during.len()).map(|n| format!("during-{n}")).collect();
    expected.sort();
    let mut got: Vec<String> = during.into_iter().cloned().collect();
    got.sort();
    assert_eq!(got, expected, "the copy is one commit's state: a prefix of what was sent");
}

#[tokio::test]
async fn after_a_restore_a_client_ahead_of_the_store_takes_its_place_and_hears_what_comes_next() {
    let dir = TempDir::new("restore");
    let url = dir.sqlite_url();
    let (_process, server) = spawn_broker(&["--database-url", &url, "--rate-limit", "0"]).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    let mut place = (0, String::new());
    for n in 0..5 {
        assert_eq!(alice.request(chat("lobby", &format!("m{n}"), "hi")).await["type"], "ack");
        let seen = bob.recv_where(|f| f["type"] == "chat").await;
        place = (seen["seq"].as_u64().unwrap(), seen["epoch"].as_str().unwrap().to_owned());
        if n == 2 {
            let out = backup(&dir.0.join("copy.db"), &url);
            assert!(out.status.success(), "{out:?}");
        }
    }
    let (seq, epoch) = place;
    assert_eq!(seq, 5);
    // The store comes back from the copy, which has 3 of the 5 messages bob saw.
    let restored = format!("sqlite://{}", dir.0.join("copy.db").display());
    let (_restored_process, restored) = spawn_broker(&["--database-url", &restored]).await;
    let mut bob = restored.connect(&format!("/ws?since=lobby:{seq}:{epoch}&user=bob")).await;
    let answer = bob.recv_type("joined").await;
    assert_eq!(
        answer["data"],
        serde_json::json!({"recovered": false, "reason": "behind", "seq": 3, "epoch": epoch}),
        "the stream lost what bob saw after 3: he takes its place"
    );
    let mut alice = restored.member("alice", "lobby").await;
    assert_eq!(alice.request(chat("lobby", "after", "again")).await["type"], "ack");
    let next = bob.recv_where(|f| f["type"] == "chat").await;
    assert_eq!((next["id"].as_str(), next["seq"].as_u64()), (Some("after"), Some(4)));
}
