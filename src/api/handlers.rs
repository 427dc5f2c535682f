//! Request handlers: parse and validate, call the [`Router`](crate::Router), render a
//! view. They only send to actors; nothing is spawned on an actix worker.

use std::time::Duration;

use actix_web::web::{self, Bytes, Data};
use actix_web::{HttpRequest, HttpResponse, Responder};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::merge::Cursor;
use crate::api::requests::{
    AgentBody, AgentFilter, CloseBody, Empty, EventQuery, FollowUpBody, MessageBody, OffHoursBody, PutAgent,
    QueueQuery, ReopenBody, StatusBody, TransferBody,
};
use crate::api::views::{
    AgentList, AgentSummary, AgentView, ConversationView, HealthList, Liveness, OffHoursView, SkillList, SkillView,
};
use crate::api::AppState;
use crate::config::{validate_agent_spec, SkillSpec};
use crate::domain::conversation::Conversation;
use crate::domain::queue::QueueFigures;
use crate::ids::{AgentId, ConversationId, SkillId};
use crate::router::{OpenConversation, QueueHealth, QueueSnapshot};

type Result<T> = std::result::Result<T, ApiError>;

/// Parses a JSON body, an object. An empty body reads as `{}` for bodies whose every
/// field is optional.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T> {
    let text: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => b"{}",
        Some(b'{') => bytes,
        // serde's derive would read a struct from an array of its fields.
        Some(_) => return Err(ApiError::InvalidRequest("invalid JSON body: expected an object".into())),
    };
    serde_json::from_slice(text).map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}

/// The request's query string as `T` (unknown parameters refused by `T`).
fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::InvalidRequest(format!("query: {e}")))
}

/// An event stream as the response.
fn sse<S>(stream: S) -> HttpResponse
where
    S: futures_util::Stream<Item = std::result::Result<Bytes, actix_web::Error>> + 'static,
{
    HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

fn conversation_view(state: &AppState, c: &Conversation) -> ConversationView {
    ConversationView::new(c, state.router.skill(&c.skill).ok().as_deref())
}

fn ok_conversation(state: &AppState, c: &Conversation) -> HttpResponse {
    HttpResponse::Ok().json(conversation_view(state, c))
}

// ---- operations ----

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive", body = Liveness)))]
pub async fn healthz() -> impl Responder {
    HttpResponse::Ok().json(Liveness { status: "ok".into() })
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Started and listening", body = Liveness), (status = 503, description = "Starting (reading the store back), the store failing to commit, or shutting down", body = ErrorBody)))]
pub async fn readyz(state: Data<AppState>) -> Result<HttpResponse> {
    if !state.is_ready() {
        Err(ApiError::Unavailable("not ready: starting".into()))
    } else if !state.router.store_healthy() {
        Err(ApiError::Unavailable(
            "not ready: the store is failing to commit".into(),
        ))
    } else {
        Ok(HttpResponse::Ok().json(Liveness { status: "ready".into() }))
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format (the series are listed in the README)", body = String, content_type = "text/plain")))]
pub async fn metrics(state: Data<AppState>) -> impl Responder {
    let streams = std::sync::Arc::clone(&state.streams);
    let text = state
        .metrics
        .render(&state.router, &move |a| streams.connected(a))
        .await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

pub async fn not_found() -> Result<HttpResponse> {
    Err(ApiError::NotFound("no such route".into()))
}

/// A 405 names the methods the route answers (`Allow`), as RFC 9110 asks.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut res = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    let allow = req
        .match_pattern()
        .and_then(|p| crate::api::openapi::allowed_methods(&p));
    if let Some(allow) = allow {
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(allow) {
            res.headers_mut().insert(actix_web::http::header::ALLOW, v);
        }
    }
    res
}

// ---- skills ----

#[utoipa::path(put, path = "/v1/skills/{skill_id}", tag = "skills", params(("skill_id" = SkillId, Path, description = "The skill")), request_body(content = SkillSpec, description = "Every field optional: missing ones come from `[skill_defaults]`"), responses((status = 200, description = "The skill, every default filled in", body = SkillView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody)))]
pub async fn put_skill(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<SkillId>,
    bytes: Bytes,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    let spec: SkillSpec = body(&bytes)?;
    let skill = state.router.put_skill(id, &spec).await?;
    // Skills are the same on every node of a cluster.
    on_every_peer(&state, &req, bytes, &format!("skill {} is set", skill.id)).await?;
    Ok(HttpResponse::Ok().json(SkillView::new(&skill)))
}

/// Applies an idempotent `PUT` already applied here (`done` says what) on every other
/// live member of the cluster: 503 naming the first that did not take it.
async fn on_every_peer(state: &AppState, req: &HttpRequest, bytes: Bytes, done: &str) -> Result<()> {
    for answer in to_peers(state, req, reqwest::Method::PUT, bytes).await {
        if let Err((peer, e)) = answer {
            return Err(ApiError::Unavailable(format!(
                "{done} on this node but not yet on {peer} ({e}); retry (the request is idempotent)"
            )));
        }
    }
    Ok(())
}

/// A request to another node on behalf of `req`: marked as forwarded by `here` (the
/// peer answers for itself, never forwards again) and carrying the caller's credentials.
fn peer_request(
    state: &AppState,
    req: &HttpRequest,
    method: reqwest::Method,
    url: String,
    here: &str,
) -> reqwest::RequestBuilder {
    let r = state.http.request(method, url).header(crate::api::forward::HOP, here);
    match req.headers().get(actix_web::http::header::AUTHORIZATION) {
        Some(auth) => r.header("authorization", auth.as_bytes()),
        None => r,
    }
}

/// Sends the request to every other live member of the cluster, marked as forwarded
/// (none outside a cluster, and none for a request forwarded here). Each answer is
/// the peer's JSON body, or the peer and what went wrong.
async fn to_peers(
    state: &AppState,
    req: &HttpRequest,
    method: reqwest::Method,
    body: Bytes,
) -> Vec<std::result::Result<serde_json::Value, (String, String)>> {
    let Some(node) = state.cluster.get() else {
        return Vec::new();
    };
    if req.headers().contains_key(crate::api::forward::HOP) {
        return Vec::new();
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str())
        .to_string();
    let calls = node.routes.peers().into_iter().map(|(peer, addr)| {
        let mut r = peer_request(
            state,
            req,
            method.clone(),
            format!("http://{addr}{path}"),
            node.routes.node(),
        )
        .timeout(Duration::from_secs(5))
        .body(body.clone());
        if let Some(v) = req.headers().get(actix_web::http::header::CONTENT_TYPE) {
            r = r.header("content-type", v.as_bytes());
        }
        async move {
            let answer = r.send().await.map_err(|e| (peer.clone(), e.to_string()))?;
            if !answer.status().is_success() {
                return Err((peer, format!("answered {}", answer.status())));
            }
            answer
                .json::<serde_json::Value>()
                .await
                .map_err(|e| (peer, e.to_string()))
        }
    });
    futures_util::future::join_all(calls).await
}

#[utoipa::path(get, path = "/v1/skills/{skill_id}", tag = "skills", params(("skill_id" = SkillId, Path, description = "The skill")), responses((status = 200, description = "The skill", body = SkillView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such skill", body = ErrorBody)))]
pub async fn get_skill(state: Data<AppState>, path: web::Path<SkillId>) -> Result<HttpResponse> {
    let id = path.into_inner();
    let skill = state.router.skill(&id)?;
    Ok(HttpResponse::Ok().json(SkillView::new(&skill)))
}

#[utoipa::path(get, path = "/v1/skills/{skill_id}/off-hours", tag = "skills", params(("skill_id" = SkillId, Path, description = "The skill")), responses((status = 200, description = "The skill's manual off-hours switch", body = OffHoursView), (status = 400, description = "A bad id", body = ErrorBody), (status = 404, description = "No such skill", body = ErrorBody)))]
pub async fn get_off_hours(state: Data<AppState>, path: web::Path<SkillId>) -> Result<HttpResponse> {
    let skill = state.router.skill(&path.into_inner())?;
    Ok(HttpResponse::Ok().json(OffHoursView::new(&skill, state.router.clock().now())))
}

#[utoipa::path(put, path = "/v1/skills/{skill_id}/off-hours", tag = "skills", params(("skill_id" = SkillId, Path, description = "The skill")), request_body = OffHoursBody, responses((status = 200, description = "The switch as it is now (setting what already is changes nothing)", body = OffHoursView), (status = 400, description = "Malformed JSON, an unknown field, a bad id; nothing changed", body = ErrorBody), (status = 404, description = "No such skill", body = ErrorBody)))]
pub async fn put_off_hours(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<SkillId>,
    bytes: Bytes,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    let OffHoursBody { off_hours } = body(&bytes)?;
    let skill = state.router.set_off_hours(&id, off_hours).await?;
    // Every node switches its own conversations' clocks.
    on_every_peer(&state, &req, bytes, &format!("skill {id} is switched")).await?;
    Ok(HttpResponse::Ok().json(OffHoursView::new(&skill, state.router.clock().now())))
}

#[utoipa::path(get, path = "/v1/skills", tag = "skills", responses((status = 200, description = "Every skill", body = SkillList)))]
pub async fn list_skills(state: Data<AppState>) -> Result<HttpResponse> {
    let skills: Vec<SkillView> = state.router.skills().iter().map(|s| SkillView::new(s)).collect();
    Ok(HttpResponse::Ok().json(SkillList { skills }))
}

#[utoipa::path(get, path = "/v1/skills/{skill_id}/queue", tag = "skills", params(("skill_id" = SkillId, Path, description = "The skill"), QueueQuery), responses((status = 200, description = "The queue in offer order, with its health", body = QueueSnapshot), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such skill", body = ErrorBody)))]
pub async fn get_queue(state: Data<AppState>, req: HttpRequest, path: web::Path<SkillId>) -> Result<HttpResponse> {
    let id = path.into_inner();
    let q: QueueQuery = query(&req)?;
    let limit = q.limit.unwrap_or(100);
    if limit > 10_000 {
        return Err(ApiError::InvalidRequest(format!("limit: {limit} is more than 10000")));
    }
    Ok(HttpResponse::Ok().json(state.router.queue(&id, limit).await?))
}

/// The whole router's figures: in a cluster, each skill's queue figures come from the
/// node serving its queue, and the assigned counts are summed over every node.
#[utoipa::path(get, path = "/v1/queue-health", tag = "skills", responses((status = 200, description = "Each skill's queue figures", body = HealthList)))]
pub async fn queue_health(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut skills = state.router.queue_health().await?;
    let mut missing = Vec::new();
    for answer in to_peers(&state, &req, reqwest::Method::GET, Bytes::new()).await {
        let part = answer.and_then(|v| {
            serde_json::from_value::<std::collections::BTreeMap<SkillId, QueueHealth>>(v["skills"].clone())
                .map_err(|e| ("?".to_string(), e.to_string()))
        });
        match part {
            Ok(part) => {
                for (skill, h) in part {
                    let mine = skills.entry(skill).or_default();
                    if h.queue != QueueFigures::default() {
                        mine.queue = h.queue;
                    }
                    mine.assigned += h.assigned;
                    mine.overdue_assigned += h.overdue_assigned;
                }
            }
            Err((peer, e)) => missing.push(format!("{peer}: {e}")),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "queue health is incomplete: {} did not answer; retry",
            missing.join(", ")
        )));
    }
    Ok(HttpResponse::Ok().json(HealthList { skills }))
}

// ---- agents ----

#[utoipa::path(put, path = "/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = AgentId, Path, description = "The agent")), request_body = PutAgent, responses((status = 200, description = "The agent (a new one starts offline)", body = AgentView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "A skill named does not exist", body = ErrorBody)))]
pub async fn put_agent(state: Data<AppState>, path: web::Path<AgentId>, bytes: Bytes) -> Result<HttpResponse> {
    let id = path.into_inner();
    let b: PutAgent = body(&bytes)?;
    // Existence of the skills is the router's to check (404); the shape is checked here.
    let mut spec = validate_agent_spec("", &b.skills, b.max_slots, b.max_open, |_| true)
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    spec.group = b.group;
    let agent = state.router.put_agent(id, spec).await?;
    let connected = state.streams.connected(&agent.id);
    Ok(HttpResponse::Ok().json(AgentView::new(&agent, connected)))
}

#[utoipa::path(post, path = "/v1/agents/{agent_id}/status", tag = "agents", params(("agent_id" = AgentId, Path, description = "The agent")), request_body = StatusBody, responses((status = 200, description = "The agent in its new status", body = AgentView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such agent", body = ErrorBody)))]
pub async fn set_status(state: Data<AppState>, path: web::Path<AgentId>, bytes: Bytes) -> Result<HttpResponse> {
    let id = path.into_inner();
    let b: StatusBody = body(&bytes)?;
    let agent = state
        .router
        .set_agent_status_with_reason(&id, b.status, b.reason)
        .await?;
    Ok(HttpResponse::Ok().json(AgentView::new(&agent, state.streams.connected(&id))))
}

/// The agents for a supervisor, filtered by status, skill and group, in id order: this node's,
/// and in a cluster every other live node's (a node that does not answer makes it 503).
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(AgentFilter), responses((status = 200, description = "The agents in id order", body = AgentList), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such skill", body = ErrorBody)))]
pub async fn list_agents(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let filter: AgentFilter = query(&req)?;
    if let Some(skill) = &filter.skill {
        state.router.skill(skill)?;
    }
    let now = state.router.clock().now();
    let mut agents = Vec::new();
    state.router.visit_agents(|a| {
        let status_ok = filter.status.is_none_or(|s| s == a.status);
        let skill_ok = filter.skill.as_ref().is_none_or(|s| a.skills.contains(s));
        let group_ok = filter.group.is_none() || filter.group == a.group;
        if status_ok && skill_ok && group_ok {
            agents.push(AgentSummary::new(a, now, state.streams.connected(&a.id)));
        }
    });
    for answer in to_peers(&state, &req, reqwest::Method::GET, Bytes::new()).await {
        let list = answer
            .and_then(|v| serde_json::from_value::<AgentList>(v).map_err(|e| ("a peer".to_string(), e.to_string())))
            .map_err(|(peer, e)| ApiError::Unavailable(format!("node {peer} did not list its agents ({e}); retry")))?;
        agents.extend(list.agents);
    }
    agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    Ok(HttpResponse::Ok().json(AgentList { agents }))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = AgentId, Path, description = "The agent")), responses((status = 200, description = "The agent with its conversations and offers", body = AgentView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such agent", body = ErrorBody)))]
pub async fn get_agent(state: Data<AppState>, path: web::Path<AgentId>) -> Result<HttpResponse> {
    let id = path.into_inner();
    let agent = state.router.agent(&id)?;
    Ok(HttpResponse::Ok().json(AgentView::new(&agent, state.streams.connected(&id))))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/events", tag = "agents", params(("agent_id" = AgentId, Path, description = "The agent")), responses((status = 200, description = "First `event: snapshot` (an AgentView), then each event as `event: <type>` with `data:` a RouterEvent; `: keep-alive` every 15 s", body = crate::api::openapi::AgentStreamEvent, content_type = "text/event-stream"), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such agent", body = ErrorBody)))]
pub async fn agent_events(state: Data<AppState>, path: web::Path<AgentId>) -> Result<HttpResponse> {
    let id = path.into_inner();
    let agent = state.router.agent(&id)?;
    // The stream this snapshot opens is the connection.
    let snapshot = serde_json::to_string(&AgentView::new(&agent, true)).unwrap_or_default();
    let hello = Bytes::from(format!("event: snapshot\ndata: {snapshot}\n\n"));
    let stream = state.streams.open(id, hello);
    Ok(sse(stream))
}

/// `GET /v1/events?skill=a,b&type=assigned,closed`: the platform's stream of every
/// event, resumable with `Last-Event-ID` within the last events kept; in a cluster, of
/// every node ([`crate::api::merge`]).
#[utoipa::path(get, path = "/v1/events", tag = "operations", params(EventQuery, ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = r"^([0-9]{1,19}|[A-Za-z0-9._-]{1,64}:[0-9]{1,19}(,[A-Za-z0-9._-]{1,64}:[0-9]{1,19})*)$", description = "Resume after this event: an event's `id` (a node's id, or in a cluster the cursor `node:id,...`)")), responses((status = 200, description = "Every event as `id:`, `event: <type>` and `data:` a RouterEvent; `event: gap` with `{\"missed_from\", \"oldest_kept\"}` (and in a cluster `node`) first when the log no longer reaches back to `Last-Event-ID`", body = crate::api::openapi::PlatformStreamEvent, content_type = "text/event-stream"), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such skill", body = ErrorBody), (status = 503, description = "In a cluster: a node's stream could not be opened; retry", body = ErrorBody)))]
pub async fn platform_events(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let q: EventQuery = query(&req)?;
    // Absent or empty: no filter; otherwise names separated by single commas.
    let list = |name: &str, v: Option<String>| -> Result<Vec<String>> {
        let v = v.unwrap_or_default();
        if v.is_empty() {
            return Ok(Vec::new());
        }
        let items: Vec<String> = v.split(',').map(str::to_string).collect();
        if items.iter().any(String::is_empty) {
            return Err(ApiError::InvalidRequest(format!(
                "{name}: {v:?} has an empty item; separate names with single commas"
            )));
        }
        Ok(items)
    };
    let mut filter = crate::api::sse::EventFilter::default();
    for s in list("skill", q.skill)? {
        let id = SkillId::new(&s)?;
        state.router.skill(&id)?;
        filter.skills.push(id);
    }
    for t in list("type", q.r#type)? {
        if !crate::events::EVENT_NAMES.contains(&t.as_str()) {
            return Err(ApiError::InvalidRequest(format!(
                "type {t:?} is not one of {:?}",
                crate::events::EVENT_NAMES
            )));
        }
        filter.types.push(t);
    }
    let last = match req.headers().get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::InvalidRequest("Last-Event-ID: not text".into()))?
                .to_string(),
        ),
    };
    let cursor = |here: &str| -> Result<Cursor> {
        last.as_deref().map_or(Ok(Cursor::default()), |l| {
            Cursor::parse(l, here).map_err(|e| ApiError::InvalidRequest(format!("Last-Event-ID: {e}")))
        })
    };
    let node = state
        .cluster
        .get()
        .filter(|_| !req.headers().contains_key(crate::api::forward::HOP));
    let Some(node) = node else {
        // One node (or a peer's part of a cluster stream): this node's events. A
        // single node's own ids are bare; a cluster cursor names no entry of it.
        let last_id = cursor("")?.0.get("").copied();
        return Ok(sse(state.streams.open_platform(filter, last_id)));
    };
    // A cluster: this node's stream and every live peer's, merged.
    let here = node.routes.node().to_string();
    let cursor = cursor(&here)?;
    let path = req
        .uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str())
        .to_string();
    let local = state
        .streams
        .open_platform(filter.clone(), cursor.0.get(&here).copied())
        .map(|r| r.map_err(|e| e.to_string()))
        .boxed();
    let mut sources: Vec<crate::api::merge::Source> = vec![(here.clone(), local)];
    // Ends when a node joins or leaves: the client resumes, with the new members.
    let members = futures_util::stream::once(node.routes.members_changed())
        .filter_map(|()| async { None::<std::result::Result<Bytes, String>> })
        .boxed();
    sources.push(("(members)".to_string(), members));
    let peers = node.routes.peers();
    // A node the cursor names that is gone: what it committed after that position.
    for (gone, &after) in &cursor.0 {
        if *gone != here && !peers.iter().any(|(p, _)| p == gone) {
            let stored = state.streams.open_stored(gone.clone(), filter.clone(), after);
            sources.push((gone.clone(), stored));
        }
    }
    // Every peer's stream at once, each within 5 s (a peer that takes the connection
    // and never answers must not hold the request).
    let opening = peers.into_iter().map(|(peer, addr)| {
        let mut r = peer_request(
            &state,
            &req,
            reqwest::Method::GET,
            format!("http://{addr}{path}"),
            &here,
        );
        if let Some(id) = cursor.0.get(&peer) {
            r = r.header("last-event-id", id.to_string());
        }
        async move {
            let resp = match tokio::time::timeout(Duration::from_secs(5), r.send()).await {
                Ok(Ok(resp)) if resp.status().is_success() => resp,
                Ok(Ok(resp)) => {
                    return Err(format!(
                        "the event stream of node {peer} answered {}; retry",
                        resp.status()
                    ))
                }
                Ok(Err(e)) => return Err(format!("the event stream of node {peer}: {e}; retry")),
                Err(_) => {
                    return Err(format!(
                        "the event stream of node {peer} did not answer within 5 s; retry"
                    ))
                }
            };
            Ok((peer, resp.bytes_stream().map(|r| r.map_err(|e| e.to_string())).boxed()))
        }
    });
    for opened in futures_util::future::join_all(opening).await {
        sources.push(opened.map_err(ApiError::Unavailable)?);
    }
    Ok(sse(crate::api::merge::merge(sources, cursor)))
}

// ---- conversations ----

#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = OpenConversation, responses((status = 201, description = "The new conversation", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such skill", body = ErrorBody), (status = 409, description = "The conversation id is taken", body = ErrorBody)))]
pub async fn open_conversation(state: Data<AppState>, bytes: Bytes) -> Result<HttpResponse> {
    let req: OpenConversation = body(&bytes)?;
    let c = state.router.open_conversation(req).await?;
    Ok(HttpResponse::Created().json(conversation_view(&state, &c)))
}

#[utoipa::path(get, path = "/v1/conversations/{conversation_id}", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), responses((status = 200, description = "The conversation", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation (or closed and past retention)", body = ErrorBody)))]
pub async fn get_conversation(state: Data<AppState>, path: web::Path<ConversationId>) -> Result<HttpResponse> {
    let id = path.into_inner();
    Ok(ok_conversation(&state, &state.router.conversation(&id)?))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/messages", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body = MessageBody, responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation or agent", body = ErrorBody), (status = 409, description = "Closed, or the agent does not hold it", body = ErrorBody)))]
pub async fn message(state: Data<AppState>, path: web::Path<ConversationId>, bytes: Bytes) -> Result<HttpResponse> {
    let id = path.into_inner();
    let c = match body(&bytes)? {
        MessageBody::Consumer {} => state.router.consumer_message(&id).await?,
        MessageBody::Agent { agent_id } => state.router.agent_message(&id, &agent_id).await?,
    };
    Ok(ok_conversation(&state, &c))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/accept", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body = AgentBody, responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation or agent", body = ErrorBody), (status = 409, description = "No such offer to this agent", body = ErrorBody)))]
pub async fn accept(state: Data<AppState>, path: web::Path<ConversationId>, bytes: Bytes) -> Result<HttpResponse> {
    let id = path.into_inner();
    let b: AgentBody = body(&bytes)?;
    Ok(ok_conversation(
        &state,
        &state.router.accept_offer(&id, &b.agent_id).await?,
    ))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/reject", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body = AgentBody, responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation or agent", body = ErrorBody), (status = 409, description = "No such offer to this agent", body = ErrorBody)))]
pub async fn reject(state: Data<AppState>, path: web::Path<ConversationId>, bytes: Bytes) -> Result<HttpResponse> {
    let id = path.into_inner();
    let b: AgentBody = body(&bytes)?;
    Ok(ok_conversation(
        &state,
        &state.router.reject_offer(&id, &b.agent_id).await?,
    ))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/return-to-queue", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body = AgentBody, responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation or agent", body = ErrorBody), (status = 409, description = "The agent does not hold it", body = ErrorBody)))]
pub async fn return_to_queue(
    state: Data<AppState>,
    path: web::Path<ConversationId>,
    bytes: Bytes,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    let b: AgentBody = body(&bytes)?;
    Ok(ok_conversation(
        &state,
        &state.router.return_to_queue(&id, &b.agent_id).await?,
    ))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/urgent", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body(content = Empty, description = "None, or `{}`"), responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation", body = ErrorBody), (status = 409, description = "Closed", body = ErrorBody)))]
pub async fn urgent(state: Data<AppState>, path: web::Path<ConversationId>, bytes: Bytes) -> Result<HttpResponse> {
    let id = path.into_inner();
    let _: Empty = body(&bytes)?;
    Ok(ok_conversation(&state, &state.router.mark_urgent(&id).await?))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/follow-up", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body = FollowUpBody, responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation or agent", body = ErrorBody), (status = 409, description = "The agent does not hold it", body = ErrorBody)))]
pub async fn follow_up(state: Data<AppState>, path: web::Path<ConversationId>, bytes: Bytes) -> Result<HttpResponse> {
    let id = path.into_inner();
    let b: FollowUpBody = body(&bytes)?;
    let c = state
        .router
        .follow_up(&id, &b.agent_id, Duration::from_secs(b.due_in_secs))
        .await?;
    Ok(ok_conversation(&state, &c))
}

/// The skills of an agent another node serves (a cluster), asked of that node: a
/// transfer to an unknown agent is 404 and to one without the skill 409, as on one node.
async fn remote_agent_skills(state: &AppState, req: &HttpRequest, agent: &AgentId) -> Result<Vec<SkillId>> {
    use crate::cluster::node::Owner;
    let shard = crate::actors::remote::shard_of_agent(agent);
    let moving = || ApiError::from(crate::error::RouterError::shard_moving(shard));
    let node = state.cluster.get().ok_or_else(moving)?;
    let Owner::Node(owner) = node.routes.owner(shard) else {
        return Err(moving());
    };
    let addr = node.routes.http_addr(&owner).ok_or_else(moving)?;
    let ask = peer_request(
        state,
        req,
        reqwest::Method::GET,
        format!("http://{addr}/v1/agents/{agent}"),
        node.routes.node(),
    );
    let answer = ask.send().await.map_err(|_| moving())?;
    match answer.status().as_u16() {
        200 => {}
        404 => return Err(crate::error::RouterError::not_found("agent", agent).into()),
        _ => return Err(moving()),
    }
    #[derive(Deserialize)]
    struct Skills {
        skills: Vec<SkillId>,
    }
    let v: Skills = answer.json().await.map_err(|_| moving())?;
    Ok(v.skills)
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/transfer", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body = TransferBody, responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation, skill or agent", body = ErrorBody), (status = 409, description = "Closed, a skill outside `transfer_to`, or an agent without the skill", body = ErrorBody)))]
pub async fn transfer(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<ConversationId>,
    bytes: Bytes,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    let b: TransferBody = body(&bytes)?;
    let c = match (b.skill, b.agent_id) {
        (Some(skill), None) => state.router.transfer_to_skill(&id, &skill).await?,
        (skill, Some(agent)) if state.router.agent_elsewhere(&agent) => {
            let skills = remote_agent_skills(&state, &req, &agent).await?;
            state
                .router
                .transfer_to_agent_with_skills(&id, &agent, &skills, skill.as_ref())
                .await?
        }
        (skill, Some(agent)) => state.router.transfer_to_agent(&id, &agent, skill.as_ref()).await?,
        (None, None) => {
            return Err(ApiError::InvalidRequest(
                "give skill, agent_id, or both (to an agent in a new skill)".into(),
            ))
        }
    };
    Ok(ok_conversation(&state, &c))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/reopen", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body = ReopenBody, responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation (or past retention), or agent", body = ErrorBody), (status = 409, description = "Open, or the agent lacks the skill", body = ErrorBody)))]
pub async fn reopen(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<ConversationId>,
    bytes: Bytes,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    let c = match body(&bytes)? {
        ReopenBody::Consumer {} => state.router.reopen(&id, None, None).await?,
        ReopenBody::Agent { agent_id } if state.router.agent_elsewhere(&agent_id) => {
            let skills = remote_agent_skills(&state, &req, &agent_id).await?;
            state.router.reopen(&id, Some(&agent_id), Some(&skills)).await?
        }
        ReopenBody::Agent { agent_id } => state.router.reopen(&id, Some(&agent_id), None).await?,
    };
    Ok(ok_conversation(&state, &c))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/close", tag = "conversations", params(("conversation_id" = ConversationId, Path, description = "The conversation")), request_body = CloseBody, responses((status = 200, description = "The conversation after the change", body = ConversationView), (status = 400, description = "Malformed JSON, an unknown field, a bad id or value; nothing changed", body = ErrorBody), (status = 404, description = "No such conversation or agent", body = ErrorBody), (status = 409, description = "Already closed, or the agent does not hold it", body = ErrorBody)))]
pub async fn close(state: Data<AppState>, path: web::Path<ConversationId>, bytes: Bytes) -> Result<HttpResponse> {
    let id = path.into_inner();
    let (by, agent) = body::<CloseBody>(&bytes)?.split();
    Ok(ok_conversation(
        &state,
        &state.router.close(&id, by, agent.as_ref()).await?,
    ))
}
