//! The management plane: the web console (axum + askama), the REST API under `/api/v1`, and
//! `/metrics` for Prometheus.
//!
//! **Architecture Invariant:** `webui` never imports `cluster-state`, `lb` or `gslb-dns`. The
//! binary hands it a [`Backend`], the one small trait through which it reads the replicated state
//! and proposes changes, so handlers are tested without Raft or sockets.

mod api;
pub mod auth;
mod console;
mod error;
mod metrics;
mod serve;
mod view;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
pub use model::Change;
use model::{Config, HealthView, ObjectKind, Revisioned, ValidationErrors};
use serde::Serialize;

pub use error::ApiError;
pub use serve::{serve, serve_tls};

/// Largest request body the API accepts; bigger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("stale revision: expected {expected}, current is {current}")]
    Stale { expected: u64, current: u64 },
    #[error("invalid configuration")]
    Invalid(ValidationErrors),
    #[error("{kind}/{name} does not exist")]
    NotFound { kind: ObjectKind, name: String },
    #[error("this node is not the leader")]
    NotLeader { leader: Option<String> },
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}

/// Users and API tokens as replicated; password hashes and token hashes only.
#[derive(Debug, Clone, Default)]
pub struct AuthView {
    /// user name -> argon2 PHC string
    pub users: BTreeMap<String, String>,
    /// hex sha256 of the token -> (token name, user)
    pub tokens: BTreeMap<String, (String, String)>,
}

/// Raft state shown on the dashboard and exported as metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RaftView {
    pub node_id: u64,
    pub state: String,
    pub term: u64,
    pub commit_index: u64,
    pub last_applied: u64,
    pub leader: Option<u64>,
    pub members: Vec<(u64, String)>,
}

/// One proxy listener as the data plane sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerView {
    pub name: String,
    pub bind: String,
    /// What the listener speaks: `HTTP/1.1 + h2c`, or `TCP → pool p`.
    pub protocol: String,
    /// `listening` or the bind error.
    pub state: String,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the management plane needs from the rest of the node.
pub trait Backend: Send + Sync + 'static {
    fn config(&self) -> Arc<Revisioned<Config>>;
    fn auth(&self) -> AuthView;
    fn propose(&self, change: Change) -> BoxFuture<'_, Result<u64, ChangeError>>;
    fn raft(&self) -> RaftView;
    fn health(&self) -> Arc<dyn HealthView>;
    fn listeners(&self) -> Vec<ListenerView>;
    /// Conditions an operator must act on (a revision a plane could not apply, a listener that
    /// cannot bind, a node out of service); empty when all is well.
    fn alarms(&self) -> Vec<String>;
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    pub sessions: Arc<auth::Sessions>,
    pub passwords: Arc<auth::PasswordGate>,
    pub registry: prometheus::Registry,
    /// Set when the console is served over HTTPS: session cookies get `Secure`.
    pub secure_cookies: bool,
    metrics: metrics::ApiMetrics,
}

impl AppState {
    pub fn new(
        backend: Arc<dyn Backend>,
        registry: prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        let metrics = metrics::ApiMetrics::new(&registry)?;
        Ok(AppState {
            backend,
            sessions: Arc::new(auth::Sessions::default()),
            passwords: Arc::new(auth::PasswordGate::default()),
            registry,
            secure_cookies: false,
            metrics,
        })
    }
}

/// The whole management router: console, API and metrics.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(console::routes())
        .nest("/api/v1", api::routes())
        .route("/metrics", axum::routing::get(metrics::metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers that keep the console out of frames, stop MIME sniffing, keep pages with secrets out
/// of caches, and allow no script at all.
async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}
