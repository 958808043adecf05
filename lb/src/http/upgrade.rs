//! HTTP/1.1 Upgrade (WebSocket and others): the request keeps its `Upgrade` header, and after the
//! upstream's 101 both sides are joined as a byte tunnel.

use std::sync::{Arc, Mutex, PoisonError};

use http::header::{self, HeaderMap};
use http::{Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::listener::io::ListenerIo;

/// Whether the client asks to switch protocols (HTTP/1.1 `Connection: upgrade` + `Upgrade`).
pub fn requested(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && crate::upstream::h1::wire::has_token(headers, header::CONNECTION, "upgrade")
}

/// The client's connection after the server wrote the 101, carried in the request's extensions
/// (which must be `Clone`, hence the shared slot).
#[derive(Clone)]
pub struct Downstream(Arc<Mutex<Option<oneshot::Receiver<ListenerIo>>>>);

impl Downstream {
    pub fn new(rx: oneshot::Receiver<ListenerIo>) -> Downstream {
        Downstream(Arc::new(Mutex::new(Some(rx))))
    }
}

/// Takes the client's side of an upgrade out of the request, when the server offered one.
pub fn on<B>(req: &mut Request<B>) -> Option<oneshot::Receiver<ListenerIo>> {
    let slot = req.extensions_mut().remove::<Downstream>()?;
    let rx = slot.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    rx
}

/// Joins the client's and the upstream's upgraded connections once both are ready; either side
/// closing ends the tunnel.
pub fn tunnel(downstream: oneshot::Receiver<ListenerIo>, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (down, up) = tokio::join!(downstream, upstream);
        match (down, up) {
            (Ok(mut down), Ok(up)) => {
                let mut up = TokioIo::new(up);
                if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
                    tracing::debug!(error = %e, "upgraded tunnel ended with an error");
                }
            }
            (Err(_), _) => tracing::debug!("the client's side of an upgrade did not complete"),
            (_, Err(e)) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
    });
}
