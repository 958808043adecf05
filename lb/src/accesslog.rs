//! The access log: one JSON object per request, written off the request path. The request path
//! hands a small record to a bounded channel and never waits; when the writer falls behind, the
//! line is dropped and counted (`meridian_lb_access_log_dropped_total`).

use std::io::Write;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::metrics::LbMetrics;

/// The fields an operator can choose, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Time,
    Listener,
    Client,
    Method,
    Host,
    Path,
    Version,
    Status,
    Route,
    Pool,
    Member,
    Attempts,
    DurationMs,
    UpstreamMs,
    RequestId,
    Error,
}

impl Field {
    pub const ALL: [Field; 16] = [
        Field::Time,
        Field::Listener,
        Field::Client,
        Field::Method,
        Field::Host,
        Field::Path,
        Field::Version,
        Field::Status,
        Field::Route,
        Field::Pool,
        Field::Member,
        Field::Attempts,
        Field::DurationMs,
        Field::UpstreamMs,
        Field::RequestId,
        Field::Error,
    ];
}

/// One request, as the log writer needs it.
#[derive(Debug, Clone)]
pub struct Record {
    pub time: std::time::SystemTime,
    pub listener: std::sync::Arc<str>,
    pub client: SocketAddr,
    pub method: http::Method,
    pub host: String,
    pub path: String,
    pub version: http::Version,
    pub status: u16,
    pub route: Option<std::sync::Arc<str>>,
    pub pool: Option<std::sync::Arc<str>>,
    pub member: Option<SocketAddr>,
    pub attempts: u32,
    pub duration_ms: f64,
    pub upstream_ms: Option<f64>,
    pub request_id: Option<String>,
    pub error: Option<&'static str>,
}

enum Msg {
    Record(Box<Record>),
    /// Write out everything queued so far, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The request path's end of the log.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    metrics: LbMetrics,
}

impl AccessLog {
    /// Starts a writer task that formats records with `fields` and writes them to `out`, one
    /// line each. The writer runs on the blocking pool, so a slow disk never stalls a worker.
    pub fn spawn(fields: Vec<Field>, out: Box<dyn Write + Send>, metrics: LbMetrics) -> AccessLog {
        let (tx, mut rx) = mpsc::channel::<Msg>(8192);
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::new(out);
            let mut acks = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                let mut next = Some(first);
                while let Some(msg) = next {
                    match msg {
                        Msg::Record(r) => {
                            let line = format(&r, &fields);
                            if out.write_all(line.as_bytes()).is_err() {
                                return;
                            }
                        }
                        Msg::Flush(ack) => acks.push(ack),
                    }
                    next = rx.try_recv().ok();
                }
                // Flush once the queue is empty: batches under load, prompt when quiet.
                if out.flush().is_err() {
                    return;
                }
                for ack in acks.drain(..) {
                    let _ = ack.send(());
                }
            }
        });
        AccessLog { tx, metrics }
    }

    pub fn log(&self, record: Record) {
        if self.tx.try_send(Msg::Record(Box::new(record))).is_err() {
            self.metrics.access_log_dropped();
        }
    }

    /// Resolves once every line queued before the call is written and flushed.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// One JSON line.
pub fn format(r: &Record, fields: &[Field]) -> String {
    let mut m = serde_json::Map::new();
    for f in fields {
        let (k, v): (&str, serde_json::Value) = match f {
            Field::Time => {
                let t = r
                    .time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                ("time", t.into())
            }
            Field::Listener => ("listener", r.listener.as_ref().into()),
            Field::Client => ("client", r.client.to_string().into()),
            Field::Method => ("method", r.method.as_str().into()),
            Field::Host => ("host", r.host.clone().into()),
            Field::Path => ("path", r.path.clone().into()),
            Field::Version => ("version", format!("{:?}", r.version).into()),
            Field::Status => ("status", r.status.into()),
            Field::Route => ("route", r.route.as_deref().into()),
            Field::Pool => ("pool", r.pool.as_deref().into()),
            Field::Member => ("member", r.member.map(|m| m.to_string()).into()),
            Field::Attempts => ("attempts", r.attempts.into()),
            Field::DurationMs => ("duration_ms", r.duration_ms.into()),
            Field::UpstreamMs => ("upstream_ms", r.upstream_ms.into()),
            Field::RequestId => ("request_id", r.request_id.clone().into()),
            Field::Error => ("error", r.error.into()),
        };
        m.insert(k.to_string(), v);
    }
    let mut line = serde_json::Value::Object(m).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_with_the_chosen_fields_only() {
        let r = Record {
            time: std::time::UNIX_EPOCH,
            listener: "web".into(),
            client: "127.0.0.1:5000".parse().expect("addr"),
            method: http::Method::GET,
            host: "a.test".into(),
            path: "/x?\"quoted\"".into(),
            version: http::Version::HTTP_11,
            status: 200,
            route: Some("r".into()),
            pool: None,
            member: None,
            attempts: 1,
            duration_ms: 1.5,
            upstream_ms: None,
            request_id: None,
            error: None,
        };
        let line = format(&r, &[Field::Status, Field::Path, Field::Pool]);
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["status"], 200);
        assert_eq!(v["path"], "/x?\"quoted\"");
        assert!(v["pool"].is_null());
        assert!(v.get("host").is_none());
    }
}
