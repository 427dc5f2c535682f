//! `switchboard loadtest` against the real server on port 0: a short open-loop run
//! whose every conversation is accounted for at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard::config::Config;
use switchboard::loadtest::{run, Options};
use switchboard::time::Clock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_test_loses_nothing_and_reports_latencies() {
    let config = Config::from_toml(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_token = \"t0k\"\n",
        &BTreeMap::new(),
    )
    .expect("config");
    let server = switchboard::api::start(config, Clock::system()).await.expect("server");
    let opts = Options {
        urls: vec![format!("http://{}", server.addr)],
        rate: 40.0,
        duration: Duration::from_secs(2),
        agents: 20,
        skills: 2,
        token: Some("t0k".into()),
        seed: 5,
        drain: Duration::from_secs(15),
        ledger: None,
        follow_owner: false,
        skill_prefix: "lt-skill".into(),
        colocate: false,
    };
    let summary = run(opts).await.expect("load test runs");
    assert_eq!(summary.opened, 80);
    assert_eq!(summary.errors_total, 0, "{:?}", summary.errors);
    assert_eq!(summary.lost, 0);
    assert_eq!(summary.states.get("closed").copied(), Some(80), "{:?}", summary.states);
    assert_eq!(summary.assignment.count, 80);
    assert!(summary.assign_p50_ms > 0.0 && summary.http_p99_ms > 0.0);
    assert!(summary.endpoints.contains_key("POST /v1/conversations"));
    let json = serde_json::to_value(&summary).expect("json");
    for key in [
        "achieved_rate",
        "errors_total",
        "lost",
        "assign_p50_ms",
        "assign_p99_ms",
        "http_p99_ms",
    ] {
        assert!(json.get(key).is_some(), "JSON summary lacks {key}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_at_setup_with_a_clear_error() {
    let config = Config::from_toml(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_token = \"t0k\"\n",
        &BTreeMap::new(),
    )
    .expect("config");
    let server = switchboard::api::start(config, Clock::system()).await.expect("server");
    let opts = Options {
        urls: vec![format!("http://{}", server.addr)],
        rate: 10.0,
        duration: Duration::from_secs(1),
        agents: 2,
        skills: 1,
        token: Some("wrong".into()),
        seed: 1,
        drain: Duration::from_secs(1),
        ledger: None,
        follow_owner: false,
        skill_prefix: "lt-skill".into(),
        colocate: false,
    };
    let err = run(opts).await.expect_err("unauthorized");
    assert!(format!("{err:#}").contains("creating skill"), "{err:#}");
    server.stop().await;
}
