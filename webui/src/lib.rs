//! The management plane: the web console (axum + askama), the REST API under `/api/v1`, and
//! `/metrics` for Prometheus.
//!
//! **Architecture Invariant:** `webui` never imports `cluster-state`, `lb` or `gslb-dns`. The
//! binary hands it a [`Backend`], the one small trait through which it reads the replicated state
//! and proposes changes, so handlers are tested without Raft or sockets.

mod api;
pub mod auth;
pub mod chart;
mod console;
pub mod diff;
mod error;
pub mod forms;
pub mod history;
mod live;
mod metrics;
mod openapi;
mod ops;
mod serve;
mod view;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::collections::BTreeMap;

use model::records::{AuditEntry, AuthState, CertificateRecord, RevisionRecord};
pub use model::{Change, ChangeError, Refusal};
use model::{Config, HealthView, Origin, Revisioned};
use serde::Serialize;

pub use error::ApiError;
pub use history::spawn_sampler;
pub use serve::{serve, serve_tls};

/// Largest request body the API accepts; bigger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Raft state shown on the console and exported as metrics.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RaftView {
    pub node_id: u64,
    pub state: String,
    pub term: u64,
    pub commit_index: u64,
    pub last_applied: u64,
    pub leader: Option<u64>,
    pub members: Vec<(u64, String)>,
    /// Leader only: ms since a majority last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    /// This node leads but has heard from no majority for seconds: writes are refused.
    pub lost_quorum: bool,
    /// The members that vote (the others are learners catching up).
    pub voters: Vec<u64>,
    /// On the leader: each other member's replication lag and last contact.
    pub peers: Vec<PeerView>,
}

/// The leader's view of one other member.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PeerView {
    pub node_id: u64,
    /// Log entries it lacks of the leader's log.
    pub lag: u64,
    /// Milliseconds since it last answered the leader; absent if it never has.
    pub last_contact_ms: Option<u64>,
}

/// One member of the cluster as `GET /api/v1/cluster` shows it: its own report (when it
/// answered) beside the leader's view of it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ClusterMemberView {
    pub node_id: u64,
    /// Where the other nodes reach its cluster port.
    pub address: String,
    /// `leader`, `voter` or `learner`.
    pub role: String,
    /// Whether it answered the node asked (within 1 s).
    pub reachable: bool,
    /// Why it did not answer.
    pub error: Option<String>,
    /// Its Raft state as it reports it: `Leader`, `Follower`, `Candidate`, `Learner`, ...
    pub state: Option<String>,
    pub term: Option<u64>,
    pub commit_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// Log entries it lacks of the leader's log (the leader's view).
    pub lag: Option<u64>,
    /// Milliseconds since it last answered the leader.
    pub last_contact_ms: Option<u64>,
    /// When its cluster certificate expires (Unix seconds); absent without cluster TLS.
    pub cert_not_after_unix: Option<i64>,
    /// The newest validation schema its release applies.
    pub schema_supported: Option<u32>,
}

/// The whole cluster, as gathered by one node from every member.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The node that answered this request.
    pub asked: u64,
    pub leader: Option<u64>,
    /// The validation schema in force; raised by the leader once every member supports more.
    pub schema: u32,
    pub members: Vec<ClusterMemberView>,
}

/// Whether this node staples an OCSP response for a certificate (from its OCSP directory).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OcspView {
    pub stapled: bool,
    /// Why not, when not; empty when stapled.
    pub detail: String,
    /// When the stapled response must be replaced (Unix seconds).
    pub next_update_unix: Option<i64>,
}

/// What `meridian dns explain` asks: a name, a type, and who asks.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct DnsExplainQuery {
    /// The name asked for, e.g. `geo.demo.meridian.test`.
    pub name: String,
    /// The record type (default A).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub qtype: Option<String>,
    /// The resolver's address (the client when there is no ECS).
    pub client: Option<String>,
    /// An EDNS Client Subnet, e.g. `198.51.100.0/24`.
    pub ecs: Option<String>,
}

/// How this node answers a query, and why.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DnsExplanation {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    /// The subnet steering used (`address/prefix`), if any.
    pub client: Option<String>,
    pub rcode: String,
    /// The answer section in presentation form.
    pub answers: Vec<String>,
    /// The EDNS Client Subnet scope of the answer: 0 when it is the same for every client.
    pub ecs_scope: u8,
    /// The GSLB decision in words: health, steering, policy.
    pub steps: Vec<String>,
    /// The sites of the GSLB record (empty for a static name), with each node's view.
    pub sites: Vec<ExplainedSite>,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ExplainedSite {
    pub name: String,
    pub address: String,
    /// The admin state: enabled, draining, disabled or force_up.
    pub state: String,
    pub region: Option<String>,
    /// The health the cluster agrees on: up, down, or unknown (not probed yet), or unchecked.
    pub health: String,
    /// Each live node's view: up, down or unknown.
    pub votes: Vec<SiteVote>,
    /// Addresses of the site handed out by this node since it started.
    pub answers: u64,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SiteVote {
    pub node: u64,
    pub up: Option<bool>,
}

/// This node's response cache: the tiers, each caching route's results, the most-hit keys.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CacheView {
    pub memory_entries: u64,
    pub memory_bytes: u64,
    pub memory_capacity_bytes: u64,
    pub disk_entries: u64,
    pub disk_bytes: u64,
    /// 0 when the node has no disk tier.
    pub disk_capacity_bytes: u64,
    pub disk_dir: Option<String>,
    pub routes: Vec<CacheRouteView>,
    pub top_keys: Vec<CacheKeyView>,
}

/// One caching route's lookups since the node started.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CacheRouteView {
    pub route: String,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub revalidated: u64,
    pub bypass: u64,
    /// Misses that waited for another request to the same key.
    pub coalesced: u64,
    /// Answered from the cache (hit, stale, revalidated) over all lookups; 0 without any.
    pub hit_ratio: f64,
}

/// A stored response.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CacheKeyView {
    /// `host/path?query` (what a purge by key names).
    pub key: String,
    /// The content coding of this variant.
    pub encoding: String,
    pub hits: u64,
    pub bytes: u64,
    pub age_seconds: u64,
    /// Seconds until stale (0 once stale).
    pub ttl_seconds: u64,
}

/// One proxy listener as the data plane sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// Users and tokens as replicated: password and token hashes only.
    fn auth(&self) -> Arc<AuthState>;
    /// The last config revisions, oldest first.
    fn history(&self) -> Arc<Vec<Arc<RevisionRecord>>>;
    /// The replicated audit log, oldest first.
    fn audit(&self) -> Arc<Vec<Arc<AuditEntry>>>;
    /// This node's kernel TLS: the suites it takes, or `None` when TLS stays in userspace.
    fn kernel_tls(&self) -> Option<String> {
        None
    }
    /// The credential store: certificates with sealed keys.
    fn certificates(&self) -> Arc<BTreeMap<String, Arc<CertificateRecord>>>;
    /// OCSP stapling on this node, by certificate name; certificates without a response file
    /// are absent.
    fn ocsp(&self) -> BTreeMap<String, OcspView> {
        BTreeMap::new()
    }
    /// The cluster's session-ticket keys, newest first (sealed; shown by id and age only).
    fn ticket_keys(&self) -> Arc<Vec<Arc<model::records::TicketKeyRecord>>> {
        Arc::default()
    }
    /// The TSIG keys of zone transfers (sealed; shown by name and algorithm only).
    fn tsig_keys(&self) -> Arc<BTreeMap<String, Arc<model::records::TsigKeyRecord>>> {
        Arc::default()
    }
    /// SHA-256 of the cluster CA, when the cluster has one (join tokens name it).
    fn cluster_ca_fingerprint(&self) -> Option<String> {
        None
    }
    /// Join tokens issued, by id (secrets hashed).
    fn join_tokens(&self) -> Arc<BTreeMap<String, model::records::JoinTokenRecord>> {
        Arc::default()
    }
    /// This node's response cache.
    fn cache(&self) -> CacheView {
        CacheView::default()
    }
    /// How many responses stored on this node `selector` matches.
    fn cache_matches(&self, _selector: &model::records::PurgeSelector) -> usize {
        0
    }
    /// How this node answers a DNS query, and why (`meridian dns explain`). `Err` says what
    /// in the query is wrong.
    fn dns_explain(&self, _query: &DnsExplainQuery) -> Result<DnsExplanation, String> {
        Err("DNS explain is not available on this node".into())
    }
    /// Parses a zone file (RFC 1035 master format) as the zone `origin`; `Err` lists every
    /// problem.
    fn import_zone(&self, _origin: &str, _text: &str) -> Result<model::ZoneSpec, Vec<String>> {
        Err(vec!["zone import is not available on this node".into()])
    }
    /// Each live node's view of a GSLB site's health (by `model::site_health_key`), this
    /// node first.
    fn site_votes(&self, _key: &str) -> Vec<SiteVote> {
        Vec::new()
    }
    /// Addresses of a GSLB site handed out by this node since it started.
    fn site_answers(&self, _record: &str, _site: &str) -> u64 {
        0
    }
    /// The key that seals private keys in the credential store, derived from the cluster
    /// secret; never replicated.
    fn cluster_key(&self) -> Arc<credentials::ClusterKey>;
    /// Proposes a change on behalf of `origin`; answers the config revision after it.
    fn propose(&self, change: Change, origin: Origin) -> BoxFuture<'_, Result<u64, ChangeError>>;
    fn raft(&self) -> RaftView;
    /// Waits until this node has applied everything committed before the call (a read index
    /// confirmed by the leader's quorum), so that an API read that follows is linearizable.
    fn read_barrier(&self) -> BoxFuture<'_, Result<(), ChangeError>> {
        Box::pin(async { Ok(()) })
    }
    /// Every member's state, asked of each over the cluster port. Without a cluster: this
    /// node's own view.
    fn cluster(&self) -> BoxFuture<'_, ClusterView> {
        let raft = self.raft();
        Box::pin(async move {
            ClusterView {
                schema: model::SCHEMA_SUPPORTED,
                asked: raft.node_id,
                leader: raft.leader,
                members: raft
                    .members
                    .iter()
                    .map(|(id, address)| ClusterMemberView {
                        node_id: *id,
                        address: address.clone(),
                        role: if raft.leader == Some(*id) {
                            "leader".into()
                        } else {
                            "voter".into()
                        },
                        reachable: *id == raft.node_id,
                        ..ClusterMemberView::default()
                    })
                    .collect(),
            }
        })
    }
    /// Takes a node out of the cluster (demoted, then removed); refused with the reason when
    /// the cluster would lose its quorum.
    fn remove_member(&self, node_id: u64) -> BoxFuture<'_, Result<(), ChangeError>> {
        Box::pin(async move {
            Err(ChangeError::not_allowed(format!(
                "node {node_id} cannot be removed: this node runs no cluster"
            )))
        })
    }
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
    pub token_usage: Arc<auth::TokenUsage>,
    pub registry: prometheus::Registry,
    /// The last hour of traffic, sampled from `registry` by [`spawn_sampler`].
    pub history: Arc<history::History>,
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
            token_usage: Arc::default(),
            registry,
            history: Arc::default(),
            secure_cookies: false,
            metrics,
        })
    }
}

/// The whole management router: console, API and metrics.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(console::routes())
        .merge(live::routes())
        .nest("/api/v1", api::routes())
        .route("/metrics", axum::routing::get(metrics::metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers that keep the console out of frames, stop MIME sniffing, keep pages with secrets out
/// of caches, and allow only the console's own stylesheet, script (`/static/live.js`) and live
/// feed: no inline style or script at all.
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
        // Same-origin requests keep their Origin header (the console's forms check it); nothing
        // leaks to other sites.
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}
