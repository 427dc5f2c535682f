//! Request handlers: parse and validate, call the [`Router`](crate::Router), render a
//! view. They only send to actors; nothing is spawned on an actix worker.

use std::time::Duration;

use actix_web::web::{self, Bytes, Data};
use actix_web::{HttpRequest, HttpResponse, Responder};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::views::{AgentSummary, AgentView, ConversationView, SkillView};
use crate::api::AppState;
use crate::config::{validate_agent_spec, SkillSpec};
use crate::domain::agent::AgentStatus;
use crate::domain::conversation::{ClosedBy, Conversation};
use crate::domain::queue::QueueFigures;
use crate::ids::{AgentId, ConversationId, SkillId};
use crate::router::{OpenConversation, QueueHealth};

type Result<T> = std::result::Result<T, ApiError>;

/// Parses a JSON body. An empty body reads as `{}` for bodies whose every field is optional.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
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

pub async fn healthz() -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(state: Data<AppState>) -> Result<HttpResponse> {
    if !state.is_ready() {
        Err(ApiError::Unavailable("not ready: starting".into()))
    } else if !state.router.store_healthy() {
        Err(ApiError::Unavailable(
            "not ready: the store is failing to commit".into(),
        ))
    } else {
        Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
    }
}

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

pub async fn method_not_allowed() -> Result<HttpResponse> {
    Err(ApiError::MethodNotAllowed)
}

// ---- skills ----

pub async fn put_skill(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: Bytes,
) -> Result<HttpResponse> {
    let id = SkillId::new(path.as_str())?;
    let spec: SkillSpec = body(&bytes)?;
    let skill = state.router.put_skill(id, &spec).await?;
    // Skills are the same on every node of a cluster: the node that takes the request
    // applies it on the others.
    for answer in to_peers(&state, &req, reqwest::Method::PUT, bytes).await {
        if let Err((peer, e)) = answer {
            return Err(ApiError::Unavailable(format!(
                "skill {} is set on this node but not yet on {peer} ({e}); retry (the request is idempotent)",
                skill.id
            )));
        }
    }
    Ok(HttpResponse::Ok().json(SkillView::new(&skill)))
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
        let mut r = state
            .http
            .request(method.clone(), format!("http://{addr}{path}"))
            .header(crate::api::forward::HOP, node.routes.node())
            .timeout(Duration::from_secs(5))
            .body(body.clone());
        for name in ["authorization", "content-type"] {
            if let Some(v) = req.headers().get(name) {
                r = r.header(name, v.as_bytes());
            }
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

pub async fn get_skill(state: Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let id = SkillId::new(path.as_str())?;
    let skill = state.router.skill(&id)?;
    Ok(HttpResponse::Ok().json(SkillView::new(&skill)))
}

pub async fn list_skills(state: Data<AppState>) -> Result<HttpResponse> {
    let skills: Vec<SkillView> = state.router.skills().iter().map(|s| SkillView::new(s)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "skills": skills })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    limit: Option<usize>,
}

pub async fn get_queue(
    state: Data<AppState>,
    path: web::Path<String>,
    q: web::Query<QueueQuery>,
) -> Result<HttpResponse> {
    let id = SkillId::new(path.as_str())?;
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(HttpResponse::Ok().json(state.router.queue(&id, limit).await?))
}

/// The whole router's figures: in a cluster, each skill's queue figures come from the
/// node serving its queue, and the assigned counts are summed over every node.
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "skills": skills })))
}

// ---- agents ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutAgent {
    skills: Vec<String>,
    max_slots: u32,
    max_open: Option<u32>,
}

pub async fn put_agent(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = AgentId::new(path.as_str())?;
    let b: PutAgent = body(&bytes)?;
    // Existence of the skills is the router's to check (404); the shape is checked here.
    let spec = validate_agent_spec("", &b.skills, b.max_slots, b.max_open, |_| true)
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let agent = state.router.put_agent(id, spec).await?;
    Ok(HttpResponse::Ok().json(AgentView::new(&agent)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: AgentStatus,
    /// With `away`: one of `routing.away_reasons`.
    reason: Option<String>,
}

pub async fn set_status(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = AgentId::new(path.as_str())?;
    let b: StatusBody = body(&bytes)?;
    let agent = state
        .router
        .set_agent_status_with_reason(&id, b.status, b.reason)
        .await?;
    Ok(HttpResponse::Ok().json(AgentView::new(&agent)))
}

/// `GET /v1/agents?status=&skill=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFilter {
    status: Option<AgentStatus>,
    skill: Option<SkillId>,
}

#[derive(serde::Serialize, Deserialize)]
struct AgentList {
    agents: Vec<AgentSummary>,
}

/// The agents for a supervisor, filtered by status and skill, in id order: this node's,
/// and in a cluster every other live node's (a node that does not answer makes it 503).
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
        if status_ok && skill_ok {
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

pub async fn get_agent(state: Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let id = AgentId::new(path.as_str())?;
    Ok(HttpResponse::Ok().json(AgentView::new(&state.router.agent(&id)?)))
}

pub async fn agent_events(state: Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let id = AgentId::new(path.as_str())?;
    let agent = state.router.agent(&id)?;
    let snapshot = serde_json::to_string(&AgentView::new(&agent)).unwrap_or_default();
    let hello = Bytes::from(format!("event: snapshot\ndata: {snapshot}\n\n"));
    let stream = state.streams.open(id, hello);
    Ok(sse(stream))
}

/// `GET /v1/events?skill=a,b&type=assigned,closed`: the platform's stream of every
/// event of this node, resumable with `Last-Event-ID` within the last events kept.
pub async fn platform_events(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Query {
        skill: Option<String>,
        r#type: Option<String>,
    }
    let q: Query = query(&req)?;
    let list = |v: Option<String>| -> Vec<String> {
        v.map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut filter = crate::api::sse::EventFilter::default();
    for s in list(q.skill) {
        let id = SkillId::new(&s)?;
        state.router.skill(&id)?;
        filter.skills.push(id);
    }
    for t in list(q.r#type) {
        if !crate::events::EVENT_NAMES.contains(&t.as_str()) {
            return Err(ApiError::InvalidRequest(format!(
                "type {t:?} is not one of {:?}",
                crate::events::EVENT_NAMES
            )));
        }
        filter.types.push(t);
    }
    let last_id = match req.headers().get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::InvalidRequest("Last-Event-ID: not an event id".into()))?,
        ),
    };
    let stream = state.streams.open_platform(filter, last_id);
    Ok(sse(stream))
}

// ---- conversations ----

pub async fn open_conversation(state: Data<AppState>, bytes: Bytes) -> Result<HttpResponse> {
    let req: OpenConversation = body(&bytes)?;
    let c = state.router.open_conversation(req).await?;
    Ok(HttpResponse::Created().json(conversation_view(&state, &c)))
}

pub async fn get_conversation(state: Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    Ok(ok_conversation(&state, &state.router.conversation(&id)?))
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum From {
    Consumer,
    Agent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    from: From,
    agent_id: Option<AgentId>,
}

pub async fn message(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    let b: MessageBody = body(&bytes)?;
    let c = match (b.from, b.agent_id) {
        (From::Consumer, None) => state.router.consumer_message(&id).await?,
        (From::Agent, Some(agent)) => state.router.agent_message(&id, &agent).await?,
        (From::Consumer, Some(_)) => return Err(ApiError::InvalidRequest("agent_id is only for from = agent".into())),
        (From::Agent, None) => {
            return Err(ApiError::InvalidRequest(
                "agent_id is required when from = agent".into(),
            ))
        }
    };
    Ok(ok_conversation(&state, &c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBody {
    agent_id: AgentId,
}

pub async fn accept(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    let b: AgentBody = body(&bytes)?;
    Ok(ok_conversation(
        &state,
        &state.router.accept_offer(&id, &b.agent_id).await?,
    ))
}

pub async fn reject(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    let b: AgentBody = body(&bytes)?;
    Ok(ok_conversation(
        &state,
        &state.router.reject_offer(&id, &b.agent_id).await?,
    ))
}

pub async fn return_to_queue(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    let b: AgentBody = body(&bytes)?;
    Ok(ok_conversation(
        &state,
        &state.router.return_to_queue(&id, &b.agent_id).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

pub async fn urgent(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    let _: Empty = body(&bytes)?;
    Ok(ok_conversation(&state, &state.router.mark_urgent(&id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUpBody {
    agent_id: AgentId,
    due_in_secs: u64,
}

pub async fn follow_up(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    let b: FollowUpBody = body(&bytes)?;
    let c = state
        .router
        .follow_up(&id, &b.agent_id, Duration::from_secs(b.due_in_secs))
        .await?;
    Ok(ok_conversation(&state, &c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    skill: Option<SkillId>,
    agent_id: Option<AgentId>,
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
    let mut ask = state
        .http
        .get(format!("http://{addr}/v1/agents/{agent}"))
        .header(crate::api::forward::HOP, node.routes.node());
    if let Some(auth) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        ask = ask.header("authorization", auth.as_bytes());
    }
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

pub async fn transfer(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: Bytes,
) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
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

/// Who reopens a conversation: `{"by": "consumer"}` or `{"by": "agent", "agent_id"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReopenBody {
    by: ClosedBy,
    agent_id: Option<AgentId>,
}

pub async fn reopen(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: Bytes,
) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    let b: ReopenBody = body(&bytes)?;
    let c = match (b.by, b.agent_id) {
        (ClosedBy::Consumer, None) => state.router.reopen(&id, None, None).await?,
        (ClosedBy::Agent, Some(agent)) if state.router.agent_elsewhere(&agent) => {
            let skills = remote_agent_skills(&state, &req, &agent).await?;
            state.router.reopen(&id, Some(&agent), Some(&skills)).await?
        }
        (ClosedBy::Agent, Some(agent)) => state.router.reopen(&id, Some(&agent), None).await?,
        _ => {
            return Err(ApiError::InvalidRequest(
                "give {\"by\": \"consumer\"} or {\"by\": \"agent\", \"agent_id\"}".into(),
            ))
        }
    };
    Ok(ok_conversation(&state, &c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    by: ClosedBy,
    agent_id: Option<AgentId>,
}

pub async fn close(state: Data<AppState>, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse> {
    let id = ConversationId::new(path.as_str())?;
    let b: CloseBody = body(&bytes)?;
    if b.by != ClosedBy::Agent && b.agent_id.is_some() {
        return Err(ApiError::InvalidRequest("agent_id is only for by = agent".into()));
    }
    Ok(ok_conversation(
        &state,
        &state.router.close(&id, b.by, b.agent_id.as_ref()).await?,
    ))
}
