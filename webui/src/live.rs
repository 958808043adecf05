//! The console's live feed: `GET /console/live?keys=a,b` streams Server-Sent Events of the
//! requested [`crate::history`] series to a signed-in user, and `GET /static/live.js` is the
//! small same-origin script that redraws the charts from it.
//!
//! Events: one `history` event on connect, `{"t":unix_ms,"series":{"key":[[unix_ms,value],..]}}`,
//! then a `sample` event after each sample, `{"t":unix_ms,"points":{"key":value,..}}`, carrying
//! only the keys that got a point in that sample.
//!
//! A feed is not user activity: it checks the session once, when it connects, and never
//! refreshes it. So that an open tab cannot outlive its session, a feed ends after
//! [`SESSION_IDLE`]; the browser reconnects, and the session check answers 401 unless the user
//! did something meanwhile.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::auth::{ConsoleUser, SESSION_IDLE};
use crate::history::{History, Point};
use crate::AppState;

/// Most series one feed may ask for.
pub const MAX_KEYS: usize = 64;
/// Longest key accepted; real keys are a few dozen bytes.
const MAX_KEY_LEN: usize = 256;

const LIVE_JS: &str = include_str!("../static/live.js");

/// `/console/live` and `/static/live.js`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/live", get(live))
        .route("/static/live.js", get(script))
}

#[derive(Deserialize)]
struct LiveQuery {
    #[serde(default)]
    keys: String,
}

async fn live(
    _user: ConsoleUser,
    State(state): State<AppState>,
    Query(query): Query<LiveQuery>,
) -> Result<impl IntoResponse, (StatusCode, &'static str)> {
    let keys = parse_keys(&query.keys)?;
    let feed = Feed::new(Arc::clone(&state.history), keys, SESSION_IDLE);
    Ok(Sse::new(feed.into_stream()).keep_alive(KeepAlive::default()))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        LIVE_JS,
    )
}

/// The comma-separated keys, without blanks and duplicates.
fn parse_keys(raw: &str) -> Result<Vec<String>, (StatusCode, &'static str)> {
    let mut keys: Vec<String> = Vec::new();
    for k in raw.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        if k.len() > MAX_KEY_LEN {
            return Err((StatusCode::BAD_REQUEST, "series key too long"));
        }
        if !keys.iter().any(|have| have == k) {
            keys.push(k.to_string());
        }
        if keys.len() > MAX_KEYS {
            return Err((StatusCode::BAD_REQUEST, "too many series keys (at most 64)"));
        }
    }
    if keys.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "no series keys"));
    }
    Ok(keys)
}

#[derive(Serialize)]
struct HistoryEvent<'a> {
    t: u64,
    series: BTreeMap<&'a str, Vec<Point>>,
}

#[derive(Serialize)]
struct SampleEvent {
    t: u64,
    points: BTreeMap<String, f64>,
}

/// One subscriber's state between events.
struct Feed {
    history: Arc<History>,
    sampled: watch::Receiver<u64>,
    keys: Vec<String>,
    started: bool,
    ends: tokio::time::Instant,
}

impl Feed {
    fn new(history: Arc<History>, keys: Vec<String>, lifetime: Duration) -> Self {
        Feed {
            sampled: history.subscribe(),
            history,
            keys,
            started: false,
            ends: tokio::time::Instant::now() + lifetime,
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures_util::stream::unfold(self, |mut feed| async move {
            let event = feed.next_event().await?;
            Some((Ok(event), feed))
        })
    }

    /// The next event; `None` ends the stream when its lifetime is over or the node stopped
    /// sampling.
    async fn next_event(&mut self) -> Option<Event> {
        if !self.started {
            self.started = true;
            // Marked seen before reading: a sample landing in between is sent again, and the
            // script ignores points it already has.
            let t = *self.sampled.borrow_and_update();
            let series = self
                .keys
                .iter()
                .map(|k| (k.as_str(), self.history.series(k)))
                .collect();
            return Some(json_event("history", &HistoryEvent { t, series }));
        }
        tokio::time::timeout_at(self.ends, self.sampled.changed())
            .await
            .ok()?
            .ok()?;
        let t = *self.sampled.borrow_and_update();
        let points = self
            .history
            .latest(&self.keys)
            .into_iter()
            .filter(|(_, at, _)| *at == t)
            .map(|(k, _, v)| (k, v))
            .collect();
        Some(json_event("sample", &SampleEvent { t, points }))
    }
}

fn json_event<T: Serialize>(name: &str, data: &T) -> Event {
    let event = Event::default().event(name);
    match serde_json::to_string(data) {
        Ok(json) => event.data(json),
        // Maps of strings and numbers always serialize; an empty object keeps the feed going.
        Err(_) => event.data("{}"),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use model::records::{AuditEntry, AuthState, RevisionRecord, UserRecord};
    use model::{Config, HealthView, Origin, Revisioned};
    use tower::ServiceExt;

    use std::time::Instant;

    use futures_util::StreamExt;

    use super::*;
    use crate::{Backend, BoxFuture, Change, ChangeError, ListenerView, RaftView};

    /// A cluster with an empty config and one user, `admin`.
    struct Empty {
        config: Arc<Revisioned<Config>>,
        auth: Arc<AuthState>,
    }

    struct NoHealth;

    impl HealthView for NoHealth {
        fn is_healthy(&self, _: &str) -> Option<bool> {
            None
        }
    }

    impl Backend for Empty {
        fn config(&self) -> Arc<Revisioned<Config>> {
            self.config.clone()
        }
        fn auth(&self) -> Arc<AuthState> {
            self.auth.clone()
        }
        fn history(&self) -> Arc<Vec<Arc<RevisionRecord>>> {
            Arc::default()
        }
        fn certificates(
            &self,
        ) -> Arc<std::collections::BTreeMap<String, Arc<model::records::CertificateRecord>>>
        {
            Arc::default()
        }
        fn cluster_key(&self) -> Arc<credentials::ClusterKey> {
            Arc::new(credentials::ClusterKey::derive("test"))
        }
        fn audit(&self) -> Arc<Vec<Arc<AuditEntry>>> {
            Arc::default()
        }
        fn propose(&self, _: Change, _: Origin) -> BoxFuture<'_, Result<u64, ChangeError>> {
            Box::pin(async { Err(ChangeError::Unavailable("test".into())) })
        }
        fn raft(&self) -> RaftView {
            RaftView::default()
        }
        fn health(&self) -> Arc<dyn HealthView> {
            Arc::new(NoHealth)
        }
        fn listeners(&self) -> Vec<ListenerView> {
            Vec::new()
        }
        fn alarms(&self) -> Vec<String> {
            Vec::new()
        }
    }

    fn state() -> AppState {
        let spec = model::parse::from_toml("api_version = \"meridian/v1\"\n").expect("spec");
        let config = Arc::new(Revisioned {
            revision: 1,
            value: model::validate(&spec).expect("valid"),
        });
        let mut auth = AuthState::default();
        auth.users.insert(
            "admin".into(),
            UserRecord {
                password_hash: String::new(),
                role: model::Role::default(),
                disabled: false,
            },
        );
        let backend = Empty {
            config,
            auth: Arc::new(auth),
        };
        AppState::new(Arc::new(backend), prometheus::Registry::new()).expect("state")
    }

    fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
        let mut req = Request::get(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, format!("meridian_session={c}"));
        }
        req.body(Body::empty()).expect("request")
    }

    /// The body's next frame as text: the feed never ends, so collecting it would hang.
    async fn next_frame(body: &mut Body) -> String {
        let frame = body.frame().await.expect("a frame").expect("frame ok");
        let data = frame.into_data().expect("data frame");
        String::from_utf8_lossy(&data).into_owned()
    }

    #[tokio::test]
    async fn the_feed_requires_a_console_session() {
        let resp = crate::app(state())
            .oneshot(get("/console/live?keys=dns/all/qps", None))
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let resp = crate::app(state())
            .oneshot(get("/console/live?keys=dns/all/qps", Some("forged")))
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_feed_starts_with_the_history_of_the_keys_asked_for() {
        let state = state();
        let cookie = state.sessions.create("admin", Instant::now());
        let registry = prometheus::Registry::new();
        state.history.sample(&registry.gather(), 1_000);
        state.history.sample(&registry.gather(), 6_000);
        let resp = crate::app(state.clone())
            .oneshot(get("/console/live?keys=dns/all/qps,other", Some(&cookie)))
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"text/event-stream"[..])
        );
        let mut body = resp.into_body();
        let first = next_frame(&mut body).await;
        assert!(first.starts_with("event: history\n"), "{first}");
        assert!(
            first.contains(r#"{"t":6000,"series":{"dns/all/qps":[[6000,0.0]],"other":[]}}"#),
            "{first}"
        );

        state.history.sample(&registry.gather(), 11_000);
        let next = next_frame(&mut body).await;
        assert!(next.starts_with("event: sample\n"), "{next}");
        assert!(
            next.contains(r#"{"t":11000,"points":{"dns/all/qps":0.0}}"#),
            "{next}"
        );
    }

    #[tokio::test]
    async fn a_feed_ends_by_itself_after_its_lifetime() {
        let history = Arc::new(History::new());
        let feed = Feed::new(
            Arc::clone(&history),
            vec!["dns/all/qps".into()],
            Duration::from_millis(50),
        );
        let mut stream = Box::pin(feed.into_stream());
        assert!(stream.next().await.is_some(), "the history event");
        history.sample(&[], 1_000);
        assert!(stream.next().await.is_some(), "a sample event");
        let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        assert!(matches!(end, Ok(None)), "the feed ends by itself");
    }

    #[tokio::test]
    async fn too_many_or_no_keys_are_refused() {
        let state = state();
        let cookie = state.sessions.create("admin", Instant::now());
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| format!("k{i}")).collect();
        for uri in [
            format!("/console/live?keys={}", many.join(",")),
            "/console/live?keys=,,".to_string(),
            "/console/live".to_string(),
        ] {
            let resp = crate::app(state.clone())
                .oneshot(get(&uri, Some(&cookie)))
                .await
                .expect("response");
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        }
        let exactly: Vec<String> = (0..MAX_KEYS).map(|i| format!("k{i}")).collect();
        assert_eq!(
            parse_keys(&exactly.join(",")).map(|k| k.len()),
            Ok(MAX_KEYS)
        );
        assert_eq!(parse_keys("a,b,a").map(|k| k.len()), Ok(2));
    }

    #[tokio::test]
    async fn the_script_is_served_as_javascript() {
        let resp = crate::app(state())
            .oneshot(get("/static/live.js", None))
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"text/javascript; charset=utf-8"[..])
        );
        let csp = resp
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("EventSource"));
    }
}
