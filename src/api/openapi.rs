//! The OpenAPI 3.1 document, `GET /openapi.json`: made from the handlers' own
//! annotations and the request and view types, so it cannot drift from the code.
//! `tests/openapi.rs` checks that it names every route the server answers and every
//! endpoint `docs/api.md` describes; CI runs schemathesis against a live server with it.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::api::handlers;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard",
        description = "Routes asynchronous messaging conversations to human agents. \
            `docs/api.md` describes each call's behaviour; this document is its contract."
    ),
    paths(
        openapi_json,
        crate::api::page::index,
        crate::api::page::app_js,
        crate::api::page::app_css,
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        handlers::list_skills,
        handlers::put_skill,
        handlers::get_off_hours,
        handlers::put_off_hours,
        handlers::get_skill,
        handlers::get_queue,
        handlers::queue_health,
        handlers::list_agents,
        handlers::put_agent,
        handlers::get_agent,
        handlers::set_status,
        handlers::agent_events,
        handlers::platform_events,
        handlers::open_conversation,
        handlers::get_conversation,
        handlers::message,
        handlers::accept,
        handlers::reject,
        handlers::urgent,
        handlers::follow_up,
        handlers::transfer,
        handlers::return_to_queue,
        handlers::reopen,
        handlers::close,
    ),
    // The event streams' payloads: each `data:` line of an event stream is one of these.
    components(schemas(crate::events::RouterEvent, crate::api::views::AgentView)),
    modifiers(&V1),
    tags(
        (name = "skills", description = "Skills: queues with their SLA and Smart Capacity settings"),
        (name = "agents", description = "Agents: skills, capacity, status and their event streams"),
        (name = "conversations", description = "Conversations: the consumer's and the agents' actions"),
        (name = "operations", description = "Health, metrics and the platform's event stream"),
        (name = "page", description = "The live operations page and its assets"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// What every `/v1` call may also answer, whichever the call: the bearer token (when
/// `server.api_token` is set), the body limit on writes, and 503 while starting, shutting
/// down or past the engine's backlog bound.
struct V1;

fn error_response(description: &str, retry_after: bool) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    let mut r = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    if retry_after {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(<u32 as utoipa::PartialSchema>::schema()))
                .description(Some("Seconds"))
                .build(),
        );
    }
    r.build()
}

impl Modify for V1 {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`server.api_token`; without one, /v1 is open"))
                    .build(),
            ),
        );
        let shared = [
            ("Unauthorized", error_response("Missing or wrong bearer token", false)),
            (
                "PayloadTooLarge",
                error_response("Body over `server.max_body_bytes`", false),
            ),
            (
                "Unavailable",
                error_response(
                    "`overloaded` (the engine's backlog, or `routing.max_open_conversations`) \
                     or `unavailable` (starting, shutting down, an actor or a peer not answering)",
                    true,
                ),
            ),
        ];
        // utoipa writes `additionalProperties: false` for structs that deny unknown
        // fields, not for the variants of a tagged enum that does.
        for name in ["MessageBody", "ReopenBody", "CloseBody"] {
            if let Some(RefOr::T(Schema::OneOf(one))) = components.schemas.get_mut(name) {
                for item in &mut one.items {
                    if let RefOr::T(Schema::Object(o)) = item {
                        o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                    }
                }
            }
        }
        for (name, response) in shared {
            components.responses.insert(name.to_string(), RefOr::T(response));
        }
        let shared_ref = |name: &str| RefOr::Ref(Ref::from_response_name(name));
        links(&mut doc.paths);
        // Bodies that may be left out: a skill `PUT` without one takes every default,
        // and `urgent` needs none.
        let optional_bodies = ["put_skill", "urgent"];
        for (path, item) in doc.paths.paths.iter_mut() {
            let v1 = path.starts_with("/v1/");
            for op in [&mut item.get, &mut item.put, &mut item.post].into_iter().flatten() {
                if !v1 {
                    continue;
                }
                op.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::default(),
                ]);
                if let (Some(RefOr::T(body)), Some(id)) = (op.request_body.as_mut(), op.operation_id.as_deref()) {
                    if optional_bodies.contains(&id) {
                        body.required = Some(utoipa::openapi::Required::False);
                    }
                }
                let responses = &mut op.responses.responses;
                responses.insert("401".into(), shared_ref("Unauthorized"));
                responses.insert("503".into(), shared_ref("Unavailable"));
                if op.request_body.is_some() {
                    responses.insert("413".into(), shared_ref("PayloadTooLarge"));
                }
            }
        }
    }
}

/// Links for schemathesis' stateful phase (and any client generator): what a `PUT` of a
/// skill or an agent and a `POST` of a conversation answer names the resource that every
/// operation on it takes in its path.
fn links(paths: &mut utoipa::openapi::path::Paths) {
    let makers = [
        ("put_skill", "200", "skill_id"),
        ("put_agent", "200", "agent_id"),
        ("open_conversation", "201", "conversation_id"),
    ];
    let mut users: Vec<(String, String)> = Vec::new();
    for (path, item) in &paths.paths {
        for op in [&item.get, &item.put, &item.post].into_iter().flatten() {
            if let (Some(id), Some((_, _, param))) = (
                op.operation_id.as_ref(),
                makers.iter().find(|(_, _, p)| path.contains(&format!("{{{p}}}"))),
            ) {
                users.push((id.clone(), (*param).to_string()));
            }
        }
    }
    for item in paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.put, &mut item.post].into_iter().flatten() {
            let Some((_, status, param)) = makers.iter().find(|(m, _, _)| op.operation_id.as_deref() == Some(*m))
            else {
                continue;
            };
            let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) else {
                continue;
            };
            for (user, p) in users.iter().filter(|(_, p)| p == param) {
                let link = LinkBuilder::new()
                    .operation_id(user)
                    .parameter(p, format!("$response.body#/{p}"))
                    .build();
                response.links.insert(user.clone(), RefOr::T(link));
            }
        }
    }
}

/// An event of a stream as the OpenAPI 3.2 convention for `text/event-stream` reads
/// it: `{event, data, id}`, `data` being JSON of the given schema.
fn sse_event(events: &[&str], data: RefOr<Schema>, with_id: bool) -> ObjectBuilder {
    let mut o = ObjectBuilder::new()
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(events.iter().copied())),
        )
        .required("event")
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .content_schema(Some(data)),
        )
        .required("data");
    if with_id {
        o = o
            .property(
                "id",
                ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]+$")),
            )
            .required("id");
    }
    o
}

/// An event of `GET /v1/agents/{agent_id}/events`: first the agent's `snapshot`, then
/// its conversations' events.
#[derive(Debug)]
pub struct AgentStreamEvent;

impl utoipa::PartialSchema for AgentStreamEvent {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(sse_event(
                &["snapshot"],
                Ref::from_schema_name("AgentView").into(),
                false,
            ))
            .item(sse_event(
                &crate::events::EVENT_NAMES,
                Ref::from_schema_name("RouterEvent").into(),
                false,
            ))
            .into()
    }
}

impl utoipa::ToSchema for AgentStreamEvent {}

/// An event of `GET /v1/events`: each with its id, and a `gap` first when the log no
/// longer reaches back to `Last-Event-ID`.
#[derive(Debug)]
pub struct PlatformStreamEvent;

impl utoipa::PartialSchema for PlatformStreamEvent {
    fn schema() -> RefOr<Schema> {
        let gap = ObjectBuilder::new()
            .property("missed_from", <u64 as utoipa::PartialSchema>::schema())
            .required("missed_from")
            .property("oldest_kept", <u64 as utoipa::PartialSchema>::schema())
            .required("oldest_kept");
        OneOfBuilder::new()
            .item(sse_event(
                &crate::events::EVENT_NAMES,
                Ref::from_schema_name("RouterEvent").into(),
                true,
            ))
            .item(sse_event(&["gap"], gap.into(), false))
            .into()
    }
}

impl utoipa::ToSchema for PlatformStreamEvent {}

/// The methods a route answers, from the document (for the `Allow` header of a 405).
pub fn allowed_methods(pattern: &str) -> Option<&'static str> {
    static ALLOW: OnceLock<std::collections::HashMap<String, String>> = OnceLock::new();
    ALLOW
        .get_or_init(|| {
            document()
                .paths
                .paths
                .iter()
                .map(|(path, item)| {
                    let methods: Vec<&str> = [
                        ("GET", item.get.is_some()),
                        ("PUT", item.put.is_some()),
                        ("POST", item.post.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(m, has)| has.then_some(m))
                    .collect();
                    (path.clone(), methods.join(", "))
                })
                .collect()
        })
        .get(pattern)
        .map(String::as_str)
}

/// The document, made once.
fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as JSON, made once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default())
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(json())
}
