//! The management router driven with `oneshot`, no socket, over a scripted backend: how the
//! console and API answer what the cluster says.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use model::{Config, HealthView, Revisioned};
use tower::ServiceExt;
use webui::{AppState, AuthView, Backend, BoxFuture, Change, ChangeError, ListenerView, RaftView};

/// A backend whose next proposal fails the way the test says.
struct Scripted {
    config: Arc<Revisioned<Config>>,
    next: Mutex<Option<ChangeError>>,
    proposed: Mutex<Vec<Change>>,
}

struct NoHealth;

impl HealthView for NoHealth {
    fn is_healthy(&self, _: &str) -> Option<bool> {
        None
    }
}

impl Backend for Scripted {
    fn config(&self) -> Arc<Revisioned<Config>> {
        self.config.clone()
    }
    fn auth(&self) -> AuthView {
        AuthView::default()
    }
    fn propose(&self, change: Change) -> BoxFuture<'_, Result<u64, ChangeError>> {
        self.proposed.lock().expect("lock").push(change);
        let next = self.next.lock().expect("lock").take();
        Box::pin(async move {
            match next {
                Some(e) => Err(e),
                None => Ok(self.config.revision + 1),
            }
        })
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
        vec!["DNS: revision 9 failed to compile".into()]
    }
}

fn setup(next: Option<ChangeError>) -> (AppState, Arc<Scripted>, String, String) {
    let spec: model::ConfigSpec = model::parse::from_toml(
        "api_version = \"meridian/v1\"\npools = [{ name = \"p\", members = [{ address = \"127.0.0.1:1\" }] }]\n",
    )
    .expect("spec");
    let backend = Arc::new(Scripted {
        config: Arc::new(Revisioned {
            revision: 5,
            value: model::validate(&spec).expect("valid"),
        }),
        next: Mutex::new(next),
        proposed: Mutex::default(),
    });
    let state = AppState::new(backend.clone(), prometheus::Registry::new()).expect("state");
    let cookie = state.sessions.create("admin", Instant::now());
    let csrf = state
        .sessions
        .get(&cookie, Instant::now())
        .expect("session")
        .csrf;
    (state, backend, cookie, csrf)
}

async fn add_member(state: AppState, cookie: &str, csrf: &str) -> (StatusCode, String) {
    let req = Request::post("/console/pools/p/members")
        .header(header::COOKIE, format!("meridian_session={cookie}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))))
        .body(Body::from(format!("csrf={csrf}&address=127.0.0.1%3A2")))
        .expect("request");
    let resp = webui::app(state).oneshot(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_form_edit_is_conditional_on_the_revision_it_was_read_from() {
    let (state, backend, cookie, csrf) = setup(None);
    let (status, _) = add_member(state, &cookie, &csrf).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let proposed = backend.proposed.lock().expect("lock");
    match proposed.as_slice() {
        [Change::Upsert {
            expected_revision: Some(5),
            object: model::Object::Pools(p),
        }] => assert_eq!(p.members.len(), 2),
        other => panic!("unexpected proposals {other:?}"),
    }
}

#[tokio::test]
async fn a_concurrent_change_gets_409_not_an_overwrite() {
    let (state, _, cookie, csrf) = setup(Some(ChangeError::Stale {
        expected: 5,
        current: 6,
    }));
    let (status, body) = add_member(state, &cookie, &csrf).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("revision 6"), "{body}");
}

#[tokio::test]
async fn cluster_trouble_is_503_without_internal_details() {
    let (state, _, cookie, csrf) = setup(Some(ChangeError::Unavailable(
        "forwarding to the leader at 10.9.8.7:9700: connection refused".into(),
    )));
    let (status, body) = add_member(state, &cookie, &csrf).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.contains("10.9.8.7"), "{body}");
}

#[tokio::test]
async fn the_dashboard_shows_alarms() {
    let (state, _, cookie, _) = setup(None);
    let req = Request::get("/")
        .header(header::COOKIE, format!("meridian_session={cookie}"))
        .body(Body::empty())
        .expect("request");
    let resp = webui::app(state).oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let html = String::from_utf8_lossy(&body);
    assert!(html.contains("revision 9 failed to compile"), "{html}");
}
