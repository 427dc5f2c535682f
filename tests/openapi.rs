//! The OpenAPI document (`GET /openapi.json`) against the code and the docs: it names
//! every route the server answers and every call `docs/api.md` describes, and nothing
//! else; every `/v1` call documents its errors. schemathesis checks the running server
//! against it in CI (`.ci/schemathesis.sh`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use switchboard::config::Config;
use switchboard::time::Clock;

fn doc() -> Value {
    serde_json::from_str(switchboard::api::openapi::json()).expect("the document is JSON")
}

/// `METHOD /path` of every operation, with path parameters written `{}`.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            ops.insert(format!("{} {}", method.to_uppercase(), generic(path)));
        }
    }
    ops
}

fn generic(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// The routes `src/api/mod.rs` registers: `resource("/path").get(..).put(..)`, under
/// `/v1` inside the scope.
fn routes() -> BTreeSet<String> {
    let src = include_str!("../src/api/mod.rs");
    let start = src.find("pub fn routes(").expect("routes()");
    let body = &src[start..start + src[start..].find("\n}\n").expect("end of routes()")];
    let v1_from = body.find("web::scope(\"/v1\")").expect("the /v1 scope");
    let mut out = BTreeSet::new();
    // Each `resource("/path")` with the methods chained to it, however rustfmt wraps them.
    for (at, _) in body.match_indices("resource(\"") {
        let rest = &body[at + 10..];
        let path = &rest[..rest.find('"').expect("path")];
        let chained = &rest[..rest.find(".service(").unwrap_or(rest.len())];
        let full = if at > v1_from {
            format!("/v1{path}")
        } else {
            path.to_string()
        };
        for method in ["get", "put", "post"] {
            if chained.contains(&format!(".{method}(")) {
                out.insert(format!("{} {}", method.to_uppercase(), generic(&full)));
            }
        }
    }
    out
}

/// The calls `docs/api.md` describes: each list item that starts with `` `METHOD /path` ``
/// (and `` / `.../x` `` siblings on the same line).
fn documented() -> BTreeSet<String> {
    let md = include_str!("../docs/api.md");
    let mut out = BTreeSet::new();
    for line in md.lines() {
        let Some(item) = line.strip_prefix("- `") else { continue };
        let Some((call, rest)) = item.split_once('`') else {
            continue;
        };
        let Some((method, path)) = call.split_once(' ') else {
            continue;
        };
        if !["GET", "PUT", "POST"].contains(&method) {
            continue;
        }
        let path = path.split('?').next().unwrap_or(path);
        out.insert(format!("{method} {}", generic(path)));
        // "- `POST /v1/conversations/{id}/accept` / `.../reject`"
        if let Some(sibling) = rest.strip_prefix(" / `.../") {
            let name = &sibling[..sibling.find('`').expect("sibling")];
            let base = &path[..path.rfind('/').expect("base")];
            out.insert(format!("{method} {}/{name}", generic(base)));
        }
    }
    // "`GET /v1/skills/{skill_id}` → the skill. `GET /v1/skills` → ..." and the
    // operations line name several calls in one item.
    for line in md.lines().filter(|l| l.starts_with("- ")) {
        for part in line.split('`').skip(1).step_by(2) {
            if let Some((method, path)) = part.split_once(' ') {
                if ["GET", "PUT", "POST"].contains(&method) && path.starts_with('/') {
                    out.insert(format!("{method} {}", generic(path.split('?').next().unwrap_or(path))));
                }
            }
        }
    }
    out
}

#[test]
fn the_document_names_every_route_the_server_answers_and_no_other() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(operations(&doc), routes());
}

#[test]
fn docs_api_md_describes_every_operation_of_the_document() {
    let ops = operations(&doc());
    let described = documented();
    let missing: Vec<_> = ops.difference(&described).collect();
    let extra: Vec<_> = described.difference(&ops).collect();
    assert!(missing.is_empty(), "in the document, not in docs/api.md: {missing:?}");
    assert!(extra.is_empty(), "in docs/api.md, not in the document: {extra:?}");
}

#[test]
fn every_v1_call_documents_auth_overload_and_its_bad_input() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().expect("item") {
            let responses: BTreeMap<String, Value> =
                serde_json::from_value(op["responses"].clone()).expect("responses");
            for status in ["401", "503"] {
                assert!(responses.contains_key(status), "{method} {path}: no {status}");
            }
            let takes_input =
                op.get("requestBody").is_some() || op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            if takes_input {
                assert!(responses.contains_key("400"), "{method} {path}: no 400");
            }
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("413"), "{method} {path}: no 413");
            }
            assert!(
                op["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{method} {path}: no security"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_the_document_without_a_token_and_names_allowed_methods_on_405() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\napi_token = \"t0ken\"\n[[skills]]\nid = \"general\"\n";
    let config = Config::from_toml(text, &BTreeMap::new()).expect("config");
    let server = switchboard::api::start(config, Clock::system()).await.expect("start");
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let served: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(served, doc(), "the served document is the library's");
    let r = http
        .delete(format!("{base}/v1/skills/general"))
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET, PUT"));
    server.stop().await;
}
