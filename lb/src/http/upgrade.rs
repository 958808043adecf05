//! HTTP/1.1 Upgrade (WebSocket and others): the request keeps its `Upgrade` header, and after the
//! upstream's 101 both sides are joined as a byte tunnel.

use http::header;
use http::Request;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Whether the client asks to switch protocols (HTTP/1.1 `Connection: upgrade` + `Upgrade`).
pub fn requested<B>(req: &Request<B>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Joins the client's and the upstream's upgraded connections once both are ready; either side
/// closing ends the tunnel.
pub fn tunnel(downstream: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (down, up) = tokio::join!(downstream, upstream);
        match (down, up) {
            (Ok(down), Ok(up)) => {
                let mut down = TokioIo::new(down);
                let mut up = TokioIo::new(up);
                if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
                    tracing::debug!(error = %e, "upgraded tunnel ended with an error");
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "upgrade did not complete");
            }
        }
    });
}
