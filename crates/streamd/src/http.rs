//! The HTTP endpoint: `/metrics` (Prometheus text), `/healthz`, `/status`,
//! and the query API `/api/v1/query` (see [`crate::query_api`]).
//!
//! A deliberately small HTTP/1.1 server over tokio (GET only, one request per
//! connection): these are scrape and probe endpoints, not a web application.

use crate::metrics::Metrics;
use crate::query_api::QueryApi;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// What `/status` reports besides the consumer status.
pub struct Info {
    /// Hash of the running plan.
    pub plan_hash: String,
    /// Language version.
    pub language_version: u64,
    /// Metric names.
    pub metrics: Vec<String>,
    /// Whether this is the embedded demo.
    pub is_embedded: bool,
    /// The query API, when the store supports reads from a second handle.
    pub query: Option<Arc<QueryApi>>,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    info: Arc<Info>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (metrics, info) = (metrics.clone(), info.clone());
                    tokio::spawn(async move {
                        if let Err(error) = handle(stream, &metrics, &info).await {
                            debug!(error = %error, "HTTP connection failed.");
                        }
                    });
                }
                Err(error) => warn!(error = %error, "Cannot accept an HTTP connection."),
            },
        }
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics, info: &Info) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 8192];
    let mut filled = 0;
    // Read the request head (bodies are not used by any endpoint).
    while !buffer[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
        if filled == buffer.len() {
            return respond(&mut stream, 431, "text/plain", "request head too large\n").await;
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer[filled..])).await??;
        if n == 0 {
            return Ok(());
        }
        filled += n;
    }
    let head = String::from_utf8_lossy(&buffer[..filled]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", "only GET is supported\n").await;
    }
    match path {
        "/metrics" => respond(&mut stream, 200, "text/plain; version=0.0.4; charset=utf-8", &metrics.render()).await,
        "/healthz" => respond(&mut stream, 200, "text/plain", "ok\n").await,
        "/api/v1/query" => {
            let Some(api) = info.query.clone() else {
                return respond(
                    &mut stream,
                    404,
                    "application/json",
                    "{\"error\":\"the query API is not available for this store\"}\n",
                )
                .await;
            };
            let query = target.split_once('?').map_or("", |(_, q)| q).to_string();
            let (code, body) = tokio::task::spawn_blocking(move || api.answer(&query))
                .await
                .unwrap_or_else(|_| (500, "{\"error\":\"the query panicked\"}\n".to_string()));
            respond(&mut stream, code, "application/json", &body).await
        }
        "/status" => {
            let body = serde_json::json!({
                "plan_hash": info.plan_hash,
                "language_version": info.language_version,
                "metrics": info.metrics,
                "embedded": info.is_embedded,
                "consumer": metrics.status(),
            });
            respond(
                &mut stream,
                200,
                "application/json",
                &(serde_json::to_string_pretty(&body).unwrap_or_default() + "\n"),
            )
            .await
        }
        _ => {
            respond(&mut stream, 404, "text/plain", "not found; try /metrics, /healthz, /status or /api/v1/query\n")
                .await
        }
    }
}

async fn respond(stream: &mut TcpStream, code: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
