//! The alert rules (`deploy/prometheus/alerts.yml`) against the real metrics: every wsbroker or
//! process metric a rule names is in a broker's `/metrics`, so no alert watches a series that
//! does not exist. (`promtool check rules` and `promtool test rules` run in scripts/test.sh.)

use hyper::{Method, StatusCode};

use crate::common::{http_text, stored_server, TempDir};

#[tokio::test]
async fn every_metric_an_alert_names_is_scraped_from_a_real_broker() {
    let dir = TempDir::new("alerts");
    let server = stored_server(&dir).await;
    let (status, scrape) = http_text(server.addr, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/alerts.yml"
    ))
    .unwrap();
    let mut named: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("wsbroker_") || word.starts_with("process_"))
        .collect();
    named.sort_unstable();
    named.dedup();
    assert!(named.len() >= 8, "{named:?}");
    for name in named {
        let present = scrape.lines().any(|line| line.split([' ', '{']).next() == Some(name));
        assert!(present, "alerts.yml names {name}, which /metrics does not have");
    }
}
