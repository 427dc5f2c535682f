//! Any node answers any request (a cluster): a request naming a conversation, an agent
//! or a skill's queue is served by the node holding that shard. The node that takes it
//! forwards it there (one hop: a forwarded request is never forwarded again) and passes
//! the answer back, an agent's event stream included. A shard between owners (its node
//! died and the lease has not expired, or its records are being read) answers 503 with
//! `Retry-After`.
//!
//! Requests that name nothing (`POST /v1/conversations` without an id, the lists) are
//! served where they arrive: a node opens a new conversation with an id of one of its
//! own shards. `PUT /v1/skills/{id}` is applied on every node (skills are replicated),
//! and `GET /v1/queue-health` gathers every node's part ([`super::handlers`]).
//!
//! Every answer served by a node (not passed back from another) names it in
//! [`SERVED_BY`], its HTTP address as the other nodes reach it: a client that can
//! reach that address sends the conversation's next requests there and saves the hop
//! (`switchboard loadtest --follow-owner`). It is a hint: a node that no longer serves
//! the shard forwards the request, as any node does.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, Data};
use actix_web::{HttpMessage, HttpResponse};
use futures_util::TryStreamExt;

use super::error::ApiError;
use super::AppState;
use crate::cluster::node::Owner;
use crate::cluster::placement::shard_of;

/// The header a forwarded request carries: the forwarding node's name.
pub const HOP: &str = "x-switchboard-forwarded-by";

/// The header of an answer that names the node that served it (its HTTP address).
pub const SERVED_BY: &str = "x-switchboard-served-by";

/// What a request is about, for placement.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Shard(u16),
    /// `POST /v1/conversations`: the body may name the id.
    Open,
}

fn target(method: &Method, path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/v1/")?;
    let mut parts = rest.split('/');
    match (parts.next()?, parts.next(), parts.next()) {
        ("conversations", None, None) if method == Method::POST => Some(Target::Open),
        ("conversations", Some(id), _) if !id.is_empty() => Some(Target::Shard(shard_of(id))),
        ("agents", Some(id), _) if !id.is_empty() => Some(Target::Shard(shard_of(id))),
        ("skills", Some(id), Some("queue")) => Some(Target::Shard(shard_of(id))),
        _ => None,
    }
}

/// The `/v1` middleware that sends a request to the node serving its shard.
pub async fn forward(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<Data<AppState>>().cloned();
    let Some((state, node)) = state.and_then(|s| s.cluster.get().cloned().map(|n| (s, n))) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let mut body: Option<Bytes> = None;
    let shard = match target(req.method(), req.path()) {
        None => None,
        Some(Target::Shard(s)) => Some(s),
        Some(Target::Open) => {
            let bytes = read_body(&mut req, state.max_body_bytes).await?;
            let named = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("conversation_id").and_then(|i| i.as_str()).map(shard_of));
            req.set_payload(Payload::from(bytes.clone()));
            body = Some(bytes);
            named
        }
    };
    let Some(shard) = shard else {
        return Ok(served_here(&state, next.call(req).await?));
    };
    let hopped = req.headers().contains_key(HOP);
    match node.routes.owner(shard) {
        Owner::Here => Ok(served_here(&state, next.call(req).await?)),
        Owner::Node(owner) if !hopped => {
            let Some(addr) = node.routes.http_addr(&owner) else {
                return Err(moving(shard).into());
            };
            let bytes = match body {
                Some(b) => b,
                None => read_body(&mut req, state.max_body_bytes).await?,
            };
            state.metrics.forwarded.inc();
            let res = proxy(&state, node.routes.node(), &req, &addr, bytes).await;
            Ok(req.into_response(res))
        }
        // Forwarded here, but this node does not serve it (the nodes' views of the
        // leases differ for a moment), or the shard is between owners.
        Owner::Node(_) | Owner::Moving | Owner::Nobody => Err(moving(shard).into()),
    }
}

/// Names this node in the answer ([`SERVED_BY`]; its value is made once, at join).
fn served_here(state: &AppState, mut res: ServiceResponse<impl MessageBody + 'static>) -> ServiceResponse<BoxBody> {
    if let Some(v) = state.served_by.get() {
        res.headers_mut()
            .insert(actix_web::http::header::HeaderName::from_static(SERVED_BY), v.clone());
    }
    res.map_into_boxed_body()
}

fn moving(shard: u16) -> ApiError {
    crate::error::RouterError::shard_moving(shard).into()
}

async fn read_body(req: &mut ServiceRequest, limit: usize) -> Result<Bytes, actix_web::Error> {
    let mut payload = req.take_payload();
    let mut out = actix_web::web::BytesMut::new();
    while let Some(chunk) = payload.try_next().await? {
        if out.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit).into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Sends the request to `addr` and turns the answer into this node's response (an
/// event stream is passed through as it comes).
async fn proxy(state: &AppState, me: &str, req: &ServiceRequest, addr: &str, body: Bytes) -> HttpResponse {
    let url = format!(
        "http://{addr}{}",
        req.uri().path_and_query().map_or(req.path(), |p| p.as_str())
    );
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut out = state.http.request(method, &url).header(HOP, me).body(body);
    for (name, value) in req.headers() {
        let n = name.as_str();
        if n == "host" || n == "content-length" || n == "connection" || n == HOP {
            continue;
        }
        out = out.header(n, value.as_bytes());
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(url = %url, error = %e, "forwarding to the shard's node failed");
            return actix_web::ResponseError::error_response(&ApiError::Unavailable(format!(
                "the node serving this request did not answer ({e}); retry in a moment"
            )));
        }
    };
    let status = actix_web::http::StatusCode::from_u16(answer.status().as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let mut res = HttpResponse::build(status);
    for (name, value) in answer.headers() {
        let n = name.as_str();
        if n == "content-length" || n == "transfer-encoding" || n == "connection" {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            actix_web::http::header::HeaderName::from_bytes(n.as_bytes()),
            actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            res.insert_header((n, v));
        }
    }
    let streaming = answer
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        res.streaming(answer.bytes_stream().map_err(std::io::Error::other))
    } else {
        match answer.bytes().await {
            Ok(b) => res.body(b),
            Err(e) => actix_web::ResponseError::error_response(&ApiError::Unavailable(format!(
                "the node serving this request broke off its answer ({e})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_placed_by_the_id_in_their_path() {
        let c = shard_of("c-1");
        assert_eq!(target(&Method::GET, "/v1/conversations/c-1"), Some(Target::Shard(c)));
        assert_eq!(
            target(&Method::POST, "/v1/conversations/c-1/close"),
            Some(Target::Shard(c))
        );
        assert_eq!(
            target(&Method::GET, "/v1/agents/a-9/events"),
            Some(Target::Shard(shard_of("a-9")))
        );
        assert_eq!(
            target(&Method::GET, "/v1/skills/general/queue"),
            Some(Target::Shard(shard_of("general")))
        );
        assert_eq!(target(&Method::POST, "/v1/conversations"), Some(Target::Open));
        for (m, p) in [
            (Method::GET, "/v1/conversations"),
            (Method::GET, "/v1/skills"),
            (Method::PUT, "/v1/skills/general"),
            (Method::GET, "/v1/queue-health"),
            (Method::GET, "/metrics"),
        ] {
            assert_eq!(target(&m, p), None, "{m} {p}");
        }
    }
}
