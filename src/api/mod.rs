//! The HTTP API (actix-web): routes, middleware (auth, overload, body limit, metrics),
//! and the server's start and stop. `docs/api.md` is the contract.
//!
//! The engine runs on the main tokio runtime; actix runs its workers on their own
//! threads. Handlers only talk to the [`Router`](crate::Router), whose actors live on
//! the main runtime.

pub mod error;
pub mod forward;
pub mod handlers;
pub mod merge;
pub mod openapi;
pub mod page;
pub mod requests;
pub mod sse;
pub mod views;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};
use anyhow::Context;
use tokio::sync::watch;

use crate::api::error::ApiError;
use crate::api::sse::EventStreams;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::time::Clock;
use crate::Router;

/// What every handler sees.
#[derive(Debug)]
pub struct AppState {
    pub router: Router,
    pub metrics: Arc<Metrics>,
    pub streams: Arc<EventStreams>,
    api_token: Option<String>,
    max_in_flight: i64,
    max_body_bytes: usize,
    ready: AtomicBool,
    /// Set when this node is one of a cluster.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::node::ClusterNode>>,
    /// With `cluster`: this node's HTTP address as the other nodes reach it, the
    /// value of the `x-switchboard-served-by` header its answers carry (made once).
    pub served_by: std::sync::OnceLock<actix_web::http::header::HeaderValue>,
    /// The client requests are forwarded to other nodes with.
    pub http: reqwest::Client,
}

impl AppState {
    /// What the handlers of one node share. Not ready (every `/v1` call 503) until
    /// [`AppState::set_ready`].
    pub fn new(
        router: Router,
        metrics: Arc<Metrics>,
        streams: Arc<EventStreams>,
        server: &crate::config::ServerConfig,
    ) -> anyhow::Result<Data<AppState>> {
        Ok(Data::new(AppState {
            router,
            metrics,
            streams,
            api_token: server.api_token.clone(),
            max_in_flight: server.max_in_flight,
            max_body_bytes: server.max_body_bytes,
            ready: AtomicBool::new(false),
            cluster: std::sync::OnceLock::new(),
            served_by: std::sync::OnceLock::new(),
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(2))
                .build()
                .context("building the HTTP client for forwarding")?,
        }))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// The application: the routes with their middleware and the extractors' JSON errors.
/// [`start`] serves it on a socket; handler tests call
/// `actix_web::test::init_service(app(state))` without one.
pub fn app(
    state: Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let max_body = state.max_body_bytes;
    App::new()
        .app_data(state)
        .app_data(web::PayloadConfig::new(max_body))
        .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::InvalidRequest(e.to_string()).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::InvalidRequest(e.to_string()).into()))
        .wrap(from_fn(observe))
        .configure(routes)
}

/// Compares without an early exit, so response time does not reveal the token's prefix.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `/v1`: bearer token, body size, and the engine's backlog bound.
async fn guard_v1(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<Data<AppState>>().cloned();
    if let Some(state) = state {
        if let Some(token) = &state.api_token {
            let given = req
                .headers()
                .get("Authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !same_token(given.as_bytes(), token.as_bytes()) {
                return Err(ApiError::Unauthorized.into());
            }
        }
        let declared = req
            .headers()
            .get("Content-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > state.max_body_bytes) {
            return Err(ApiError::PayloadTooLarge(state.max_body_bytes).into());
        }
        if !state.is_ready() {
            return Err(
                ApiError::Unavailable("the router is starting (reading its store back); retry later".into()).into(),
            );
        }
        if req.method() != Method::GET && state.router.in_flight() > state.max_in_flight {
            state.metrics.rejected_overload.inc();
            return Err(ApiError::Overloaded("the router's backlog is past its bound; retry later".into()).into());
        }
    }
    next.call(req).await
}

/// Requests by matched route (never the raw path), method and status, with latency.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<Data<AppState>>().map(|s| Arc::clone(&s.metrics));
    let method = req.method().to_string();
    let res = next.call(req).await;
    if let Some(metrics) = metrics {
        let (route, status) = match &res {
            Ok(r) => (
                r.request().match_pattern().unwrap_or_else(|| "unmatched".into()),
                r.status().as_u16(),
            ),
            Err(e) => ("unmatched".to_string(), e.as_response_error().status_code().as_u16()),
        };
        metrics
            .http_requests
            .with_label_values(&[&route, &method, &status.to_string()])
            .inc();
        metrics
            .http_histogram(&route, &method)
            .observe(started.elapsed().as_secs_f64());
    }
    res
}

/// A resource whose unsupported methods get a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(handlers::method_not_allowed))
}

/// The routes, for `App::configure`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use handlers as h;
    cfg.service(resource("/").get(page::index))
        .service(resource("/app.js").get(page::app_js))
        .service(resource("/app.css").get(page::app_css))
        .service(resource("/healthz").get(h::healthz))
        .service(resource("/readyz").get(h::readyz))
        .service(resource("/metrics").get(h::metrics))
        .service(resource("/openapi.json").get(openapi::openapi_json))
        .service(
            web::scope("/v1")
                .wrap(from_fn(forward::forward))
                .wrap(from_fn(guard_v1))
                .service(resource("/skills").get(h::list_skills))
                .service(resource("/skills/{skill_id}").put(h::put_skill).get(h::get_skill))
                .service(resource("/skills/{skill_id}/queue").get(h::get_queue))
                .service(
                    resource("/skills/{skill_id}/off-hours")
                        .put(h::put_off_hours)
                        .get(h::get_off_hours),
                )
                .service(resource("/queue-health").get(h::queue_health))
                .service(resource("/agents").get(h::list_agents))
                .service(resource("/events").get(h::platform_events))
                .service(resource("/agents/{agent_id}").put(h::put_agent).get(h::get_agent))
                .service(resource("/agents/{agent_id}/status").post(h::set_status))
                .service(resource("/agents/{agent_id}/events").get(h::agent_events))
                .service(resource("/conversations").post(h::open_conversation))
                .service(resource("/conversations/{conversation_id}").get(h::get_conversation))
                .service(resource("/conversations/{conversation_id}/messages").post(h::message))
                .service(resource("/conversations/{conversation_id}/accept").post(h::accept))
                .service(resource("/conversations/{conversation_id}/reject").post(h::reject))
                .service(resource("/conversations/{conversation_id}/urgent").post(h::urgent))
                .service(resource("/conversations/{conversation_id}/follow-up").post(h::follow_up))
                .service(resource("/conversations/{conversation_id}/transfer").post(h::transfer))
                .service(resource("/conversations/{conversation_id}/return-to-queue").post(h::return_to_queue))
                .service(resource("/conversations/{conversation_id}/reopen").post(h::reopen))
                .service(resource("/conversations/{conversation_id}/close").post(h::close)),
        )
        .default_service(web::to(h::not_found));
}

/// A running server: its address, its engine, and how to stop it.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub router: Router,
    pub state: Data<AppState>,
    handle: ServerHandle,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Ends the event streams, stops accepting, finishes in-flight requests, stops the engine.
    pub async fn stop(self) {
        self.state.set_ready(false);
        let _ = self.shutdown.send(true);
        self.handle.stop(true).await;
        let _ = self.server.await;
        if let Some(node) = self.state.cluster.get() {
            // What is queued for the store is committed, then the shards are handed
            // over: the other nodes take them at their next round.
            node.leave().await;
        }
        self.router.shutdown().await;
    }

    /// Waits until the server stops by itself (it does not: this is for `serve`, which
    /// stops it from a signal handler through [`RunningServer::stop`]).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }
}

/// Starts the engine and the HTTP server on `config.server.listen` (port 0 picks one),
/// then reads the store back (with one configured): meanwhile `/healthz` answers,
/// `/readyz` and `/v1` answer 503. Returns once the router is ready. Must be called
/// inside a tokio runtime: the engine's actors run there.
pub async fn start(config: Config, clock: Clock) -> anyhow::Result<RunningServer> {
    let server_cfg = config.server.clone();
    let router = Router::boot(&config.engine, clock)
        .await
        .context("starting the routing engine")?;
    let metrics = Arc::new(Metrics::new());
    metrics.spawn_event_task(&router);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let streams = EventStreams::new(server_cfg.event_stream_buffer, shutdown_rx, Arc::clone(&metrics));
    streams.spawn_fanout(&router);
    let state = AppState::new(router.clone(), Arc::clone(&metrics), streams, &server_cfg)?;

    let listener = TcpListener::bind(&server_cfg.listen).with_context(|| format!("binding {}", server_cfg.listen))?;
    let addr = listener.local_addr()?;
    let app_state = state.clone();
    let mut server = HttpServer::new(move || app(app_state.clone()))
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)?;
    if server_cfg.workers > 0 {
        server = server.workers(server_cfg.workers);
    }
    let server = server.run();
    let handle = server.handle();
    let join = tokio::spawn(server);
    let running = RunningServer {
        addr,
        router,
        state,
        handle,
        shutdown: shutdown_tx,
        server: join,
    };
    tracing::info!(%addr, "switchboard listening; not ready until the engine is set up");
    match set_up(&running, config, &metrics).await {
        Ok(()) => {
            running.state.set_ready(true);
            // Counted from readiness: no client could open a stream before.
            if let Some(after) = running.router.policy().disconnected_away_after {
                running.state.streams.spawn_disconnected_away(&running.router, after);
            }
            tracing::info!(%addr, "ready");
            Ok(running)
        }
        Err(e) => {
            running.stop().await;
            Err(e)
        }
    }
}

/// Reads the store back (when there is one), then applies the config's skills and agents.
async fn set_up(running: &RunningServer, config: Config, metrics: &Metrics) -> anyhow::Result<()> {
    let router = &running.router;
    if let Some(cluster) = config.cluster.clone() {
        return join_cluster(running, config, cluster, metrics).await;
    }
    if let Some(url) = config.store.url.clone() {
        let started = Instant::now();
        let store_config = config.store.clone();
        let (store, snapshot, era) = tokio::task::spawn_blocking(move || {
            let (store, snapshot) = Store::open(&store_config)?;
            let era = store.begin_event_era().context("starting the event log's era")?;
            anyhow::Ok((store, snapshot, era))
        })
        .await
        .context("reading the store")??;
        metrics.register_store(&store.metrics);
        // Before the engine reads the store back: every event of this start is numbered
        // in the new era.
        running
            .state
            .streams
            .attach_store(Arc::clone(&store), era, config.store.events_kept);
        let read = started.elapsed();
        let recovered = router
            .recover(store, snapshot)
            .await
            .context("recovering the engine from the store")?;
        let took = started.elapsed();
        metrics.recovery_seconds.set(took.as_secs_f64());
        tracing::info!(
            store = %crate::store::redact_url(&url),
            durability = ?config.store.durability,
            skills = recovered.skills,
            agents = recovered.agents,
            open = recovered.open,
            closed = recovered.closed,
            expired = recovered.expired,
            offers_voided = recovered.offers_voided,
            read_ms = read.as_millis() as u64,
            total_ms = took.as_millis() as u64,
            "state recovered from the store"
        );
    } else {
        tracing::info!("no store: state is in memory only and a restart loses it");
    }
    router
        .install_config(config.engine)
        .await
        .context("installing the configured skills and agents")?;
    Ok(())
}

/// A cluster node's start: the node takes its shards (their records are read then);
/// the config's skills are applied on every node, its agents by the node of each one's
/// shard.
async fn join_cluster(
    running: &RunningServer,
    config: Config,
    cluster: crate::config::ClusterConfig,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let router = &running.router;
    let http_addr = match &cluster.advertise_http {
        Some(a) => a.clone(),
        None if running.addr.ip().is_unspecified() => anyhow::bail!(
            "server.listen {} is a wildcard address: set [cluster] advertise_http to the address other nodes reach this one at",
            running.addr
        ),
        None => running.addr.to_string(),
    };
    let served_by = actix_web::http::header::HeaderValue::from_str(&http_addr)
        .with_context(|| format!("[cluster] advertise_http {http_addr:?} is not a valid HTTP header value"))?;
    let store = config.store.clone();
    anyhow::ensure!(
        store.url.as_deref().is_some_and(|u| u.starts_with("postgres")),
        "a cluster node needs [store] url = \"postgres://...\" (the nodes share it)"
    );
    let streams = Arc::clone(&running.state.streams);
    let (log, events_kept) = (Arc::clone(&running.state.streams), config.store.events_kept);
    let setup = crate::cluster::node::NodeSetup {
        cluster: cluster.clone(),
        store,
        http_addr: http_addr.clone(),
        agents: config.engine.agents.clone(),
    };
    let node = crate::cluster::node::ClusterNode::start(
        setup,
        router.clone(),
        Arc::new(move |e: crate::events::RouterEvent| streams.dispatch(e)),
        // Before the node takes a shard: every event of this start is numbered in the
        // new era.
        Box::new(move |store: &Arc<Store>| {
            let era = store.begin_event_era().context("starting the event log's era")?;
            log.attach_store(Arc::clone(store), era, events_kept);
            Ok(())
        }),
    )
    .await
    .with_context(|| format!("joining the cluster as {}", cluster.node))?;
    metrics.register_store(&node.store.metrics);
    metrics.register_cluster(&node, router);
    for skill in config.engine.skills {
        router
            .install_skill(skill)
            .await
            .context("installing the configured skills")?;
    }
    tracing::info!(
        node = %cluster.node,
        cluster_port = %cluster.listen,
        http = %http_addr,
        shards = node.routes.adopted().len(),
        "joined the cluster"
    );
    let _ = running.state.served_by.set(served_by);
    let _ = running.state.cluster.set(node);
    Ok(())
}

#[cfg(test)]
mod tests;
