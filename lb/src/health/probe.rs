//! One HTTP health probe: connect, `GET path`, compare the status, all within the check timeout.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use model::HealthCheck;
use tokio::net::TcpStream;

/// Why a probe failed; shown in logs.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("http error: {0}")]
    Http(#[from] hyper::Error),
    #[error("could not build request: {0}")]
    Request(#[from] http::Error),
    #[error("unexpected status {got}, expected {want}")]
    Status { got: u16, want: u16 },
}

pub async fn probe(addr: SocketAddr, check: &HealthCheck) -> Result<(), ProbeError> {
    match tokio::time::timeout(check.timeout, probe_inner(addr, check)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(check.timeout)),
    }
}

async fn probe_inner(addr: SocketAddr, check: &HealthCheck) -> Result<(), ProbeError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ProbeError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let host = check.host.clone().unwrap_or_else(|| addr.to_string());
    let req = http::Request::get(check.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "meridian-health/1")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let result = sender.send_request(req).await;
    conn.abort();
    let status = result?.status().as_u16();
    if status == check.expect_status {
        Ok(())
    } else {
        Err(ProbeError::Status {
            got: status,
            want: check.expect_status,
        })
    }
}
