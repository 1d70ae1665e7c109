//! The HTTP endpoint: `/metrics` (Prometheus text), `/healthz`, `/status`,
//! the query API `/api/v1/query` (see [`crate::query_api`]) and, with a
//! token configured, the admin API `/admin/v1/*` (see [`crate::deploy`]).
//!
//! A deliberately small HTTP/1.1 server over tokio (one request per
//! connection; a body only for the admin POST): these are scrape, probe and
//! operator endpoints, not a web application.

use crate::deploy::Admin;
use crate::metrics::Metrics;
use crate::query_api::QueryApi;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// What `/status` reports besides the consumer status, and the APIs.
pub struct Info {
    /// This instance's name.
    pub instance: String,
    /// Process start, ms since the epoch.
    pub started_at_ms: i64,
    /// Whether this is the embedded demo.
    pub is_embedded: bool,
    /// The query API, when the store supports reads from a second handle.
    pub query: Option<Arc<QueryApi>>,
    /// The admin API, when a token is configured.
    pub admin: Option<Arc<Admin>>,
}

/// Largest request body accepted (a bundle of pipeline files).
const MAX_BODY: usize = 32 << 20;

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
    // Read the request head; only the admin POST has a body, read after it.
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
    let head_end = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n").map_or(filled, |i| i + 4);
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    };
    if path.starts_with("/admin/") {
        let Some(admin) = info.admin.clone() else {
            return respond(
                &mut stream,
                404,
                "application/json",
                "{\"error\":\"the admin API is off: set deploy.admin_token or STREAMD_ADMIN_TOKEN\"}\n",
            )
            .await;
        };
        if !admin.is_authorized(header("authorization").as_deref()) {
            return respond(&mut stream, 401, "application/json", "{\"error\":\"a valid bearer token is required\"}\n")
                .await;
        }
        let (code, body) = match (method, path) {
            ("GET", "/admin/v1/control") => {
                tokio::task::spawn_blocking(move || admin.control_state()).await.unwrap_or((500, String::new()))
            }
            ("POST", "/admin/v1/bundles") => {
                let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                if length > MAX_BODY {
                    return respond(&mut stream, 413, "application/json", "{\"error\":\"the body is too large\"}\n")
                        .await;
                }
                let mut body = buffer[head_end..filled].to_vec();
                body.resize(length, 0);
                let already = (filled - head_end).min(length);
                tokio::time::timeout(std::time::Duration::from_secs(30), stream.read_exact(&mut body[already..]))
                    .await??;
                tokio::task::spawn_blocking(move || admin.publish(&body)).await.unwrap_or((500, String::new()))
            }
            _ => (404, "{\"error\":\"try GET /admin/v1/control or POST /admin/v1/bundles\"}".to_string()),
        };
        return respond(&mut stream, code, "application/json", &(body + "\n")).await;
    }
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", "only GET is supported here\n").await;
    }
    match path {
        "/metrics" => respond(&mut stream, 200, "text/plain; version=0.0.4; charset=utf-8", &metrics.render()).await,
        "/healthz" => respond(&mut stream, 200, "text/plain", "ok\n").await,
        "/api/v1/query" | "/api/v1/episodes" => {
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
            let episodes = path == "/api/v1/episodes";
            let (code, body) =
                tokio::task::spawn_blocking(
                    move || {
                        if episodes {
                            api.answer_episodes(&query)
                        } else {
                            api.answer(&query)
                        }
                    },
                )
                .await
                .unwrap_or_else(|_| (500, "{\"error\":\"the query panicked\"}\n".to_string()));
            respond(&mut stream, code, "application/json", &body).await
        }
        "/status" => {
            let deployment = metrics.deployment();
            let body = serde_json::json!({
                "instance": info.instance,
                "started_at_ms": info.started_at_ms,
                "plan_version": deployment.plan_version,
                "plan_hash": deployment.plan_hash,
                "applied_at_ms": deployment.applied_at_ms,
                "last_rejection": deployment.last_rejection,
                "language_version": dsl::LANGUAGE_VERSION,
                "metrics": deployment.metrics,
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
        202 => "Accepted",
        401 => "Unauthorized",
        409 => "Conflict",
        413 => "Payload Too Large",
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
