//! The TCP connector of upstream clients: hyper-util's `HttpConnector` with the pool's connect
//! timeout and `TCP_NODELAY`, counting every connection it opens.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use model::UpstreamSettings;
use prometheus::IntCounter;
use tokio::net::TcpStream;
use tower::Service;

type ConnectError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    opened: IntCounter,
}

impl CountingConnector {
    pub fn new(settings: UpstreamSettings, opened: IntCounter) -> Self {
        let mut inner = HttpConnector::new();
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(settings.connect_timeout));
        inner.enforce_http(true);
        CountingConnector { inner, opened }
    }
}

impl Service<Uri> for CountingConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let opened = self.opened.clone();
        Box::pin(async move {
            let io = connecting.await?;
            opened.inc();
            Ok(io)
        })
    }
}
