//! HTTP/2 upstream connections: one multiplexed connection per member, opened on first use and
//! replaced when it closes. Requests keep their own authority (`:authority` is the client's
//! host, as mesh gateways route on it); the member only decides where to connect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::IntCounter;
use tokio::net::TcpStream;

use crate::body::Body;

/// Why an HTTP/2 exchange failed: before anything was sent (a retry is safe) or after.
#[derive(Debug)]
pub enum H2Error {
    Connect(std::io::Error),
    Exchange(hyper::Error),
}

/// The connection to one member; its async lock makes concurrent first requests wait for one
/// connect instead of each opening their own.
type Slot = Arc<tokio::sync::Mutex<Option<SendRequest<Body>>>>;

pub struct H2Conns {
    conns: Mutex<HashMap<SocketAddr, Slot>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    opened: IntCounter,
    tls: Option<Arc<super::tls::UpstreamTls>>,
}

impl H2Conns {
    pub fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        opened: IntCounter,
        tls: Option<Arc<super::tls::UpstreamTls>>,
    ) -> H2Conns {
        H2Conns {
            conns: Mutex::default(),
            connect_timeout,
            idle_timeout,
            opened,
            tls,
        }
    }

    pub async fn send(
        &self,
        member: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, H2Error> {
        let slot = self
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(member)
            .or_default()
            .clone();
        let mut sender = {
            let mut current = slot.lock().await;
            match current.as_ref().filter(|s| !s.is_closed()) {
                Some(s) => s.clone(),
                None => {
                    let s = self.connect(member).await?;
                    *current = Some(s.clone());
                    s
                }
            }
        };
        sender.ready().await.map_err(H2Error::Exchange)?;
        sender.send_request(req).await.map_err(H2Error::Exchange)
    }

    async fn connect(&self, member: SocketAddr) -> Result<SendRequest<Body>, H2Error> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(member))
            .await
            .map_err(|_| H2Error::Connect(std::io::ErrorKind::TimedOut.into()))?
            .map_err(H2Error::Connect)?;
        let _ = stream.set_nodelay(true);
        let io = match &self.tls {
            None => super::tls::UpstreamIo::Plain(stream),
            Some(tls) => tokio::time::timeout(self.connect_timeout, tls.connect(member, stream))
                .await
                .map_err(|_| H2Error::Connect(std::io::ErrorKind::TimedOut.into()))?
                .map_err(H2Error::Connect)?,
        };
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            // Pings find a dead connection before a request does.
            .keep_alive_interval(self.idle_timeout / 2)
            .keep_alive_timeout(Duration::from_secs(10));
        let (sender, conn) = builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| H2Error::Connect(std::io::Error::other(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%member, error = %e, "upstream HTTP/2 connection ended");
            }
        });
        self.opened.inc();
        Ok(sender)
    }
}
