//! The floor for the HTTP benchmark: a bare actix-web server that parses a JSON body
//! and answers it back, with the same actix-web build (features, workers) as
//! `switchboard serve`. `benches/http/run.sh` drives it and the real server with the
//! same wrk settings, so their ratio is what switchboard's routing costs over HTTP.
//!
//! `cargo run --release --example http_echo -- 127.0.0.1:18190`

use actix_web::{web, App, HttpResponse, HttpServer};

async fn echo(body: web::Json<serde_json::Value>) -> HttpResponse {
    HttpResponse::Ok().json(body.into_inner())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18190".to_string());
    eprintln!("http_echo listening on {listen}");
    HttpServer::new(|| {
        App::new()
            .route("/v1/conversations", web::post().to(echo))
            .route("/v1/conversations/{id}/messages", web::post().to(echo))
            .route("/v1/conversations/{id}/close", web::post().to(echo))
    })
    .bind(listen)?
    .run()
    .await
}
