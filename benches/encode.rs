//! Turning a client chat frame into the server frame every recipient gets: serde_json (what the broker
//! uses: borrowed parse, `data` passed through as raw JSON, one serialization) against simd-json (copy
//! into a mutable buffer, parse into a value tree, build and serialize the envelope).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use simd_json::prelude::*;
use wsbroker::protocol::{self, Limits};

const LIMITS: Limits = Limits { max_content_chars: 4096 };

fn client_frame(content_len: usize) -> String {
    let content = "x".repeat(content_len);
    format!(
        r#"{{"type":"chat","room":"lobby","id":"c-1","data":{{"content":"{content}","meta":{{"k":[1,2,3]}}}}}}"#
    )
}

/// The same steps as `protocol::parse_client_frame`, done with simd-json.
fn simd_json_frame(text: &str, user: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let value = simd_json::to_borrowed_value(&mut bytes).expect("valid JSON");
    assert_eq!(value.get_str("type"), Some("chat"));
    let data = value.get("data").expect("data").clone();
    let content = data.get_str("content").unwrap_or_default();
    assert!(content.chars().count() <= LIMITS.max_content_chars);
    let mut envelope = simd_json::value::borrowed::Object::with_capacity(6);
    let id = value.get_str("id").map_or_else(protocol::new_message_id, str::to_owned);
    let timestamp = protocol::now_rfc3339();
    envelope.insert("id".into(), id.into());
    envelope.insert("type".into(), "chat".into());
    envelope.insert("room".into(), value.get_str("room").unwrap_or_default().into());
    envelope.insert("from".into(), user.into());
    envelope.insert("data".into(), data);
    envelope.insert("timestamp".into(), timestamp.into());
    serialize(envelope)
}

fn serialize(envelope: simd_json::value::borrowed::Object<'_>) -> String {
    simd_json::BorrowedValue::from(envelope).encode()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_frame_to_server_frame");
    for content_len in [16, 256, 4000] {
        let text = client_frame(content_len);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("serde_json", content_len), &text, |b, text| {
            b.iter(|| protocol::parse_client_frame(text, "alice", LIMITS).expect("valid frame"));
        });
        group.bench_with_input(BenchmarkId::new("simd_json", content_len), &text, |b, text| {
            b.iter(|| simd_json_frame(text, "alice"));
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
