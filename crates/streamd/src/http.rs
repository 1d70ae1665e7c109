//! The HTTP endpoint: `/metrics` (Prometheus text), `/healthz`, `/status`,
//! the query API `/api/v1/query` (see [`crate::query_api`]), its OpenAPI
//! document `/api/v1/openapi.json` and, with a token configured, the admin
//! API `/admin/v1/*` (see [`crate::deploy`]).
//!
//! HTTP/1.1 is hyper's, routing is axum's. The limits that keep the probes
//! answering whatever clients do: a connection must send its request head
//! within [`HEADER_READ_TIMEOUT`] (idle and slow clients are closed), heads
//! over [`MAX_HEAD`] bytes are refused with 431, bodies over [`MAX_BODY`]
//! with 413, a request taking longer than [`REQUEST_TIMEOUT`] gets 408, the
//! query and admin APIs serve at most [`API_CONCURRENCY`] requests at once
//! (503 `busy` beyond), and at most [`MAX_CONNECTIONS`] connections are
//! open (newer ones are closed at once). Every error is JSON
//! `{"code": …, "error": …}` with a stable `code` (see `openapi.json`).

use crate::deploy::Admin;
use crate::metrics::Metrics;
use crate::query_api::QueryApi;
use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
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

/// The OpenAPI document of every endpoint, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Largest request body accepted (a bundle of pipeline files).
pub const MAX_BODY: usize = 32 << 20;
/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 << 10;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;
/// Time a connection has to send a whole request head, the first or the next.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a request has to be read and answered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Query and admin requests served at once.
pub const API_CONCURRENCY: usize = 32;
/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 8192;

/// An error answer: the HTTP status, a stable machine-readable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable code clients can match on (listed in `openapi.json`).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code, "error": self.message })
    }

    fn busy() -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many API requests at once; retry")
    }

    /// 400 `bad_query`: the query's parameters are wrong.
    pub fn bad_query(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message)
    }

    /// 500 `internal`: a bug.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 503 `unavailable`: the store or the control topic is busy or down; retry.
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    info: Arc<Info>,
}

/// Every endpoint, with its limits. New endpoints are one `.route` here and
/// one entry in `openapi.json`.
pub fn router(metrics: Arc<Metrics>, info: Arc<Info>) -> Router {
    let state = AppState { metrics, info };
    let admin = Router::new()
        .route("/admin/v1/control", get(admin_control))
        .route("/admin/v1/bundles", post(admin_publish))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let api =
        limited(Router::new().route("/api/v1/query", get(query)).route("/api/v1/episodes", get(episodes)).merge(admin));
    Router::new()
        .route("/metrics", get(prometheus))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/api/v1/openapi.json", get(openapi))
        .merge(api)
        .fallback(not_found)
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(middleware::map_response(json_errors))
}

/// `routes` sharing one concurrency limit, shedding what is over it with 503
/// `busy`: the expensive endpoints (store reads, Kafka round trips), so that
/// the probes never wait on them.
fn limited<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async { ApiError::busy() }))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(API_CONCURRENCY)),
    )
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    info: Arc<Info>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let router = router(metrics, info);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        debug!(%peer, "Too many HTTP connections: closed a new one.");
                        continue;
                    };
                    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            debug!(error = %error, "HTTP connection failed.");
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    // Out of file descriptors, typically: give closing connections a moment.
                    warn!(error = %error, "Cannot accept an HTTP connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn prometheus(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Rendering thousands of series takes a while: off the async threads, so probes never wait on it.
    let metrics = state.metrics.clone();
    let text = blocking(move || Ok(metrics.render())).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let (metrics, info) = (&state.metrics, &state.info);
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
    let text = serde_json::to_string_pretty(&body).unwrap_or_default() + "\n";
    ([(header::CONTENT_TYPE, "application/json")], text)
}

/// The query API, or 404 when the store offers none.
fn query_api(state: &AppState) -> Result<Arc<QueryApi>, ApiError> {
    state.info.query.clone().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "query_unavailable", "the query API is not available for this store")
    })
}

async fn query(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<serde_json::Value>, ApiError> {
    let api = query_api(&state)?;
    let query = query.unwrap_or_default();
    blocking(move || api.answer(&query)).await.map(Json)
}

async fn episodes(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let api = query_api(&state)?;
    let query = query.unwrap_or_default();
    blocking(move || api.answer_episodes(&query)).await.map(Json)
}

/// The admin API, or 404 when no token is configured.
fn admin(state: &AppState) -> Result<Arc<Admin>, ApiError> {
    state.info.admin.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "admin_off",
            "the admin API is off: set deploy.admin_token or STREAMD_ADMIN_TOKEN (and deploy.control_topic)",
        )
    })
}

/// Lets admin requests through only with the bearer token, before their body is read.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let admin = match admin(&state) {
        Ok(admin) => admin,
        Err(error) => return error.into_response(),
    };
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !admin.is_authorized(authorization) {
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required").into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

async fn admin_control(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let admin = admin(&state)?;
    blocking(move || admin.control_state()).await.map(Json)
}

async fn admin_publish(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    let version = blocking(move || admin.publish(&body)).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "version": version }))).into_response())
}

/// Runs store or Kafka work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| Err(ApiError::internal("the request handler panicked")))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; try /metrics, /healthz, /status, /api/v1/query, /api/v1/episodes or /api/v1/openapi.json",
    )
}

/// Gives the errors of the framework and of the limits (405, 408, 413, a
/// malformed body…) the same JSON shape and stable codes as ours.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes() == b"application/json");
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this endpoint does not take this method"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("bad_request", "unsupported content type"),
        s if s.is_client_error() => ("bad_request", "the request is malformed"),
        _ => ("internal", "internal error"),
    };
    let (mut parts, _) = response.into_parts();
    let body = ApiError::new(status, code, message).body().to_string();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;
    use tower::ServiceExt;

    fn app(admin: Option<Arc<Admin>>) -> Router {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let info = Arc::new(Info { instance: "test".into(), started_at_ms: 0, is_embedded: false, query: None, admin });
        router(metrics, info)
    }

    /// Status, content type and body of one request.
    async fn call(app: &Router, method: Method, uri: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("infallible");
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|t| t.to_str().ok()).unwrap_or("").to_string();
        let body = axum::body::to_bytes(response.into_body(), MAX_BODY).await.expect("body");
        (status, content_type, String::from_utf8_lossy(&body).into_owned())
    }

    fn code(body: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        value["code"].as_str().unwrap_or_else(|| panic!("no code: {body}")).to_string()
    }

    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let app = app(None);
        let document: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let paths = document["paths"].as_object().expect("paths");
        for path in [
            "/metrics",
            "/healthz",
            "/status",
            "/api/v1/query",
            "/api/v1/episodes",
            "/admin/v1/control",
            "/admin/v1/bundles",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
        for (path, operations) in paths {
            for method in operations.as_object().expect("operations").keys() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                let (status, _, body) = call(&app, method.clone(), path, &[]).await;
                assert!(
                    !(status == 404 && code(&body) == "not_found") && status != 405,
                    "{method} {path} is documented but not routed: {status} {body}"
                );
            }
        }
    }

    #[tokio::test]
    async fn errors_are_json_with_stable_codes() {
        let app = app(None);
        let (status, content_type, body) = call(&app, Method::GET, "/nowhere", &[]).await;
        assert_eq!((status, content_type.as_str(), code(&body).as_str()), (404, "application/json", "not_found"));
        let (status, _, body) = call(&app, Method::POST, "/healthz", &[]).await;
        assert_eq!((status, code(&body).as_str()), (405, "method_not_allowed"));
        let (status, _, body) = call(&app, Method::GET, "/admin/v1/control", &[]).await;
        assert_eq!((status, code(&body).as_str()), (404, "admin_off"));
        let (status, _, body) = call(&app, Method::GET, "/api/v1/query?metric=n", &[]).await;
        assert_eq!((status, code(&body).as_str()), (404, "query_unavailable"));
        let too_long = (MAX_BODY + 1).to_string();
        let (status, _, body) =
            call(&app, Method::POST, "/admin/v1/bundles", &[("content-length", too_long.as_str())]).await;
        assert_eq!((status, code(&body).as_str()), (413, "body_too_large"));
    }

    #[tokio::test]
    async fn the_admin_api_needs_its_bearer_token() {
        let control = kafka::control::ControlTopic {
            brokers: "127.0.0.1:9".into(),
            topic: "streamd.control".into(),
            librdkafka: Vec::new(),
        };
        let app = app(Some(Arc::new(Admin { token: "s3cret".into(), control })));
        for authorization in [None, Some("Bearer wrong"), Some("s3cret"), Some("Basic s3cret")] {
            let headers: Vec<(&str, &str)> = authorization.map(|a| ("authorization", a)).into_iter().collect();
            for (method, path) in [(Method::GET, "/admin/v1/control"), (Method::POST, "/admin/v1/bundles")] {
                let (status, _, body) = call(&app, method, path, &headers).await;
                assert_eq!((status, code(&body).as_str()), (401, "unauthorized"), "{authorization:?} {path}");
            }
        }
        // With the token, a body that is no bundle is refused before Kafka is asked.
        let (status, _, body) =
            call(&app, Method::POST, "/admin/v1/bundles", &[("authorization", "Bearer s3cret")]).await;
        assert_eq!((status, code(&body).as_str()), (400, "bad_bundle"), "{body}");
    }

    #[tokio::test]
    async fn api_requests_over_the_limit_are_shed_with_503_busy() {
        let (gate, inside) =
            (Arc::new(tokio::sync::Semaphore::new(0)), Arc::new(std::sync::atomic::AtomicUsize::new(0)));
        let (g, n) = (gate.clone(), inside.clone());
        let app = limited(Router::new().route(
            "/slow",
            get(move || {
                let (g, n) = (g.clone(), n.clone());
                async move {
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = g.acquire().await;
                    "done"
                }
            }),
        ));
        let held: Vec<_> = (0..API_CONCURRENCY)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { call(&app, Method::GET, "/slow", &[]).await })
            })
            .collect();
        while inside.load(std::sync::atomic::Ordering::SeqCst) < API_CONCURRENCY {
            tokio::task::yield_now().await;
        }
        let (status, _, body) = call(&app, Method::GET, "/slow", &[]).await;
        assert_eq!((status, code(&body).as_str()), (503, "busy"));
        gate.add_permits(API_CONCURRENCY);
        for request in held {
            assert_eq!(request.await.expect("request").0, 200);
        }
        assert_eq!(call(&app, Method::GET, "/slow", &[]).await.0, 200, "the limit is free again");
    }

    #[tokio::test]
    async fn probes_and_metrics_answer() {
        let app = app(None);
        assert_eq!(
            call(&app, Method::GET, "/healthz", &[]).await,
            (200, "text/plain; charset=utf-8".into(), "ok\n".into())
        );
        let (status, content_type, body) = call(&app, Method::GET, "/metrics", &[]).await;
        assert_eq!((status, content_type.as_str()), (200, "text/plain; version=0.0.4; charset=utf-8"));
        assert!(body.contains("# TYPE"), "{body}");
        let (status, _, body) = call(&app, Method::GET, "/status", &[]).await;
        let status_json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!((status, status_json["instance"].as_str()), (200, Some("test")));
        let (status, _, body) = call(&app, Method::GET, "/api/v1/openapi.json", &[]).await;
        assert_eq!((status, body.as_str()), (200, OPENAPI));
    }
}
