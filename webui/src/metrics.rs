//! `/metrics`: the node's Prometheus registry, plus Raft and API gauges refreshed at scrape time.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::auth::ApiUser;
use crate::AppState;

#[derive(Clone)]
pub struct ApiMetrics {
    raft_term: IntGauge,
    raft_commit: IntGauge,
    raft_applied: IntGauge,
    raft_leader: IntGauge,
    raft_quorum: IntGauge,
    revision: IntGauge,
    changes: IntCounterVec,
    logins: IntCounterVec,
    cert_expiry: prometheus::IntGaugeVec,
    peer_lag: prometheus::IntGaugeVec,
    peer_contact: prometheus::GaugeVec,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ApiMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let changes = IntCounterVec::new(
            Opts::new(
                "meridian_api_changes_total",
                "Changes committed through the API and console, by object kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(changes.clone()))?;
        let logins = IntCounterVec::new(
            Opts::new("meridian_console_logins_total", "Console logins by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(logins.clone()))?;
        let cert_expiry = prometheus::IntGaugeVec::new(
            Opts::new(
                "meridian_tls_cert_expiry_seconds",
                "Seconds until each certificate in the credential store expires (negative once expired)",
            ),
            &["certificate"],
        )?;
        registry.register(Box::new(cert_expiry.clone()))?;
        let peer_lag = prometheus::IntGaugeVec::new(
            Opts::new(
                "meridian_raft_peer_lag_entries",
                "On the leader: log entries each other member lacks",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(peer_lag.clone()))?;
        let peer_contact = prometheus::GaugeVec::new(
            Opts::new(
                "meridian_raft_peer_last_contact_seconds",
                "On the leader: seconds since each other member last answered (absent if it never has)",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(peer_contact.clone()))?;
        Ok(ApiMetrics {
            peer_lag,
            peer_contact,
            cert_expiry,
            raft_term: gauge(registry, "meridian_raft_term", "Current Raft term")?,
            raft_commit: gauge(registry, "meridian_raft_commit_index", "Raft commit index")?,
            raft_applied: gauge(
                registry,
                "meridian_raft_last_applied_index",
                "Last log index applied to the state machine",
            )?,
            raft_leader: gauge(
                registry,
                "meridian_raft_is_leader",
                "1 when this node is the Raft leader",
            )?,
            raft_quorum: gauge(
                registry,
                "meridian_raft_has_quorum",
                "1 unless this node leads and no majority has answered it for 3 s (it then refuses writes)",
            )?,
            revision: gauge(
                registry,
                "meridian_config_revision",
                "Config revision applied on this node",
            )?,
            changes,
            logins,
        })
    }

    pub fn change(&self, kind: &str) {
        self.changes.with_label_values(&[kind]).inc();
    }

    pub fn login(&self, ok: bool) {
        self.logins
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }
}

pub async fn metrics(_: ApiUser, State(st): State<AppState>) -> Response {
    let raft = st.backend.raft();
    let m = &st.metrics;
    m.raft_term.set(to_i64(raft.term));
    m.raft_commit.set(to_i64(raft.commit_index));
    m.raft_applied.set(to_i64(raft.last_applied));
    m.raft_leader.set(i64::from(
        raft.leader == Some(raft.node_id) && raft.node_id != 0,
    ));
    m.raft_quorum.set(i64::from(!raft.lost_quorum));
    m.peer_lag.reset();
    m.peer_contact.reset();
    for p in &raft.peers {
        let peer = p.node_id.to_string();
        m.peer_lag.with_label_values(&[&peer]).set(to_i64(p.lag));
        if let Some(ms) = p.last_contact_ms {
            #[allow(clippy::cast_precision_loss)]
            m.peer_contact
                .with_label_values(&[&peer])
                .set(ms as f64 / 1000.0);
        }
    }
    m.revision.set(to_i64(st.backend.config().revision));
    let now = i64::try_from(model::unix_ms() / 1000).unwrap_or(i64::MAX);
    m.cert_expiry.reset();
    for r in st.backend.certificates().values() {
        if let (Some(info), None) = (&r.info, &r.revoked) {
            m.cert_expiry
                .with_label_values(&[r.name.as_str()])
                .set(info.not_after_unix - now);
        }
    }
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&st.registry.gather(), &mut buf) {
        tracing::error!(error = %e, "metrics encoding failed");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        buf,
    )
        .into_response()
}
