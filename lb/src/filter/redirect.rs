//! Redirects: answer with a 3xx whose `Location` keeps the parts of the request the route does
//! not replace.

use http::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use http::uri::PathAndQuery;
use http::{Response, StatusCode};

use crate::body::{self, Body};
use crate::error::CompileError;

#[derive(Debug)]
pub struct Redirect {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: Option<String>,
    status: StatusCode,
}

impl Redirect {
    pub fn compile(spec: &model::Redirect) -> Result<Redirect, CompileError> {
        Ok(Redirect {
            scheme: spec.scheme.clone(),
            host: spec.host.clone(),
            port: spec.port,
            path: spec.path.clone(),
            status: StatusCode::from_u16(spec.status)
                .map_err(|_| CompileError::Redirect(spec.status))?,
        })
    }

    /// The answer to a request for `scheme://authority` + `pq`. `authority` is the request's
    /// host as sent (with its port) and `host` the same without the port. A redirect that names
    /// neither host nor port keeps the authority as it was; one that names either builds it anew.
    pub fn apply(
        &self,
        scheme: &str,
        authority: &str,
        host: &str,
        pq: &PathAndQuery,
    ) -> Response<Body> {
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let mut location = format!("{scheme}://");
        if self.host.is_none() && self.port.is_none() {
            location.push_str(authority);
        } else {
            location.push_str(self.host.as_deref().unwrap_or(host));
            if let Some(port) = self.port {
                location.push(':');
                location.push_str(&port.to_string());
            }
        }
        match &self.path {
            Some(p) => {
                location.push_str(p);
                if let Some(q) = pq.query() {
                    location.push('?');
                    location.push_str(q);
                }
            }
            None => location.push_str(pq.as_str()),
        }
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = self.status;
        // Every part was validated or came through hyper's parser, so the value is visible
        // ASCII; a failure here would only drop the header.
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(LOCATION, v);
        }
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(
        scheme: Option<&str>,
        host: Option<&str>,
        port: Option<u16>,
        path: Option<&str>,
    ) -> Redirect {
        Redirect::compile(&model::Redirect {
            scheme: scheme.map(Into::into),
            host: host.map(Into::into),
            port,
            path: path.map(Into::into),
            status: 301,
        })
        .expect("compiles")
    }

    fn location(r: &Response<Body>) -> &str {
        r.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn keeps_what_it_does_not_replace() {
        let pq = PathAndQuery::from_static("/a/b?x=1");
        let r = redirect(Some("https"), None, None, None).apply(
            "http",
            "app.test:8080",
            "app.test",
            &pq,
        );
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(location(&r), "https://app.test:8080/a/b?x=1");
        let r = redirect(None, Some("new.test"), Some(8443), Some("/home")).apply(
            "http",
            "app.test:8080",
            "app.test",
            &pq,
        );
        assert_eq!(location(&r), "http://new.test:8443/home?x=1");
        let r = redirect(None, Some("new.test"), None, None).apply(
            "http",
            "app.test:8080",
            "app.test",
            &pq,
        );
        assert_eq!(location(&r), "http://new.test/a/b?x=1");
    }
}
