//! Console forms for every object kind, from one declarative description per kind.
//!
//! A form is a list of [`Field`]s (scalars, optional scalars, lists, header maps) and
//! [`Table`]s (members, sites, records: one row per element plus a blank row to add one). The
//! same description renders the form from an object, parses a submitted form back into the
//! object's JSON, and places validation errors beside the input they concern: inputs are named
//! by the object-relative field path that validation uses (`members[1].address`), so an error
//! at `pools[3].members[1].address` lands on the input `members[1].address`.

use std::collections::{BTreeMap, HashMap};

use model::ObjectKind;
use serde_json::{Map, Value};

/// How a field is typed in and turned into JSON.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string; an empty input is sent as `""` so that validation names what is missing.
    Text,
    /// An optional string; an empty input leaves the field out.
    OptText,
    /// A whole number; an empty input leaves the field out (its default applies).
    Number,
    /// One of a fixed set of words.
    Select(&'static [&'static str]),
    /// A list of strings, one per line.
    Lines,
    /// A map of header names to values, one `Name: value` per line.
    Pairs,
    /// Several lines kept as one string (PEM); an empty input leaves the field out.
    Block,
    /// Yes or no (`true`/`false`); empty leaves the field out (its default applies).
    Flag,
}

#[derive(Debug)]
pub struct Field {
    /// Object-relative path, dotted for nested objects (`redirect.status`).
    pub path: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

#[derive(Debug)]
pub struct Table {
    /// The array field (`members`).
    pub path: &'static str,
    pub label: &'static str,
    pub columns: &'static [Field],
}

#[derive(Debug)]
pub struct Form {
    pub fields: &'static [Field],
    pub tables: &'static [Table],
}

const fn f(path: &'static str, label: &'static str, kind: Kind, help: &'static str) -> Field {
    Field {
        path,
        label,
        kind,
        help,
    }
}

const ADMIN_STATES: &[&str] = &["enabled", "disabled", "draining"];
const SITE_STATES: &[&str] = &["enabled", "disabled", "draining", "force_up"];

static LISTENER: Form = Form {
    fields: &[
        f("name", "Name", Kind::Text, "Letters, digits, - and _."),
        f(
            "bind",
            "Bind address",
            Kind::Text,
            "ip:port, e.g. 0.0.0.0:443",
        ),
        f(
            "protocol",
            "Protocol",
            Kind::Select(&["http", "tcp"]),
            "http: routed by routes; tcp: every connection to the pool",
        ),
        f(
            "pool",
            "Pool (TCP only)",
            Kind::OptText,
            "The pool a TCP listener forwards to.",
        ),
        f(
            "max_request_head_bytes",
            "Max request head (bytes)",
            Kind::Number,
            "Default 32768.",
        ),
        f(
            "max_request_line_bytes",
            "Max request line (bytes)",
            Kind::Number,
            "Default 8192.",
        ),
        f(
            "header_timeout_ms",
            "Header timeout (ms)",
            Kind::Number,
            "Default 15000.",
        ),
        f(
            "idle_timeout_ms",
            "Idle timeout (ms)",
            Kind::Number,
            "Default 60000.",
        ),
        f(
            "drain_timeout_ms",
            "Drain timeout (ms)",
            Kind::Number,
            "Default 30000.",
        ),
        f(
            "proxy_protocol_from",
            "Accept PROXY protocol from",
            Kind::Lines,
            "CIDRs, one per line.",
        ),
        f(
            "bandwidth.per_connection_bytes_per_second",
            "Bandwidth per connection (bytes/s)",
            Kind::Number,
            "Each direction on its own; empty: not shaped.",
        ),
        f(
            "bandwidth.listener_bytes_per_second",
            "Bandwidth of the listener (bytes/s)",
            Kind::Number,
            "All its connections together, each direction, on each node.",
        ),
        f(
            "tls.certificates",
            "TLS certificates",
            Kind::Lines,
            "Names from Certificates, one per line: set to serve HTTPS. SNI picks among them.",
        ),
        f(
            "tls.default_certificate",
            "Default certificate",
            Kind::OptText,
            "For clients whose SNI matches none; the first when empty.",
        ),
        f(
            "tls.unknown_sni",
            "Unknown SNI",
            Kind::Select(&["default", "refuse"]),
            "Serve the default certificate, or refuse the handshake.",
        ),
        f(
            "tls.min_version",
            "Minimum TLS version",
            Kind::Select(&["1.2", "1.3"]),
            "",
        ),
        f(
            "tls.ktls",
            "Kernel TLS",
            Kind::Select(&["auto", "on", "off"]),
            "auto: the kernel's record layer where it supports the negotiated suite.",
        ),
        f(
            "tls.handshake_timeout_ms",
            "TLS handshake timeout (ms)",
            Kind::Number,
            "Default 10000.",
        ),
        f(
            "tls.client_auth.ca_pem",
            "Client certificates: CA (PEM)",
            Kind::Block,
            "Set to ask clients for certificates that chain to this CA (mutual TLS).",
        ),
        f(
            "tls.client_auth.mode",
            "Client certificates",
            Kind::Select(&["required", "optional"]),
            "required: refuse clients without one; optional: serve them without the headers.",
        ),
        f(
            "tls.client_auth.subject_header",
            "Header for the client's subject",
            Kind::OptText,
            "Default x-client-cert-subject; clients cannot set it themselves.",
        ),
        f(
            "tls.client_auth.sans_header",
            "Header for the client's names",
            Kind::OptText,
            "Default x-client-cert-sans.",
        ),
    ],
    tables: &[Table {
        path: "sni_routes",
        label: "SNI routes (TCP passthrough)",
        columns: &[
            f("server_name", "Server name", Kind::Text, "name or *.suffix"),
            f("pool", "Pool", Kind::Text, ""),
        ],
    }],
};

static ROUTE: Form = Form {
    fields: &[
        f("name", "Name", Kind::Text, ""),
        f("listener", "Listener", Kind::Text, "An HTTP listener."),
        f(
            "host",
            "Host",
            Kind::OptText,
            "Exact host or *.suffix; empty matches any host.",
        ),
        f(
            "path_prefix",
            "Path prefix",
            Kind::Text,
            "Matches whole segments: /api matches /api/v1, not /apix.",
        ),
        f("pool", "Pool", Kind::Text, ""),
        f(
            "rewrite_prefix",
            "Rewrite prefix to",
            Kind::OptText,
            "Replaces the matched prefix before forwarding.",
        ),
        f(
            "redirect.status",
            "Redirect status",
            Kind::Number,
            "301, 302, 303, 307 or 308; set to redirect instead of forwarding.",
        ),
        f(
            "redirect.scheme",
            "Redirect scheme",
            Kind::OptText,
            "http or https; empty keeps the request's.",
        ),
        f("redirect.host", "Redirect host", Kind::OptText, ""),
        f("redirect.port", "Redirect port", Kind::Number, ""),
        f("redirect.path", "Redirect path", Kind::OptText, ""),
        f(
            "request_headers.set",
            "Request headers to set",
            Kind::Pairs,
            "Name: value, one per line.",
        ),
        f(
            "request_headers.add",
            "Request headers to add",
            Kind::Pairs,
            "Name: value, one per line.",
        ),
        f(
            "request_headers.remove",
            "Request headers to remove",
            Kind::Lines,
            "One name per line.",
        ),
        f(
            "response_headers.set",
            "Response headers to set",
            Kind::Pairs,
            "Name: value, one per line.",
        ),
        f(
            "response_headers.add",
            "Response headers to add",
            Kind::Pairs,
            "Name: value, one per line.",
        ),
        f(
            "response_headers.remove",
            "Response headers to remove",
            Kind::Lines,
            "One name per line.",
        ),
        f(
            "compression.codecs",
            "Compression codecs",
            Kind::Lines,
            "zstd, br, gzip, deflate: one per line, preferred first. Set to compress responses.",
        ),
        f(
            "compression.level",
            "Compression level",
            Kind::Number,
            "1 (fastest) to 9 (smallest); default 5.",
        ),
        f(
            "compression.content_types",
            "Compressed media types",
            Kind::Lines,
            "type/subtype or type/*, one per line; empty: text/*, JSON, JavaScript, XML, SVG, wasm.",
        ),
        f(
            "compression.min_size_bytes",
            "Compress from (bytes)",
            Kind::Number,
            "Smaller responses go as they are; default 1024.",
        ),
        f(
            "rate_limit.requests",
            "Rate limit: requests",
            Kind::Number,
            "Per second (or per minute/hour below) for each key; set to limit. Over it: 429 with Retry-After.",
        ),
        f(
            "rate_limit.per",
            "Rate limit: per",
            Kind::Select(&["second", "minute", "hour"]),
            "",
        ),
        f(
            "rate_limit.burst",
            "Rate limit: burst",
            Kind::Number,
            "Requests a key may make at once; the rate when empty.",
        ),
        f(
            "rate_limit.key.by",
            "Rate limit: counted by",
            Kind::Select(&["client_ip", "subnet", "header", "cookie", "route"]),
            "",
        ),
        f(
            "rate_limit.key.name",
            "Rate limit: header or cookie name",
            Kind::OptText,
            "For by = header or cookie (an API key header, a session cookie).",
        ),
        f(
            "rate_limit.over_limit",
            "Rate limit: over the limit",
            Kind::Select(&["reject", "delay"]),
            "reject: 429 at once; delay: hold the request up to the delay below.",
        ),
        f(
            "rate_limit.max_delay_ms",
            "Rate limit: longest delay (ms)",
            Kind::Number,
            "With delay: how long a request may wait for its turn.",
        ),
        f(
            "rate_limit.max_concurrent",
            "Rate limit: requests in flight per key",
            Kind::Number,
            "",
        ),
        f(
            "rate_limit.global",
            "Rate limit: across the cluster",
            Kind::Flag,
            "true: the rate holds for all appliances together, split by where each key's requests arrive.",
        ),
        f(
            "cache.default_ttl_seconds",
            "Cache: default freshness (s)",
            Kind::Number,
            "Set any cache field to cache this route (RFC 9111). Freshness for responses that state none; 0 keeps them only to revalidate.",
        ),
        f(
            "cache.max_object_bytes",
            "Cache: largest response (bytes)",
            Kind::Number,
            "Larger ones pass through; default 8 MiB.",
        ),
        f(
            "cache.stale_while_revalidate_seconds",
            "Cache: serve stale while refreshing (s)",
            Kind::Number,
            "Unless the response says (stale-while-revalidate).",
        ),
        f(
            "cache.stale_if_error_seconds",
            "Cache: serve stale on upstream errors (s)",
            Kind::Number,
            "Unless the response says (stale-if-error).",
        ),
        f(
            "cache.key.ignore_query",
            "Cache key: ignore the query",
            Kind::Flag,
            "",
        ),
        f(
            "cache.key.query_params",
            "Cache key: only these query parameters",
            Kind::Lines,
            "One per line; the others are left out of the key.",
        ),
        f(
            "cache.key.headers",
            "Cache key: request headers",
            Kind::Lines,
            "Their values are part of the key, one name per line.",
        ),
        f(
            "cache.tags_header",
            "Cache: tags header",
            Kind::OptText,
            "Response header listing tags for purge by tag; default surrogate-key.",
        ),
        f(
            "access.allow",
            "Allow clients",
            Kind::Lines,
            "Networks, one per line (192.0.2.0/24); when set, only these pass (403).",
        ),
        f(
            "access.deny",
            "Deny clients",
            Kind::Lines,
            "Networks refused with 403, one per line.",
        ),
        f(
            "access.methods",
            "Allowed methods",
            Kind::Lines,
            "One per line; others get 405 with Allow.",
        ),
        f(
            "compression.decompress_requests_max_bytes",
            "Decompress request bodies up to (bytes)",
            Kind::Number,
            "Set to decode compressed request bodies before they go upstream; larger ones get 413.",
        ),
    ],
    tables: &[],
};

static POOL: Form = Form {
    fields: &[
        f("name", "Name", Kind::Text, ""),
        f(
            "health_check",
            "Health check",
            Kind::OptText,
            "Name of a health check; empty: members are always up.",
        ),
        f(
            "timeout_ms",
            "Response timeout (ms)",
            Kind::Number,
            "Default 30000.",
        ),
        f(
            "protocol",
            "Upstream protocol",
            Kind::Select(&["http1", "http2"]),
            "",
        ),
        f(
            "connect_timeout_ms",
            "Connect timeout (ms)",
            Kind::Number,
            "Default 5000.",
        ),
        f(
            "idle_timeout_ms",
            "Idle connection timeout (ms)",
            Kind::Number,
            "Default 60000.",
        ),
        f(
            "max_idle_per_member",
            "Idle connections per member",
            Kind::Number,
            "Default 1024.",
        ),
        f(
            "retries",
            "Retries",
            Kind::Number,
            "On another member, for requests safe to retry. Default 1.",
        ),
        f(
            "max_concurrent_requests",
            "Requests in flight, at most",
            Kind::Number,
            "On each node; more get 503 with Retry-After. Empty: no limit.",
        ),
        f(
            "proxy_protocol",
            "Send PROXY protocol",
            Kind::Select(&["off", "v1", "v2"]),
            "",
        ),
        f(
            "tls.ca_pem",
            "TLS to members: CA (PEM)",
            Kind::Block,
            "Set to speak TLS to the members; their certificates must chain to this CA.",
        ),
        f(
            "tls.server_name",
            "TLS server name",
            Kind::OptText,
            "SNI and the name the members' certificates carry; their IP address when empty.",
        ),
        f(
            "tls.client_certificate",
            "TLS client certificate",
            Kind::OptText,
            "A certificate from Certificates to present (mutual TLS).",
        ),
        f(
            "tls.spiffe_ids",
            "TLS: pinned SPIFFE IDs",
            Kind::Lines,
            "One per line (spiffe://trust-domain/ns/…/sa/…, or a prefix ending in /*): the members' certificates must carry one, as Istio and Linkerd gateways do; the DNS name is then not checked.",
        ),
    ],
    tables: &[Table {
        path: "members",
        label: "Members",
        columns: &[
            f("address", "Address", Kind::Text, "ip:port"),
            f("weight", "Weight", Kind::Number, "1-1000, default 1"),
            f("state", "Admin state", Kind::Select(ADMIN_STATES), ""),
        ],
    }],
};

static HEALTH_CHECK: Form = Form {
    fields: &[
        f("name", "Name", Kind::Text, ""),
        f(
            "protocol",
            "Protocol",
            Kind::Select(&["http", "https", "tcp"]),
            "tcp: the connection alone; https: GET over TLS.",
        ),
        f("path", "Path", Kind::Text, "Requested with GET."),
        f(
            "host",
            "Host header",
            Kind::OptText,
            "Also the TLS server name of https checks.",
        ),
        f(
            "interval_ms",
            "Interval (ms)",
            Kind::Number,
            "Default 2000.",
        ),
        f("timeout_ms", "Timeout (ms)", Kind::Number, "Default 1000."),
        f(
            "rise",
            "Rise",
            Kind::Number,
            "Passes in a row to go up. Default 2.",
        ),
        f(
            "fall",
            "Fall",
            Kind::Number,
            "Failures in a row to go down. Default 3.",
        ),
        f(
            "expect_status",
            "Expected status",
            Kind::Number,
            "Default 200.",
        ),
        f(
            "expect_body",
            "Expected body text",
            Kind::OptText,
            "The response's first 64 KiB must contain it.",
        ),
        f(
            "ca_pem",
            "CA bundle (https)",
            Kind::Block,
            "PEM; the certificate is verified against it. Without one it is not verified.",
        ),
    ],
    tables: &[],
};

static ZONE: Form = Form {
    fields: &[
        f("name", "Zone", Kind::Text, "e.g. example.com"),
        f("soa.mname", "SOA primary name server", Kind::Text, ""),
        f(
            "soa.rname",
            "SOA responsible mailbox",
            Kind::Text,
            "e.g. hostmaster.example.com",
        ),
        f("soa.refresh", "SOA refresh (s)", Kind::Number, ""),
        f("soa.retry", "SOA retry (s)", Kind::Number, ""),
        f("soa.expire", "SOA expire (s)", Kind::Number, ""),
        f(
            "soa.minimum",
            "SOA minimum / negative TTL (s)",
            Kind::Number,
            "",
        ),
        f("soa.ttl", "SOA TTL (s)", Kind::Number, ""),
        f("ns", "Name servers", Kind::Lines, "One per line."),
    ],
    tables: &[Table {
        path: "records",
        label: "Records",
        columns: &[
            f("name", "Name", Kind::Text, "Relative (www) or @"),
            f(
                "type",
                "Type",
                Kind::Select(&["A", "AAAA", "CNAME", "TXT", "MX", "NS", "SRV", "CAA", "PTR"]),
                "NS below the apex delegates a child zone",
            ),
            f("ttl", "TTL", Kind::Number, "Default 300"),
            f(
                "value",
                "Value",
                Kind::Text,
                "MX: preference exchange; SRV: priority weight port target; CAA: flags tag \"value\"",
            ),
        ],
    }, Table {
        path: "secondaries",
        label: "Secondaries (zone transfers)",
        columns: &[
            f(
                "address",
                "Address",
                Kind::Text,
                "IP or IP:port; AXFR/IXFR only from this IP, NOTIFY to this port (53)",
            ),
            f(
                "tsig_key",
                "TSIG key",
                Kind::Text,
                "A key of the TSIG keys table on the zones page",
            ),
            f("notify", "NOTIFY", Kind::Flag, "Announce each new serial (default yes)"),
        ],
    }],
};

static GSLB: Form = Form {
    fields: &[
        f(
            "name",
            "Name",
            Kind::Text,
            "A name inside a zone, e.g. app.example.com",
        ),
        f("ttl", "TTL (s)", Kind::Number, "Default 30."),
        f(
            "when_all_down",
            "When every site is down",
            Kind::Select(&["empty", "all", "fallback", "servfail"]),
            "empty: answer with no address; all: answer with every site; fallback: the fallback addresses; servfail: SERVFAIL.",
        ),
        f(
            "fallback",
            "Fallback addresses",
            Kind::Lines,
            "One IP per line, answered when every site is down and the policy says fallback.",
        ),
        f(
            "policy",
            "Policy",
            Kind::Select(&["all", "failover", "weighted", "round_robin", "persistent"]),
            "After steering: all: every candidate; failover: the best priority that is up; weighted: one site by weight; round_robin: all, rotating; persistent: one site per client subnet, kept while healthy.",
        ),
        f(
            "steer",
            "Steering",
            Kind::Select(&["none", "geo", "nearest"]),
            "First stage. geo: the client's region (its subnet in a region's networks), then the regions it spills to; nearest: the closest sites by the regions' locations.",
        ),
        f(
            "max_answers",
            "Most addresses per answer",
            Kind::Number,
            "1 to 16; every one the policy picks when empty.",
        ),
    ],
    tables: &[Table {
        path: "sites",
        label: "Sites",
        columns: &[
            f("name", "Name", Kind::Text, ""),
            f("address", "Address", Kind::Text, "IPv4 or IPv6; empty for a CNAME site"),
            f("cname", "CNAME target", Kind::OptText, "Instead of an address: a host name answered as CNAME (all sites or none)"),
            f("port", "Probe port", Kind::Number, "Default 80"),
            f("health_check", "Health check", Kind::OptText, ""),
            f("state", "Admin state", Kind::Select(SITE_STATES), "force_up: answered whatever its checks say"),
            f("priority", "Priority", Kind::Number, "Failover: 1 first; default 1"),
            f("weight", "Weight", Kind::Number, "Weighted: default 1"),
            f("region", "Region", Kind::OptText, "Geo steering"),
            f("location", "Location", Kind::OptText, "latitude,longitude; default the region's"),
            f("capacity", "Capacity (answers/s)", Kind::Number, "Cluster-wide; past it the load goes to the other sites. Empty: no limit"),
        ],
    }],
};

static REGION: Form = Form {
    fields: &[
        f("name", "Name", Kind::Text, "Letters, digits, - and _."),
        f(
            "networks",
            "Client networks",
            Kind::Lines,
            "One CIDR per line, e.g. 198.51.100.0/24. The longest match across regions wins.",
        ),
        f(
            "countries",
            "Countries",
            Kind::Lines,
            "ISO codes (US, DE, ...), one per line: clients the node's GeoIP database places there, when no network matches.",
        ),
        f(
            "continents",
            "Continents",
            Kind::Lines,
            "AF, AN, AS, EU, NA, OC or SA, one per line: for clients whose country is in no region.",
        ),
        f(
            "location",
            "Location",
            Kind::OptText,
            "latitude,longitude in degrees, e.g. 40.71,-74.01 (nearest steering)",
        ),
        f(
            "spill_to",
            "Spill to regions",
            Kind::Lines,
            "One region per line: their sites take this region's clients when none of its own is healthy.",
        ),
    ],
    tables: &[],
};

pub fn form(kind: ObjectKind) -> &'static Form {
    match kind {
        ObjectKind::Listeners => &LISTENER,
        ObjectKind::Routes => &ROUTE,
        ObjectKind::Pools => &POOL,
        ObjectKind::HealthChecks => &HEALTH_CHECK,
        ObjectKind::Zones => &ZONE,
        ObjectKind::GslbRecords => &GSLB,
        ObjectKind::Regions => &REGION,
    }
}

/// What the inputs of a form hold: input name -> text, and how many rows each table has.
#[derive(Debug, Default, Clone)]
pub struct Values {
    pub inputs: HashMap<String, String>,
    pub rows: HashMap<&'static str, usize>,
}

impl Values {
    fn get(&self, name: &str) -> &str {
        self.inputs.get(name).map(String::as_str).unwrap_or("")
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn to_text(kind: Kind, v: Option<&Value>) -> String {
    match (kind, v) {
        (_, None | Some(Value::Null)) => String::new(),
        (_, Some(Value::String(s))) => s.clone(),
        (Kind::Lines, Some(Value::Array(a))) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join("\n"),
        (Kind::Pairs, Some(Value::Object(m))) => m
            .iter()
            .map(|(k, x)| format!("{k}: {}", x.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n"),
        (_, Some(other)) => other.to_string(),
    }
}

/// The inputs that show `object` (its spec as JSON).
pub fn values_of(kind: ObjectKind, object: &Value) -> Values {
    let form = form(kind);
    let mut out = Values::default();
    for fld in form.fields {
        out.inputs.insert(
            fld.path.to_string(),
            to_text(fld.kind, lookup(object, fld.path)),
        );
    }
    for t in form.tables {
        let rows = object
            .get(t.path)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, row) in rows.iter().enumerate() {
            for c in t.columns {
                out.inputs.insert(
                    format!("{}[{i}].{}", t.path, c.path),
                    to_text(c.kind, lookup(row, c.path)),
                );
            }
        }
        out.rows.insert(t.path, rows.len());
    }
    out
}

fn set_path(obj: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            obj.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let child = obj
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = child {
                set_path(m, rest, v);
            }
        }
    }
}

/// Turns one input into JSON: `Ok(None)` leaves the field out, `Err` is a message for the field.
fn parse_input(kind: Kind, text: &str) -> Result<Option<Value>, String> {
    let t = text.trim();
    match kind {
        Kind::Text => Ok(Some(Value::String(t.to_string()))),
        Kind::OptText | Kind::Select(_) | Kind::Block | Kind::Flag if t.is_empty() => Ok(None),
        Kind::Flag => match t {
            "true" => Ok(Some(Value::Bool(true))),
            "false" => Ok(Some(Value::Bool(false))),
            _ => Err("choose true or false".to_string()),
        },
        Kind::Block => Ok(Some(Value::String(format!("{t}\n")))),
        Kind::OptText => Ok(Some(Value::String(t.to_string()))),
        Kind::Select(options) => {
            if options.contains(&t) {
                Ok(Some(Value::String(t.to_string())))
            } else {
                Err(format!("choose one of {}", options.join(", ")))
            }
        }
        Kind::Number if t.is_empty() => Ok(None),
        Kind::Number => t
            .parse::<u64>()
            .map(|n| Some(Value::from(n)))
            .map_err(|_| format!("{t:?} is not a whole number")),
        Kind::Lines => {
            let items: Vec<Value> = t
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| Value::String(l.to_string()))
                .collect();
            Ok((!items.is_empty()).then_some(Value::Array(items)))
        }
        Kind::Pairs => {
            let mut map = Map::new();
            for line in t.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let Some((k, v)) = line.split_once(':') else {
                    return Err(format!("{line:?} is not \"Name: value\""));
                };
                map.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
            Ok((!map.is_empty()).then_some(Value::Object(map)))
        }
    }
}

/// A submitted form: what the operator typed (kept rows renumbered, so that error paths match
/// the re-rendered inputs), the object JSON built from it, and the errors found on the way.
#[derive(Debug)]
pub struct Parsed {
    pub values: Values,
    pub json: Value,
    pub errors: BTreeMap<String, Vec<String>>,
}

/// Parses submitted pairs. A table row whose text inputs are all empty, or whose `remove` box
/// is ticked, is dropped.
pub fn parse(kind: ObjectKind, pairs: &[(String, String)]) -> Parsed {
    let form = form(kind);
    let submitted: HashMap<&str, &str> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut values = Values::default();
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut obj = Map::new();
    for fld in form.fields {
        let text = submitted.get(fld.path).copied().unwrap_or("");
        values.inputs.insert(fld.path.to_string(), text.to_string());
        match parse_input(fld.kind, text) {
            Ok(Some(v)) => set_path(&mut obj, fld.path, v),
            Ok(None) => {}
            Err(e) => errors.entry(fld.path.to_string()).or_default().push(e),
        }
    }
    for t in form.tables {
        let mut rows = Vec::new();
        // Rows are numbered densely from 0 by the renderer; read until none is left.
        for i in 0.. {
            let prefix = format!("{}[{i}].", t.path);
            if !submitted.keys().any(|k| k.starts_with(&prefix)) {
                break;
            }
            let removed = submitted.contains_key(format!("{prefix}remove").as_str());
            let texts: Vec<&str> = t
                .columns
                .iter()
                .map(|c| {
                    submitted
                        .get(format!("{prefix}{}", c.path).as_str())
                        .copied()
                        .unwrap_or("")
                })
                .collect();
            let blank = t
                .columns
                .iter()
                .zip(&texts)
                .all(|(c, x)| matches!(c.kind, Kind::Select(_)) || x.trim().is_empty());
            if removed || blank {
                continue;
            }
            let j = rows.len();
            let mut row = Map::new();
            for (c, text) in t.columns.iter().zip(texts) {
                let name = format!("{}[{j}].{}", t.path, c.path);
                values.inputs.insert(name.clone(), text.to_string());
                match parse_input(c.kind, text) {
                    Ok(Some(v)) => set_path(&mut row, c.path, v),
                    Ok(None) => {}
                    Err(e) => errors.entry(name).or_default().push(e),
                }
            }
            rows.push(Value::Object(row));
        }
        values.rows.insert(t.path, rows.len());
        obj.insert(t.path.to_string(), Value::Array(rows));
    }
    Parsed {
        values,
        json: Value::Object(obj),
        errors,
    }
}

/// Files a validation error of the whole config under the input it concerns: `prefix` is the
/// object's place in the config (`pools[3]`). Errors elsewhere in the config (another object
/// that now refers to nothing, say) keep their full path.
pub fn relative_path(path: &str, prefix: &str) -> String {
    match path.strip_prefix(prefix) {
        Some("") => String::new(),
        Some(rest) => match rest.strip_prefix('.') {
            Some(inner) => inner.to_string(),
            // `pools[30]` is not inside `pools[3]`.
            None => path.to_string(),
        },
        None => path.to_string(),
    }
}

/// Text safe in an element or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An input's id: its name with only characters that are safe in an id.
fn id_of(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("f-{cleaned}")
}

fn errors_html(errors: Option<&Vec<String>>, id: &str) -> String {
    match errors {
        Some(list) if !list.is_empty() => format!(
            "<span class=\"field-error\" id=\"{id}-err\" role=\"alert\">{}</span>",
            list.iter().map(|e| esc(e)).collect::<Vec<_>>().join("; ")
        ),
        _ => String::new(),
    }
}

fn input_html(
    kind: Kind,
    name: &str,
    value: &str,
    label: Option<&str>,
    readonly: bool,
    err: bool,
) -> String {
    let id = id_of(name);
    let name_e = esc(name);
    let aria = if err {
        format!(" aria-invalid=\"true\" aria-describedby=\"{id}-err\"")
    } else {
        String::new()
    };
    let aria_label = label
        .map(|l| format!(" aria-label=\"{}\"", esc(l)))
        .unwrap_or_default();
    let ro = if readonly { " readonly" } else { "" };
    match kind {
        Kind::Select(_) | Kind::Flag => {
            let options: &[&str] = match kind {
                Kind::Select(o) => o,
                _ => &["false", "true"],
            };
            let mut html = format!("<select id=\"{id}\" name=\"{name_e}\"{aria}{aria_label}>");
            if value.is_empty() || !options.contains(&value) {
                // Empty: the default applies; anything else was typed by hand and is kept.
                html.push_str(&format!(
                    "<option value=\"{}\" selected>{}</option>",
                    esc(value),
                    if value.is_empty() {
                        "(default)".to_string()
                    } else {
                        esc(value)
                    }
                ));
            }
            for o in options {
                let sel = if *o == value { " selected" } else { "" };
                html.push_str(&format!("<option{sel}>{}</option>", esc(o)));
            }
            html.push_str("</select>");
            html
        }
        Kind::Lines | Kind::Pairs | Kind::Block => format!(
            "<textarea id=\"{id}\" name=\"{name_e}\" rows=\"3\"{aria}{aria_label}{ro}>{}</textarea>",
            esc(value)
        ),
        Kind::Number => format!(
            "<input id=\"{id}\" name=\"{name_e}\" value=\"{}\" inputmode=\"numeric\"{aria}{aria_label}{ro}>",
            esc(value)
        ),
        Kind::Text | Kind::OptText => format!(
            "<input id=\"{id}\" name=\"{name_e}\" value=\"{}\"{aria}{aria_label}{ro}>",
            esc(value)
        ),
    }
}

/// The form's inputs as HTML (inside a `<form>` the page provides). `lock_name` makes the name
/// read-only: an object is renamed by creating a new one.
pub fn render(
    kind: ObjectKind,
    values: &Values,
    errors: &BTreeMap<String, Vec<String>>,
    lock_name: bool,
) -> String {
    let form = form(kind);
    let mut html = String::from("<div class=\"fields\">");
    for fld in form.fields {
        let id = id_of(fld.path);
        let errs = errors.get(fld.path);
        let has_err = errs.is_some_and(|e| !e.is_empty());
        let readonly = lock_name && fld.path == "name";
        html.push_str(&format!(
            "<div class=\"field{}\"><label for=\"{id}\">{}</label>{}{}{}</div>",
            if has_err { " has-error" } else { "" },
            esc(fld.label),
            input_html(
                fld.kind,
                fld.path,
                values.get(fld.path),
                None,
                readonly,
                has_err
            ),
            if fld.help.is_empty() {
                String::new()
            } else {
                format!("<small>{}</small>", esc(fld.help))
            },
            errors_html(errs, &id),
        ));
    }
    html.push_str("</div>");
    for t in form.tables {
        let rows = values.rows.get(t.path).copied().unwrap_or(0);
        html.push_str(&format!(
            "<fieldset class=\"rows\"><legend>{}</legend><div class=\"table-wrap\"><table><thead><tr>",
            esc(t.label)
        ));
        for c in t.columns {
            html.push_str(&format!("<th scope=\"col\">{}</th>", esc(c.label)));
        }
        html.push_str("<th scope=\"col\">Remove</th></tr></thead><tbody>");
        // Every existing row, then one blank row to add an element.
        for i in 0..=rows {
            html.push_str("<tr>");
            for c in t.columns {
                let name = format!("{}[{i}].{}", t.path, c.path);
                let errs = errors.get(&name);
                let has_err = errs.is_some_and(|e| !e.is_empty());
                let label = if i == rows {
                    format!("New {} {}", t.label.to_lowercase(), c.label.to_lowercase())
                } else {
                    format!("{} {} {}", t.label, i + 1, c.label.to_lowercase())
                };
                html.push_str(&format!(
                    "<td{}>{}{}</td>",
                    if has_err { " class=\"has-error\"" } else { "" },
                    input_html(
                        c.kind,
                        &name,
                        values.get(&name),
                        Some(&label),
                        false,
                        has_err
                    ),
                    errors_html(errs, &id_of(&name)),
                ));
            }
            if i < rows {
                let name = format!("{}[{i}].remove", t.path);
                html.push_str(&format!(
                    "<td><input type=\"checkbox\" id=\"{}\" name=\"{}\" value=\"1\" aria-label=\"Remove {} {}\"></td>",
                    id_of(&name),
                    esc(&name),
                    esc(&t.label.to_lowercase()),
                    i + 1
                ));
            } else {
                html.push_str("<td><small>new</small></td>");
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table></div></fieldset>");
    }
    html
}

/// Every input name the form has for `values` (to tell errors beside a field from the rest).
pub fn input_names(kind: ObjectKind, values: &Values) -> Vec<String> {
    let form = form(kind);
    let mut names: Vec<String> = form.fields.iter().map(|f| f.path.to_string()).collect();
    for t in form.tables {
        let rows = values.rows.get(t.path).copied().unwrap_or(0);
        for i in 0..rows {
            for c in t.columns {
                names.push(format!("{}[{i}].{}", t.path, c.path));
            }
        }
    }
    names
}

#[cfg(test)]
#[path = "forms_tests.rs"]
mod tests;
