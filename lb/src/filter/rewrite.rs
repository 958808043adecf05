//! Path rewrite: the route's matched prefix is replaced before the request goes upstream.

use http::uri::PathAndQuery;

#[derive(Debug)]
pub struct RewritePrefix {
    from: String,
    to: String,
}

impl RewritePrefix {
    pub fn new(from: &str, to: &str) -> RewritePrefix {
        RewritePrefix {
            from: from.to_string(),
            to: to.to_string(),
        }
    }

    /// The rewritten path and query, or `None` when the path does not start with the prefix
    /// (the route matched, so that happens only if another filter changed the path first).
    pub fn apply(&self, pq: &PathAndQuery) -> Option<PathAndQuery> {
        let rest = pq.path().strip_prefix(self.from.as_str())?;
        let mut out = String::with_capacity(self.to.len() + pq.as_str().len());
        out.push_str(&self.to);
        // `/api` -> `/` on `/api/x` gives `/x`, not `//x`.
        match (self.to.ends_with('/'), rest.strip_prefix('/')) {
            (true, Some(r)) => out.push_str(r),
            _ => out.push_str(rest),
        }
        if out.is_empty() {
            out.push('/');
        }
        if let Some(q) = pq.query() {
            out.push('?');
            out.push_str(q);
        }
        PathAndQuery::try_from(out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(from: &str, to: &str, path: &str) -> Option<String> {
        RewritePrefix::new(from, to)
            .apply(&PathAndQuery::try_from(path).expect("path"))
            .map(|p| p.as_str().to_string())
    }

    #[test]
    fn replaces_the_prefix_and_keeps_the_rest() {
        assert_eq!(
            rw("/api", "/v2", "/api/users?id=1").as_deref(),
            Some("/v2/users?id=1")
        );
        assert_eq!(rw("/api", "/", "/api/users").as_deref(), Some("/users"));
        assert_eq!(rw("/api", "/", "/api").as_deref(), Some("/"));
        assert_eq!(rw("/api/", "/new/", "/api/x").as_deref(), Some("/new/x"));
        assert_eq!(rw("/", "/app/", "/x").as_deref(), Some("/app/x"));
        assert_eq!(rw("/api", "/v2", "/other"), None);
    }
}
