//! Test harness: a data plane driven through its watch channel (no Raft), listeners on sockets
//! the test bound to 127.0.0.1:0 and handed over, and real upstreams that record what they saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use model::{Config, Revisioned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn compile(toml: &str) -> Config {
    let spec: model::ConfigSpec = model::parse::from_toml(toml).expect("parses");
    model::validate(&spec).expect("valid")
}

/// A bound (listening) socket on 127.0.0.1:0 and its address.
pub fn bound() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// An address that refuses connections and stays reserved: a socket bound but not listening.
pub fn refusing() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let a = s.local_addr().expect("addr");
    (s, a)
}

pub struct Plane {
    pub plane: lb::DataPlane,
    pub registry: prometheus::Registry,
    tx: watch::Sender<Arc<Revisioned<Config>>>,
    revision: u64,
}

impl Plane {
    /// Starts a data plane, hands it `sockets`, then applies `toml` as revision 1 and waits
    /// until every listener of it is listening.
    pub async fn start(toml: &str, sockets: Vec<std::net::TcpListener>) -> Plane {
        let registry = prometheus::Registry::new();
        let (tx, rx) = watch::channel(Arc::new(Revisioned {
            revision: 0,
            value: Config::empty(),
        }));
        // Two worker threads, as on the 2-core appliance: the tests cover the per-core path.
        let plane = lb::DataPlane::spawn_with(
            rx,
            lb::LbMetrics::new(&registry).expect("metrics"),
            lb::Options {
                workers: 2,
                ..Default::default()
            },
        );
        for s in sockets {
            plane.hand_over(s).expect("hand over");
        }
        let mut p = Plane {
            plane,
            registry,
            tx,
            revision: 0,
        };
        p.apply(toml).await;
        p
    }

    /// Applies the next revision and waits until the data plane serves it with every listener
    /// listening.
    pub async fn apply(&mut self, toml: &str) {
        self.revision += 1;
        let value = compile(toml);
        let wanted = value.listeners.len();
        self.tx
            .send(Arc::new(Revisioned {
                revision: self.revision,
                value,
            }))
            .expect("send");
        for _ in 0..500 {
            let states = self.plane.listener_states();
            if self.plane.revision() == self.revision
                && states.len() == wanted
                && states.iter().all(|s| s.2 == lb::ListenerState::Listening)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "revision {} not served: {:?}",
            self.revision,
            self.plane.listener_states()
        );
    }

    /// The value of a metric line such as `meridian_lb_requests_total{listener="web",status="200"}`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut total = 0.0;
        for fam in self.registry.gather() {
            if fam.name() != name {
                continue;
            }
            for m in fam.get_metric() {
                let matches = labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                });
                if matches {
                    total += match fam.get_field_type() {
                        prometheus::proto::MetricType::COUNTER => m.get_counter().value(),
                        prometheus::proto::MetricType::GAUGE => m.get_gauge().value(),
                        _ => 0.0,
                    };
                }
            }
        }
        total
    }

    /// The listener `web`'s aborted requests, once there is one (or after 2 s: 0).
    pub async fn aborted(&self) -> f64 {
        for _ in 0..200 {
            let aborted = self.metric(
                "meridian_lb_client_errors_total",
                &[("listener", "web"), ("kind", "aborted")],
            );
            if aborted > 0.0 {
                return aborted;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        0.0
    }
}

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub uri: String,
    pub version: hyper::Version,
    pub headers: http::HeaderMap,
}

/// A real HTTP/1.1 + HTTP/2 upstream that records every request. Paths:
/// `/echo` answers with the request body; `/trailers` sends a body then trailers;
/// `/ws` upgrades and echoes bytes; `/big` sends 100 KB; anything else answers its name.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(name, log.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Upstream { addr, seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// Waits (up to 5 s) until the upstream has seen a request matching `f`: the request is
    /// then in flight through the proxy.
    pub async fn wait_for(&self, f: impl Fn(&Seen) -> bool) {
        for _ in 0..500 {
            if self.seen.lock().expect("lock").iter().any(&f) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the upstream never saw the request");
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

type Out = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(
    name: &'static str,
    log: Arc<Mutex<Vec<Seen>>>,
    mut req: Request<Incoming>,
) -> Result<Response<Out>, Infallible> {
    log.lock().expect("lock").push(Seen {
        uri: req.uri().to_string(),
        version: req.version(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_string();
    let resp = match path.as_str() {
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Response::new(Full::new(body).boxed())
        }
        "/trailers" => {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                Ok(Frame::data(Bytes::from_static(b"payload"))),
                Ok(Frame::trailers(trailers)),
            ];
            Response::new(StreamBody::new(futures_stream(frames)).boxed())
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(Full::new(Bytes::new()).boxed());
            *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            );
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
            r
        }
        "/big" => Response::new(Full::new(Bytes::from(vec![b'x'; 100 * 1024])).boxed()),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Response::new(Full::new(Bytes::from(name)).boxed())
        }
        _ => Response::new(Full::new(Bytes::from(name)).boxed()),
    };
    Ok(resp)
}

fn futures_stream(
    frames: Vec<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    struct Iter(std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(frames.into_iter())
}

/// Sends raw bytes and reads until the proxy closes the connection (or 5 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).to_string(), closed)
}

/// One HTTP listener `web` (with `listener_extra` fields) routing everything to pool `p`.
pub fn one_pool(web: SocketAddr, listener_extra: &str, members: &[SocketAddr]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|m| format!("{{ address = \"{m}\" }}"))
        .collect();
    format!(
        "api_version = \"meridian/v1\"\n\
         listeners = [{{ name = \"web\", bind = \"{web}\"{listener_extra} }}]\n\
         routes = [{{ name = \"all\", listener = \"web\", pool = \"p\" }}]\n\
         pools = [{{ name = \"p\", members = [{}] }}]\n",
        members.join(", ")
    )
}

/// A data plane serving [`one_pool`] on a fresh loopback socket.
pub async fn one_pool_plane(listener_extra: &str, members: &[SocketAddr]) -> (Plane, SocketAddr) {
    let (sock, web) = bound();
    let plane = Plane::start(&one_pool(web, listener_extra, members), vec![sock]).await;
    (plane, web)
}

/// The status of a GET with `client`.
pub async fn status(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

pub async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("answer");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}
