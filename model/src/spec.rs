//! The serialized form of the cluster configuration: the one shape used by files, the API and the
//! Raft log. Everything here is plain data; `validate` turns it into the typed model.
//!
//! Unknown fields are refused by [`crate::parse`], which lists every one of them with its path,
//! rather than by `deny_unknown_fields`, which would stop at the first.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The only `api_version` this build understands.
pub const API_VERSION: &str = "meridian/v1";

/// The whole replicated configuration document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigSpec {
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheckSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gslb_records: Vec<GslbRecordSpec>,
    /// The GSLB topology: client networks by region, and where each region is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionSpec>,
    /// DNS server settings (response-rate limiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSpec>,
    /// How long the replicated audit log keeps entries (default 90 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_retention_days: Option<u32>,
    /// Certificates that expire within this many days raise an alarm (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry_alarm_days: Option<u32>,
    /// The cluster makes a new TLS session-ticket key this often (default 6 hours) and keeps
    /// the two before it, so tickets are honoured for at least twice this long on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ticket_rotation_hours: Option<u32>,
}

impl Default for ConfigSpec {
    fn default() -> Self {
        ConfigSpec {
            api_version: API_VERSION.to_string(),
            listeners: Vec::new(),
            routes: Vec::new(),
            pools: Vec::new(),
            health_checks: Vec::new(),
            zones: Vec::new(),
            gslb_records: Vec::new(),
            regions: Vec::new(),
            dns: None,
            audit_retention_days: None,
            certificate_expiry_alarm_days: None,
            session_ticket_rotation_hours: None,
        }
    }
}

/// A proxy listener: where clients connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListenerSpec {
    pub name: String,
    /// `ip:port` to bind.
    pub bind: String,
    #[serde(default)]
    #[schema(default = ListenerProtocol::default)]
    pub protocol: ListenerProtocol,
    /// `tcp` listeners only: the pool every connection is proxied to. HTTP listeners route with
    /// `routes` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Largest request head (request line plus headers) in bytes; a larger one gets 431.
    #[serde(default = "default_max_request_head_bytes")]
    #[schema(default = default_max_request_head_bytes)]
    pub max_request_head_bytes: u32,
    /// Longest request target in bytes; a longer one gets 414.
    #[serde(default = "default_max_request_line_bytes")]
    #[schema(default = default_max_request_line_bytes)]
    pub max_request_line_bytes: u32,
    /// How long a client may take to send a whole request head, in milliseconds. On HTTP/1.1
    /// this also bounds a keep-alive connection's wait for its next request.
    #[serde(default = "default_header_timeout_ms")]
    #[schema(default = default_header_timeout_ms)]
    pub header_timeout_ms: u64,
    /// How long a TCP listener's connection may go without a byte in either direction, in
    /// milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    #[schema(default = default_idle_timeout_ms)]
    pub idle_timeout_ms: u64,
    /// How long connections may take to finish when the listener goes away or the node stops,
    /// in milliseconds.
    #[serde(default = "default_drain_timeout_ms")]
    #[schema(default = default_drain_timeout_ms)]
    pub drain_timeout_ms: u64,
    /// Source networks (CIDR) whose connections must start with a PROXY protocol v1/v2 header
    /// naming the real client. Connections from anywhere else are taken as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_protocol_from: Vec<String>,
    /// TLS termination (HTTP listeners): the listener speaks HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<ListenerTlsSpec>>,
    /// TLS passthrough (TCP listeners): the ClientHello's SNI picks the pool, and the TLS
    /// bytes go through untouched; `pool` takes the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_routes: Vec<SniRouteSpec>,
    /// Bandwidth shaping, each direction on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
}

/// Bytes per second allowed each way (client to Meridian, Meridian to client), smoothed over
/// about 20 ms so a shaped flow is steady rather than bursty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct BandwidthSpec {
    /// For each connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_connection_bytes_per_second: Option<u64>,
    /// For all the listener's connections together, on each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_bytes_per_second: Option<u64>,
}

/// One SNI route of a passthrough listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct SniRouteSpec {
    /// `app.example.com`, or `*.example.com` for one label below it.
    pub server_name: String,
    pub pool: String,
}

/// How an HTTPS listener terminates TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListenerTlsSpec {
    /// Certificates from the credential store, by name. A client's SNI picks the one whose
    /// names match (exact before wildcard); the first is the default.
    pub certificates: Vec<String>,
    /// Served when no certificate matches the SNI (or there is none), unless `unknown_sni` is
    /// `refuse`; the first certificate when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_certificate: Option<String>,
    #[serde(default)]
    #[schema(default = UnknownSni::default)]
    pub unknown_sni: UnknownSni,
    /// The oldest TLS version accepted.
    #[serde(default)]
    #[schema(default = TlsVersion::default)]
    pub min_version: TlsVersion,
    /// Kernel TLS for the record layer after the handshake: `auto` where the kernel supports
    /// the negotiated suite, `on` (a node without kernel TLS refuses the config), `off`.
    #[serde(default)]
    #[schema(default = KtlsMode::default)]
    pub ktls: KtlsMode,
    /// A handshake that has not finished by then is cut.
    #[serde(default = "default_handshake_timeout_ms")]
    #[schema(default = default_handshake_timeout_ms)]
    pub handshake_timeout_ms: u64,
    /// Client certificates (mutual TLS from clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthSpec>,
}

/// Client certificates on an HTTPS listener: verified against a CA bundle, and what they say
/// passed upstream in headers (which clients can never set themselves: the listener removes
/// them from every request first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct ClientAuthSpec {
    #[serde(default)]
    #[schema(default = ClientAuthMode::default)]
    pub mode: ClientAuthMode,
    /// PEM: the CA certificates client certificates must chain to.
    pub ca_pem: String,
    /// Carries the verified certificate's subject upstream.
    #[serde(default = "default_subject_header")]
    #[schema(default = default_subject_header)]
    pub subject_header: String,
    /// Carries its subject alternative names upstream, comma separated.
    #[serde(default = "default_sans_header")]
    #[schema(default = default_sans_header)]
    pub sans_header: String,
}

fn default_subject_header() -> String {
    "x-client-cert-subject".into()
}

fn default_sans_header() -> String {
    "x-client-cert-sans".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// A client without a certificate is served (without the headers); a bad one is refused.
    Optional,
    /// A client without a valid certificate is refused at the handshake.
    #[default]
    Required,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

/// What an HTTPS listener does with a client whose SNI matches none of its certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSni {
    /// Serve the default certificate.
    #[default]
    Default,
    /// Refuse the handshake (an `unrecognized_name` alert).
    Refuse,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KtlsMode {
    #[default]
    Auto,
    On,
    Off,
}

impl Default for ListenerSpec {
    fn default() -> Self {
        ListenerSpec {
            name: String::new(),
            bind: String::new(),
            protocol: ListenerProtocol::default(),
            pool: None,
            max_request_head_bytes: default_max_request_head_bytes(),
            max_request_line_bytes: default_max_request_line_bytes(),
            header_timeout_ms: default_header_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            drain_timeout_ms: default_drain_timeout_ms(),
            proxy_protocol_from: Vec::new(),
            tls: None,
            sni_routes: Vec::new(),
            bandwidth: None,
        }
    }
}

fn default_max_request_head_bytes() -> u32 {
    32 * 1024
}
fn default_max_request_line_bytes() -> u32 {
    8 * 1024
}
fn default_header_timeout_ms() -> u64 {
    15_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_drain_timeout_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// HTTP/1.1 and HTTP/2 (prior knowledge) on the same port, routed by `routes`.
    #[default]
    Http,
    /// Bytes proxied to `pool`, with the pool's balancing and health.
    Tcp,
}

/// Host plus path prefix on a listener, sending to a pool. The optional filters run in a fixed
/// order: redirect, request headers, path rewrite, then (on the answer) response headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteSpec {
    pub name: String,
    pub listener: String,
    /// Exact host (`app.example.com`), a leading wildcard (`*.example.com`), or absent for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default = "default_path_prefix")]
    #[schema(default = default_path_prefix)]
    pub path_prefix: String,
    pub pool: String,
    /// Answer with a redirect instead of proxying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Box<RedirectSpec>>,
    /// Header edits on the request sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<Box<HeaderEditSpec>>,
    /// Header edits on the response sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<Box<HeaderEditSpec>>,
    /// Replaces the matched `path_prefix` with this before the request goes upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_prefix: Option<String>,
    /// Compresses responses for clients that accept it (and optionally decompresses request
    /// bodies on their way upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Box<CompressionSpec>>,
    /// A request-rate limit (GCRA) per client, subnet, header, cookie or for the whole route,
    /// with an optional concurrency limit per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Box<RateLimitSpec>>,
    /// Who may use the route (client networks) and how (methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Box<AccessSpec>>,
    /// Shared caching of responses (RFC 9111) in the node's memory and disk tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Box<CacheSpec>>,
}

/// Response caching on a route. Freshness, validation and `Vary` follow RFC 9111; these
/// settings fill in what the upstream does not say and bound what is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheSpec {
    /// Freshness given to a response that states none (no `Cache-Control` max-age or s-maxage,
    /// no `Expires`); 0 keeps such responses only while they can be revalidated.
    #[serde(default)]
    pub default_ttl_seconds: u64,
    /// Larger responses are passed through and not stored.
    #[serde(default = "default_cache_max_object")]
    #[schema(default = default_cache_max_object)]
    pub max_object_bytes: u64,
    /// How long past freshness a stored response is served (`X-Cache: STALE`) while one
    /// background request refreshes it, when the response does not say
    /// (`stale-while-revalidate`).
    #[serde(default)]
    pub stale_while_revalidate_seconds: u64,
    /// How long past freshness a stored response is served when the upstream fails (an error,
    /// a timeout, a 5xx), when the response does not say (`stale-if-error`).
    #[serde(default)]
    pub stale_if_error_seconds: u64,
    #[serde(default)]
    #[schema(default = CacheKeySpec::default)]
    pub key: CacheKeySpec,
    /// Response header listing the response's tags (separated by spaces or commas), for purge
    /// by tag. It is removed from the response the client gets.
    #[serde(default = "default_tags_header")]
    #[schema(default = default_tags_header)]
    pub tags_header: String,
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            default_ttl_seconds: 0,
            max_object_bytes: default_cache_max_object(),
            stale_while_revalidate_seconds: 0,
            stale_if_error_seconds: 0,
            key: CacheKeySpec::default(),
            tags_header: default_tags_header(),
        }
    }
}

/// What makes two requests the same cache entry. Always the host and the path; the query as
/// configured; the values of the headers listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheKeySpec {
    /// Leave the query string out of the key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_query: bool,
    /// Only these query parameters, in this order, make up the key's query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<Vec<String>>,
    /// Request headers whose values are part of the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
}

fn default_cache_max_object() -> u64 {
    8 << 20
}

fn default_tags_header() -> String {
    "surrogate-key".to_string()
}

/// A request-rate limit: `requests` per `per` for each key, with `burst` requests at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct RateLimitSpec {
    pub requests: u32,
    #[serde(default)]
    #[schema(default = RatePer::default)]
    pub per: RatePer,
    /// Requests a key may make at once before the rate applies; `requests` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(default)]
    #[schema(default = RateKey::default)]
    pub key: RateKey,
    /// Over the limit: answer 429 with `Retry-After` (`reject`), or hold the request until it
    /// fits, up to `max_delay_ms` (`delay`; 429 beyond).
    #[serde(default)]
    #[schema(default = OverLimit::default)]
    pub over_limit: OverLimit,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_delay_ms: u64,
    /// Requests in flight per key (until their response starts); 429 beyond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// The rate holds across every appliance of the cluster, not on each: nodes split it by
    /// where each key's requests arrive and rebalance as the load shifts (concurrency limits
    /// stay per node).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RatePer {
    #[default]
    Second,
    Minute,
    Hour,
}

/// What a rate limit counts by. Requests without the header or cookie named are not limited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum RateKey {
    /// The client's address (after a trusted PROXY protocol header).
    #[default]
    ClientIp,
    /// The client's network: IPv4 addresses by `ipv4_prefix` bits, IPv6 by `ipv6_prefix`.
    Subnet {
        #[serde(default = "default_v4_prefix")]
        ipv4_prefix: u8,
        #[serde(default = "default_v6_prefix")]
        ipv6_prefix: u8,
    },
    /// A request header's value (an API key, say).
    Header { name: String },
    /// A cookie's value.
    Cookie { name: String },
    /// One budget for the whole route.
    Route,
}

fn default_v4_prefix() -> u8 {
    24
}

fn default_v6_prefix() -> u8 {
    64
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverLimit {
    #[default]
    Reject,
    Delay,
}

/// Access rules of a route: a client in `deny` is refused (403); when `allow` is set, only
/// clients in it pass; when `methods` is set, other methods get 405 with `Allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// Response compression on a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompressionSpec {
    /// The codecs offered, in the server's order of preference among those a client accepts
    /// with the same q-value.
    #[serde(default = "default_codecs")]
    #[schema(default = default_codecs)]
    pub codecs: Vec<Codec>,
    /// 1 (fastest) to 9 (smallest): gzip and deflate on zlib's scale (as nginx's
    /// `gzip_comp_level`), brotli's quality, zstd's level.
    #[serde(default = "default_compression_level")]
    #[schema(default = default_compression_level)]
    pub level: u32,
    /// Media types compressed: exact (`application/json`) or a whole type (`text/*`).
    #[serde(default = "default_compressible_types")]
    #[schema(default = default_compressible_types)]
    pub content_types: Vec<String>,
    /// Responses whose `Content-Length` is below this are sent as they are.
    #[serde(default = "default_min_compress_bytes")]
    #[schema(default = default_min_compress_bytes)]
    pub min_size_bytes: u64,
    /// When set, request bodies sent with `Content-Encoding` gzip, deflate, br or zstd are
    /// decompressed before they go upstream, up to this many bytes (413 beyond: zip bombs stop
    /// there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decompress_requests_max_bytes: Option<u64>,
}

impl Default for CompressionSpec {
    fn default() -> Self {
        CompressionSpec {
            codecs: default_codecs(),
            level: default_compression_level(),
            content_types: default_compressible_types(),
            min_size_bytes: default_min_compress_bytes(),
            decompress_requests_max_bytes: None,
        }
    }
}

/// A content coding (RFC 9110 section 8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Zstandard (RFC 8878).
    Zstd,
    /// Brotli (RFC 7932).
    Br,
    Gzip,
    /// The zlib format (RFC 1950), which HTTP calls deflate.
    Deflate,
}

impl Codec {
    pub const ALL: [Codec; 4] = [Codec::Zstd, Codec::Br, Codec::Gzip, Codec::Deflate];

    /// Its place in [`Codec::ALL`], for tables indexed by codec.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The codec a content-coding token names, in any case; `x-gzip` is gzip (RFC 9110
    /// section 8.4.1.3).
    pub fn from_token(token: &str) -> Option<Codec> {
        if token.eq_ignore_ascii_case("x-gzip") {
            return Some(Codec::Gzip);
        }
        Codec::ALL
            .into_iter()
            .find(|c| c.token().eq_ignore_ascii_case(token))
    }

    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Br => "br",
            Codec::Gzip => "gzip",
            Codec::Deflate => "deflate",
        }
    }
}

fn default_codecs() -> Vec<Codec> {
    vec![Codec::Zstd, Codec::Br, Codec::Gzip, Codec::Deflate]
}

fn default_compression_level() -> u32 {
    5
}

fn default_compressible_types() -> Vec<String> {
    [
        "text/*",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/wasm",
        "image/svg+xml",
    ]
    .map(String::from)
    .to_vec()
}

fn default_min_compress_bytes() -> u64 {
    1024
}

impl Default for RouteSpec {
    fn default() -> Self {
        RouteSpec {
            name: String::new(),
            listener: String::new(),
            host: None,
            path_prefix: default_path_prefix(),
            pool: String::new(),
            redirect: None,
            request_headers: None,
            response_headers: None,
            rewrite_prefix: None,
            compression: None,
            rate_limit: None,
            access: None,
            cache: None,
        }
    }
}

/// Header edits, applied in this order: `remove` deletes, `set` replaces, `add` appends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeaderEditSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub set: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub add: std::collections::BTreeMap<String, String>,
}

/// A redirect answer. Parts left out keep the request's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RedirectSpec {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Replaces the whole path (the query is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    #[schema(default = default_redirect_status)]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    302
}

fn default_path_prefix() -> String {
    "/".to_string()
}

/// A set of upstream members balanced round robin by weight, with its connection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolSpec {
    pub name: String,
    #[serde(default)]
    pub members: Vec<MemberSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
    /// Upper bound on one upstream exchange (connect plus response head), in milliseconds.
    #[serde(default = "default_upstream_timeout_ms")]
    #[schema(default = default_upstream_timeout_ms)]
    pub timeout_ms: u64,
    /// HTTP version spoken to the members: `http1` or `http2` (prior knowledge, multiplexed).
    #[serde(default)]
    #[schema(default = UpstreamProtocol::default)]
    pub protocol: UpstreamProtocol,
    #[serde(default = "default_connect_timeout_ms")]
    #[schema(default = default_connect_timeout_ms)]
    pub connect_timeout_ms: u64,
    /// How long an unused upstream connection is kept for reuse, in milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    #[schema(default = default_idle_timeout_ms)]
    pub idle_timeout_ms: u64,
    /// Idle connections kept per member (per data-plane worker thread).
    #[serde(default = "default_max_idle_per_member")]
    #[schema(default = default_max_idle_per_member)]
    pub max_idle_per_member: u32,
    /// Further members tried when connecting fails (nothing reached the upstream yet).
    #[serde(default = "default_retries")]
    #[schema(default = default_retries)]
    pub retries: u32,
    /// PROXY protocol header sent on each upstream connection (TCP listeners).
    #[serde(default)]
    #[schema(default = ProxyProtocolVersion::default)]
    pub proxy_protocol: ProxyProtocolVersion,
    /// TLS to the members (a mesh gateway, say); plaintext when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<PoolTlsSpec>>,
    /// Requests in flight to the whole pool on each node (until their response starts); more
    /// are answered 503 with `Retry-After` rather than piling onto the members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
}

/// TLS from Meridian to a pool's members, verified against the pool's own CA bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct PoolTlsSpec {
    /// PEM: the CA certificates the members' certificates must chain to.
    pub ca_pem: String,
    /// SNI sent and the name the member's certificate must carry; the member's IP address
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// A certificate from the credential store to present (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// SPIFFE IDs the members' certificates must carry as a URI SAN, as Istio and Linkerd
    /// gateways present (`spiffe://cluster.local/ns/istio-system/sa/ingressgateway`); a
    /// trailing `/*` accepts any ID under that path. When set, the ID is the members'
    /// identity and `server_name` is only sent as SNI, not checked against DNS names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spiffe_ids: Vec<String>,
}

impl Default for PoolSpec {
    fn default() -> Self {
        PoolSpec {
            name: String::new(),
            members: Vec::new(),
            health_check: None,
            timeout_ms: default_upstream_timeout_ms(),
            protocol: UpstreamProtocol::default(),
            connect_timeout_ms: default_connect_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_idle_per_member: default_max_idle_per_member(),
            retries: default_retries(),
            proxy_protocol: ProxyProtocolVersion::default(),
            tls: None,
            max_concurrent_requests: None,
        }
    }
}

fn default_upstream_timeout_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_max_idle_per_member() -> u32 {
    1024
}
fn default_retries() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolVersion {
    #[default]
    Off,
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberSpec {
    /// `ip:port` of the member.
    pub address: String,
    #[serde(default = "default_weight")]
    #[schema(default = default_weight)]
    pub weight: u32,
    /// Whether the member takes new requests; see [`AdminState`].
    #[serde(default, skip_serializing_if = "AdminState::is_enabled")]
    #[schema(default = AdminState::default)]
    pub state: AdminState,
}

/// An operator's say over a pool member or GSLB site, independent of its health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes traffic while healthy.
    #[default]
    Enabled,
    /// Takes no new requests or DNS answers and is not probed; requests in flight finish.
    Disabled,
    /// Takes no new requests or DNS answers; requests in flight finish and its idle upstream
    /// connections are closed. Still probed, so it can be enabled again knowing its health.
    Draining,
    /// GSLB sites only: answered as healthy whatever the health checks say (they still run,
    /// and the console shows what they see).
    #[serde(rename = "force_up")]
    ForceUp,
}

impl AdminState {
    pub fn is_enabled(&self) -> bool {
        *self == AdminState::Enabled
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Disabled => "disabled",
            AdminState::Draining => "draining",
            AdminState::ForceUp => "force_up",
        }
    }

    pub fn parse(s: &str) -> Option<AdminState> {
        [
            AdminState::Enabled,
            AdminState::Disabled,
            AdminState::Draining,
            AdminState::ForceUp,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

fn default_weight() -> u32 {
    1
}

/// An active HTTP health check, referenced by pools and GSLB sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheckSpec {
    pub name: String,
    #[serde(default = "default_check_path")]
    #[schema(default = default_check_path)]
    pub path: String,
    /// Host header to send; the target address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default = "default_interval_ms")]
    #[schema(default = default_interval_ms)]
    pub interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    #[schema(default = default_timeout_ms)]
    pub timeout_ms: u64,
    /// Consecutive successes that bring a target up.
    #[serde(default = "default_rise")]
    #[schema(default = default_rise)]
    pub rise: u32,
    /// Consecutive failures that take a target down.
    #[serde(default = "default_fall")]
    #[schema(default = default_fall)]
    pub fall: u32,
    #[serde(default = "default_expect_status")]
    #[schema(default = default_expect_status)]
    pub expect_status: u16,
    /// `http` (default): `GET path`, the status (and body) compared; `https`: the same over TLS;
    /// `tcp`: the connection alone.
    #[serde(default, skip_serializing_if = "CheckProtocol::is_http")]
    #[schema(default = CheckProtocol::default)]
    pub protocol: CheckProtocol,
    /// Text the response body must contain (its first 64 KiB are read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// PEM CA bundle an `https` check verifies the target's certificate against (the name is
    /// `host`, else the address). Without it the certificate is not verified, as F5's HTTPS
    /// monitor and HAProxy's `check-ssl verify none` do: a probe sends nothing secret and
    /// believes only a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// How a health check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckProtocol {
    #[default]
    Http,
    Https,
    Tcp,
}

impl CheckProtocol {
    fn is_http(&self) -> bool {
        *self == CheckProtocol::Http
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckProtocol::Http => "http",
            CheckProtocol::Https => "https",
            CheckProtocol::Tcp => "tcp",
        }
    }
}

fn default_check_path() -> String {
    "/".to_string()
}
fn default_interval_ms() -> u64 {
    2_000
}
fn default_timeout_ms() -> u64 {
    1_000
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_expect_status() -> u16 {
    200
}

/// An authoritative DNS zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZoneSpec {
    /// The zone apex, e.g. `example.com` (a trailing dot is optional).
    pub name: String,
    pub soa: SoaSpec,
    /// Name servers for the apex NS set.
    #[serde(default)]
    pub ns: Vec<String>,
    #[serde(default)]
    pub records: Vec<RecordSpec>,
    /// Secondary servers that may transfer the zone (AXFR/IXFR, TSIG-authenticated) and are
    /// sent NOTIFY when it changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondaries: Vec<SecondarySpec>,
}

/// A secondary server of a zone: the only kind of client a zone transfer is given to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecondarySpec {
    /// `IP` or `IP:port` (`[IPv6]:port`); the port NOTIFY is sent to, 53 when omitted. A
    /// transfer is served only to requests from this IP.
    pub address: String,
    /// The TSIG key (a name in the credential store, e.g. `xfr.example.com`) that must sign
    /// the secondary's requests; responses and NOTIFY are signed with it.
    pub tsig_key: String,
    /// Send NOTIFY to the secondary when the zone's serial changes.
    #[serde(default = "notify_default")]
    #[schema(default = true)]
    pub notify: bool,
}

fn notify_default() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SoaSpec {
    pub mname: String,
    /// Responsible mailbox in DNS form (`hostmaster.example.com`).
    pub rname: String,
    #[serde(default = "default_refresh")]
    #[schema(default = default_refresh)]
    pub refresh: u32,
    #[serde(default = "default_retry")]
    #[schema(default = default_retry)]
    pub retry: u32,
    #[serde(default = "default_expire")]
    #[schema(default = default_expire)]
    pub expire: u32,
    /// Negative-caching TTL.
    #[serde(default = "default_minimum")]
    #[schema(default = default_minimum)]
    pub minimum: u32,
    #[serde(default = "default_ttl")]
    #[schema(default = default_ttl)]
    pub ttl: u32,
}

fn default_refresh() -> u32 {
    3_600
}
fn default_retry() -> u32 {
    600
}
fn default_expire() -> u32 {
    604_800
}
fn default_minimum() -> u32 {
    60
}
fn default_ttl() -> u32 {
    300
}

/// One resource record. `name` is relative to the zone (`@` is the apex) or absolute with a
/// trailing dot. `value` is in presentation form: `192.0.2.1`, `10 mail.example.com.`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    #[serde(default = "default_ttl")]
    #[schema(default = default_ttl)]
    pub ttl: u32,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RecordType {
    A,
    AAAA,
    CNAME,
    TXT,
    MX,
    /// Below the apex: a delegation to a child zone's name servers (their addresses, if
    /// inside the child, go in as A/AAAA glue). The apex's name servers are the zone's `ns`.
    NS,
    /// `<priority> <weight> <port> <target>`.
    SRV,
    /// `<flags> <tag> <value>`, e.g. `0 issue "letsencrypt.org"`.
    CAA,
    PTR,
}

/// A GSLB name answered with the addresses of its healthy sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GslbRecordSpec {
    /// Fully qualified name inside one of the configured zones.
    pub name: String,
    #[serde(default = "default_gslb_ttl")]
    #[schema(default = default_gslb_ttl)]
    pub ttl: u32,
    #[serde(default)]
    pub sites: Vec<SiteSpec>,
    /// What to answer when no site is healthy.
    #[serde(default)]
    #[schema(default = AllDownPolicy::default)]
    pub when_all_down: AllDownPolicy,
    /// How the healthy sites become an answer.
    #[serde(default, skip_serializing_if = "GslbPolicy::is_all")]
    #[schema(default = GslbPolicy::default)]
    pub policy: GslbPolicy,
    /// At most this many addresses in an answer (every one the policy picks when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_answers: Option<u32>,
    /// The addresses answered when every site is down and `when_all_down = "fallback"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
    /// Which sites a client is steered to before `policy` picks among them.
    #[serde(default, skip_serializing_if = "Steer::is_none")]
    #[schema(default = Steer::default)]
    pub steer: Steer,
}

/// The first stage of a GSLB decision: which healthy sites are candidates for this client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Steer {
    /// Every healthy site.
    #[default]
    None,
    /// The healthy sites of the client's region (its subnet looked up in `regions`); when
    /// none is healthy, those of the regions it spills to, together; then every healthy site.
    Geo,
    /// The healthy sites nearest the client's region by great-circle distance (sites at the
    /// same spot together); the next nearest when those are down.
    Nearest,
}

impl Steer {
    pub fn is_none(&self) -> bool {
        *self == Steer::None
    }
}

/// DNS server settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DnsSpec {
    /// Response-rate limiting over UDP, per client subnet: a spoofed flood cannot turn the
    /// server into an amplifier aimed at a victim. On by default (1000 responses per second
    /// per /24 or /56); `responses_per_second = 0` turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<DnsRateLimitSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DnsRateLimitSpec {
    /// UDP responses per second to one client subnet; 0 turns the limit off.
    #[serde(default = "default_rrl_rate")]
    #[schema(default = default_rrl_rate)]
    pub responses_per_second: u32,
    /// Of the responses over the limit, every `slip`-th is sent truncated (TC, no records) so
    /// a real client retries over TCP; the rest are dropped. 0 drops them all.
    #[serde(default = "default_rrl_slip")]
    #[schema(default = default_rrl_slip)]
    pub slip: u32,
    /// Prefix lengths that make one client subnet.
    #[serde(default = "default_rrl_v4")]
    #[schema(default = default_rrl_v4)]
    pub ipv4_prefix: u8,
    #[serde(default = "default_rrl_v6")]
    #[schema(default = default_rrl_v6)]
    pub ipv6_prefix: u8,
}

impl Default for DnsRateLimitSpec {
    fn default() -> Self {
        DnsRateLimitSpec {
            responses_per_second: default_rrl_rate(),
            slip: default_rrl_slip(),
            ipv4_prefix: default_rrl_v4(),
            ipv6_prefix: default_rrl_v6(),
        }
    }
}

fn default_rrl_rate() -> u32 {
    1000
}
fn default_rrl_slip() -> u32 {
    2
}
fn default_rrl_v4() -> u8 {
    24
}
fn default_rrl_v6() -> u8 {
    56
}

/// A region of the GSLB topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegionSpec {
    pub name: String,
    /// Client networks (CIDR) in the region; the longest match across all regions wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Countries (ISO 3166-1 alpha-2, e.g. `US`) whose clients are in the region, as the
    /// node's GeoIP database (`geoip_database` in the node config) places them; used when no
    /// network matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Continents (`AF`, `AN`, `AS`, `EU`, `NA`, `OC`, `SA`), for clients whose country is in
    /// no region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continents: Vec<String>,
    /// `"latitude,longitude"` in degrees, for `steer = "nearest"` and the region's sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Regions whose sites take this region's clients, spread by the record's policy, when
    /// none of its own sites is healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spill_to: Vec<String>,
}

/// How a GSLB record's healthy sites become an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GslbPolicy {
    /// Every healthy site (multivalue; `max_answers` bounds it).
    #[default]
    All,
    /// The healthy sites of the best (lowest) priority; the next priority only when all of
    /// those are down.
    Failover,
    /// One healthy site per answer, in proportion to the sites' weights.
    Weighted,
    /// Every healthy site, the order rotating from one answer to the next.
    RoundRobin,
    /// One healthy site per client subnet (/24 for IPv4, /56 for IPv6) by weighted rendezvous
    /// hashing: a client keeps its site while it is healthy, and only the clients of a site
    /// that goes down move. Every node picks the same site.
    Persistent,
}

impl GslbPolicy {
    pub fn is_all(&self) -> bool {
        *self == GslbPolicy::All
    }
}

fn default_gslb_ttl() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllDownPolicy {
    /// Answer with no addresses (NODATA), so resolvers fail fast.
    #[default]
    Empty,
    /// Answer with every site, on the theory that health checks may be what failed.
    All,
    /// Answer with the record's `fallback` addresses (a sorry server, another provider).
    Fallback,
    /// Answer SERVFAIL, so resolvers try elsewhere and nothing is cached.
    Servfail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SiteSpec {
    pub name: String,
    /// The address handed out (IPv4 answers A queries, IPv6 answers AAAA). Empty when the site
    /// is a `cname`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Instead of an address, a host name the site is reached by (a cloud load balancer's,
    /// say): the answer is a CNAME to it, and the health check probes what it resolves to.
    /// The sites of one record are all addresses or all CNAMEs; a CNAME answer names one site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    /// Port the health check probes on `address` (or the `cname`).
    #[serde(default = "default_site_port")]
    #[schema(default = default_site_port)]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
    /// Whether the site is handed out in answers; see [`AdminState`].
    #[serde(default, skip_serializing_if = "AdminState::is_enabled")]
    #[schema(default = AdminState::default)]
    pub state: AdminState,
    /// For `policy = "failover"`: 1 is tried first, then 2, and so on.
    #[serde(default = "default_one", skip_serializing_if = "is_one")]
    #[schema(default = default_one)]
    pub priority: u32,
    /// For `policy = "weighted"`: the site's part of the answers.
    #[serde(default = "default_one", skip_serializing_if = "is_one")]
    #[schema(default = default_one)]
    pub weight: u32,
    /// The region (of `regions`) the site serves, for `steer = "geo"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `"latitude,longitude"`; the region's location when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The most answers per second the cluster hands this site out in. Past it the site is
    /// full: its candidates' load goes to the others (the record's other candidates, then any
    /// healthy site); when every one is full, they are all answered. Each node allows its share
    /// (the capacity over the live nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
}

fn default_one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

fn default_site_port() -> u16 {
    80
}
