//! The live operations page, `GET /`, and its two assets: files of `web/` embedded in
//! the binary, so the page loads nothing from anywhere else (its Content-Security-Policy
//! says so too). It reads the API like any client, with the bearer token when the
//! server has one; `tests/browser/live-page.mjs` drives it in headless Chromium.

use actix_web::HttpResponse;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

/// `GET /`.
#[utoipa::path(get, path = "/", tag = "page",
    responses((status = 200, description = "The live operations page: queues, agents, conversations, live from `GET /v1/events`", body = String, content_type = "text/html")))]
pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /app.js`.
#[utoipa::path(get, path = "/app.js", tag = "page",
    responses((status = 200, description = "The page's script", body = String, content_type = "text/javascript")))]
pub async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /app.css`.
#[utoipa::path(get, path = "/app.css", tag = "page",
    responses((status = 200, description = "The page's style sheet", body = String, content_type = "text/css")))]
pub async fn app_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}
