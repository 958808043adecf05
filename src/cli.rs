//! The command line: every subcommand and its flags, documented for `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Meridian: a global application delivery controller.
///
/// One binary runs the appliance (Raft-replicated config, GSLB DNS, HTTP load balancer, web
/// console, REST API, Prometheus metrics) and is also the CLI that manages it through the API.
#[derive(Debug, Parser)]
#[command(name = "meridian", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a complete single-node appliance on loopback with two demo backends ("east" and
    /// "west"), a proxy listener, a GSLB zone and the console. Prints what to try.
    Demo(DemoArgs),
    /// Run the appliance daemon from a node config file (what systemd runs).
    Serve {
        /// Node config file (TOML): node id, data dir, admin/cluster/DNS bind addresses.
        #[arg(long, short = 'c', default_value = "/etc/meridian/meridian.toml")]
        config: PathBuf,
        /// Join the cluster a member of which serves cluster RPC at this `host:port` (instead
        /// of the node config's `join`).
        #[arg(long)]
        join: Option<String>,
        /// The join token from `meridian cluster token` (instead of the node config's
        /// `join_token`).
        #[arg(
            long,
            env = "MERIDIAN_JOIN_TOKEN",
            hide_env_values = true,
            requires = "join"
        )]
        token: Option<String>,
    },
    /// Read, validate or apply the cluster configuration through the REST API.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage TLS certificates in the credential store.
    #[command(subcommand)]
    Cert(CertCommand),
    /// The response cache: this node's status, and purges every node applies.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Set the admin state of a pool member: enabled, disabled or draining (no new requests;
    /// requests in flight finish).
    Member {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        pool: String,
        /// The member's ip:port.
        #[arg(long)]
        address: String,
        #[arg(value_enum)]
        state: AdminStateArg,
    },
    /// DNS: how this node answers a query, and why.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Set the admin state of a GSLB site: enabled, disabled (forced down: no answers, not
    /// probed), draining (no new answers) or force-up (answered whatever its checks say).
    Site {
        #[command(flatten)]
        api: ApiArgs,
        /// The GSLB record, e.g. app.gslb.example.
        #[arg(long)]
        record: String,
        #[arg(long)]
        site: String,
        #[arg(value_enum)]
        state: AdminStateArg,
    },
    /// The Raft cluster: every member's state, and removing a member.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Write a backup of the cluster (admin): the config, users and tokens, certificates and
    /// TSIG keys, keys still sealed with the cluster key. Consistent: taken after everything
    /// committed before it.
    Backup {
        #[command(flatten)]
        api: ApiArgs,
        /// The file to write (mode 0600).
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Seed a new cluster from a backup, on its first node: an empty data dir, no `join`, and
    /// `cluster_secret_file` set to the old cluster's secret (the sealed keys open only with
    /// it). Exits when done; then run `meridian serve` with the same config.
    Restore {
        /// Node config file of the new cluster's first node.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The backup `meridian backup` wrote.
        #[arg(long)]
        from: PathBuf,
    },
    /// Show the node's revision, Raft state, listeners and health.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Each member's role, Raft state, term, commit and applied index, replication lag and
    /// last contact with the leader (asked of every member by the node the API runs on).
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Issue a single-use join token (admin). A new node joins with `meridian serve --join
    /// MEMBER --token TOKEN`; the token also names the cluster CA the member must present.
    Token {
        #[command(flatten)]
        api: ApiArgs,
        /// How long the token is valid, in seconds (at most a week).
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: u64,
    },
    /// The join tokens issued: id, expiry, and the node that used each.
    Tokens {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Take a node out of the cluster: demoted to a learner, then removed. Refused, with the
    /// reason, when it is the only voter or the voters left would not have a quorum. Stop the
    /// node's process afterwards.
    Remove {
        #[command(flatten)]
        api: ApiArgs,
        /// The node id to remove.
        node_id: u64,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder that keeps the demo's state; a second run on it keeps the config.
    #[arg(long, default_value = "meridian-demo-data")]
    pub data_dir: PathBuf,
    /// Console and API address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: std::net::SocketAddr,
    /// Authoritative DNS address (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:8053")]
    pub dns: std::net::SocketAddr,
    /// Proxy listener address (HTTP/1.1 and HTTP/2).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub proxy: std::net::SocketAddr,
    /// HTTPS listener address (a certificate for the demo names is generated at first start).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub https: std::net::SocketAddr,
    /// TCP (L4) listener address, balancing over the same two backends.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub tcp: std::net::SocketAddr,
    /// Raft RPC address.
    #[arg(long, default_value = "127.0.0.1:9700")]
    pub cluster: std::net::SocketAddr,
    /// Port of the two demo backends, on 127.0.0.2 ("east") and 127.0.0.3 ("west").
    #[arg(long, default_value_t = 18080)]
    pub backend_port: u16,
}

/// Where the API is and how to authenticate.
#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Base URL of the node's API.
    #[arg(long, env = "MERIDIAN_API", default_value = "http://127.0.0.1:9090")]
    pub api: String,
    /// API bearer token (create one with `meridian token create`).
    #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Extra CA or self-signed certificate (PEM) to trust for an https:// API, such as the
    /// node's generated `<data_dir>/admin-tls/cert.pem`.
    #[arg(long, env = "MERIDIAN_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the current cluster config (JSON or TOML); the revision goes to stderr.
    Get {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long, value_enum, default_value = "toml")]
        format: Format,
    },
    /// Replace the cluster config with a file (JSON or TOML). Every error is listed; nothing is
    /// applied unless the whole file is valid.
    Apply {
        #[command(flatten)]
        api: ApiArgs,
        /// The config file.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Only apply if the cluster is still at this revision (`config get` prints it).
        #[arg(long, conflicts_with = "force")]
        if_match: Option<u64>,
        /// Apply whatever revision the cluster is at, overwriting changes made since you read
        /// it. One of --if-match or --force is required.
        #[arg(long)]
        force: bool,
    },
    /// Check a config file offline, without a running node.
    Validate {
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// The node's tiers, each caching route's hit ratio, the most-hit keys.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove cached responses on every node: one key (host/path?query), every key under a
    /// prefix, or every response with a tag. Exit status 1 when a key matches nothing on the
    /// node asked.
    Purge {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long, group = "what", required = true)]
        key: Option<String>,
        #[arg(long, group = "what")]
        prefix: Option<String>,
        #[arg(long, group = "what")]
        tag: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// List the certificates (names, subjects, expiry, where used; never keys).
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Import a certificate and its key, or replace (rotate) one of the same name. Every
    /// problem is listed; nothing changes on error.
    Import {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        name: String,
        /// PEM file: the certificate, then its intermediates.
        #[arg(long)]
        cert: PathBuf,
        /// PEM file: the private key. Omit it to attach the signed certificate of a key
        /// generated on the appliance.
        #[arg(long)]
        key: Option<PathBuf>,
        /// PEM file: the CA the chain must lead to.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AdminStateArg {
    Enabled,
    Disabled,
    Draining,
    /// GSLB sites only.
    ForceUp,
}

impl AdminStateArg {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminStateArg::Enabled => "enabled",
            AdminStateArg::Disabled => "disabled",
            AdminStateArg::Draining => "draining",
            AdminStateArg::ForceUp => "force_up",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Replace (or add) zone NAME with a zone file in RFC 1035 master format: SOA, apex NS,
    /// A, AAAA, CNAME, MX, TXT, NS (delegations), SRV, CAA, PTR. Every problem is listed;
    /// nothing is applied unless all is valid.
    Import {
        #[command(flatten)]
        api: ApiArgs,
        /// The zone, e.g. example.com.
        name: String,
        /// The zone file.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Only apply if the cluster is still at this revision.
        #[arg(long, conflicts_with = "force")]
        if_match: Option<u64>,
        /// Apply whatever revision the cluster is at. One of --if-match or --force is required.
        #[arg(long)]
        force: bool,
    },
    /// The answer this node gives NAME, the GSLB decision behind it step by step (health,
    /// steering, policy), each site's health as every live node sees it, and the ECS scope.
    Explain {
        #[command(flatten)]
        api: ApiArgs,
        name: String,
        /// The record type.
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// The resolver's address (steers when there is no --ecs).
        #[arg(long)]
        client: Option<String>,
        /// An EDNS Client Subnet, e.g. 198.51.100.0/24.
        #[arg(long)]
        ecs: Option<String>,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// TSIG keys that zone transfers to secondaries and NOTIFY are signed with.
    #[command(subcommand)]
    Tsig(TsigCommand),
}

#[derive(Debug, Subcommand)]
pub enum TsigCommand {
    /// List the keys (names, algorithms, the zones that use them; never secrets).
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Store a key. With --generate a new secret is made here and printed once, as a BIND/Knot
    /// key clause to give the secondaries; the API never shows it again.
    Add {
        #[command(flatten)]
        api: ApiArgs,
        /// The key's name, e.g. xfr.example.com.
        name: String,
        /// hmac-sha256, hmac-sha384 or hmac-sha512.
        #[arg(long, default_value = "hmac-sha256")]
        algorithm: String,
        /// A file holding the secret in base64 (as tsig-keygen or keymgr print it).
        #[arg(
            long,
            conflicts_with = "generate",
            required_unless_present = "generate"
        )]
        secret_file: Option<PathBuf>,
        /// Make a new random secret.
        #[arg(long)]
        generate: bool,
    },
    /// Delete a key no zone uses.
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        name: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Json,
    Toml,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token, authenticating with a user's password (read from
    /// MERIDIAN_PASSWORD or standard input). The token is printed once.
    Create {
        #[arg(long, env = "MERIDIAN_API", default_value = "http://127.0.0.1:9090")]
        api: String,
        #[arg(long, default_value = "admin")]
        user: String,
        /// A label for the token.
        #[arg(long, default_value = "cli")]
        name: String,
        /// What the token may do, at most the user's role: admin, operator or viewer.
        #[arg(long)]
        role: Option<String>,
        /// Days until the token expires; never when absent.
        #[arg(long)]
        expires_days: Option<u32>,
        /// Extra CA or self-signed certificate (PEM) to trust for an https:// API.
        #[arg(long, env = "MERIDIAN_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Serve {
            config,
            join,
            token,
        } => crate::node::serve(&config, join, token).await,
        Command::Config(c) => crate::client::config(c).await,
        Command::Token(t) => crate::client::token(t).await,
        Command::Cert(c) => crate::client::cert(c).await,
        Command::Cache(c) => crate::client::cache(c).await,
        Command::Status { api } => crate::client::status(api).await,
        Command::Cluster(cmd) => crate::client::cluster(cmd).await,
        Command::Backup { api, out } => crate::client::backup(api, &out).await,
        Command::Restore { config, from } => crate::node::restore(&config, &from).await,
        Command::Member {
            api,
            pool,
            address,
            state,
        } => {
            let path = format!(
                "/pools/{}/members/{}/state",
                crate::client::seg(&pool),
                crate::client::seg(&address)
            );
            crate::client::set_state(api, path, state).await
        }
        Command::Dns(cmd) => crate::client::dns(cmd).await,
        Command::Site {
            api,
            record,
            site,
            state,
        } => {
            let path = format!(
                "/gslb_records/{}/sites/{}/state",
                crate::client::seg(&record),
                crate::client::seg(&site)
            );
            crate::client::set_state(api, path, state).await
        }
    }
}
