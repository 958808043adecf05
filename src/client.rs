//! The CLI side of the REST API: `config get|apply|validate`, `token create`, `status`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use reqwest::StatusCode;

use crate::cli::{
    ApiArgs, CacheCommand, CertCommand, ConfigCommand, DnsCommand, Format, TokenCommand,
};

/// An HTTP client that also trusts `ca_cert` when given.
fn http_client(ca_cert: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read CA certificate {}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder.build()?)
}

fn url(api: &str, path: &str) -> String {
    format!("{}/api/v1{path}", api.trim_end_matches('/'))
}

fn authed(req: reqwest::RequestBuilder, api: &ApiArgs) -> anyhow::Result<reqwest::RequestBuilder> {
    let token = api
        .token
        .as_deref()
        .context("no API token: pass --token or set MERIDIAN_TOKEN (create one with `meridian token create`)")?;
    // The history and audit log say the change came through the CLI.
    Ok(req.bearer_auth(token).header("x-meridian-client", "cli"))
}

/// Percent-encodes one path segment.
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `meridian member` and `meridian site`: PUT `{"state": ...}` to `path`.
pub async fn set_state(
    api: ApiArgs,
    path: String,
    state: crate::cli::AdminStateArg,
) -> anyhow::Result<ExitCode> {
    let http = http_client(api.ca_cert.as_deref())?;
    let resp = authed(http.put(url(&api.api, &path)), &api)?
        .json(&serde_json::json!({ "state": state.as_str() }))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", api.api))?;
    if resp.status() != StatusCode::OK {
        return Ok(report_error(resp).await);
    }
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    println!("{}: revision {}", state.as_str(), v["revision"]);
    Ok(ExitCode::SUCCESS)
}

/// Prints an API error body in a readable way; returns the exit code to use.
async fn report_error(resp: reqwest::Response) -> ExitCode {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let msg = body
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or("request failed");
    eprintln!("error: {status}: {msg}");
    if let Some(errors) = body.get("errors").and_then(|e| e.as_array()) {
        for e in errors {
            let path = e.get("path").and_then(|p| p.as_str()).unwrap_or("");
            let m = e.get("message").and_then(|p| p.as_str()).unwrap_or("");
            eprintln!(
                "  {}: {m}",
                if path.is_empty() { "(document)" } else { path }
            );
        }
    }
    ExitCode::FAILURE
}

pub async fn config(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Get { api, format } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let resp = authed(http.get(url(&api.api, "/config")), &api)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            let revision = resp
                .headers()
                .get("x-meridian-revision")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            let spec: model::ConfigSpec = resp.json().await.context("unexpected API answer")?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&spec)?),
                Format::Toml => print!("{}", toml::to_string(&spec)?),
            }
            eprintln!("revision {revision}");
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Apply {
            api,
            file,
            if_match,
            force,
        } => {
            let Some(precondition) = precondition(if_match, force) else {
                return Ok(ExitCode::FAILURE);
            };
            let http = http_client(api.ca_cert.as_deref())?;
            let body =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let req = authed(http.put(url(&api.api, "/config")), &api)?
                .header("if-match", precondition)
                .body(body);
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if resp.status() != StatusCode::OK {
                return Ok(report_error(resp).await);
            }
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            println!("applied: revision {}", v["revision"]);
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Validate { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let result = model::parse::from_any::<model::ConfigSpec>(&bytes)
                .and_then(|spec| model::validate(&spec).map(|_| ()));
            match result {
                Ok(()) => {
                    println!("{}: valid", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {} error(s)", file.display(), e.errors.len());
                    for err in e.errors {
                        eprintln!("  {}: {}", err.path, err.message);
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

pub async fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Create {
        api,
        user,
        name,
        role,
        expires_days,
        ca_cert,
    } = cmd;
    let password = match std::env::var("MERIDIAN_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprint!("password for {user}: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    let resp = http_client(ca_cert.as_deref())?
        .post(url(&api, "/tokens"))
        .basic_auth(&user, Some(password))
        .json(&serde_json::json!({ "name": name, "role": role, "expires_days": expires_days }))
        .send()
        .await
        .with_context(|| format!("cannot reach {api}"))?;
    if resp.status() != StatusCode::CREATED {
        return Ok(report_error(resp).await);
    }
    let v: serde_json::Value = resp.json().await?;
    match v.get("token").and_then(|t| t.as_str()) {
        Some(t) => {
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("the API answered without a token"),
    }
}

pub async fn status(api: ApiArgs) -> anyhow::Result<ExitCode> {
    let http = http_client(api.ca_cert.as_deref())?;
    let resp = authed(http.get(url(&api.api, "/status")), &api)?
        .send()
        .await
        .with_context(|| format!("cannot reach {}", api.api))?;
    if !resp.status().is_success() {
        return Ok(report_error(resp).await);
    }
    let v: serde_json::Value = resp.json().await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn cluster(cmd: crate::cli::ClusterCommand) -> anyhow::Result<ExitCode> {
    use crate::cli::ClusterCommand;
    match cmd {
        ClusterCommand::Status { api, json } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let resp = authed(http.get(url(&api.api, "/cluster")), &api)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            let v: serde_json::Value = resp.json().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            print!("{}", cluster_table(&v));
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Token { api, ttl_seconds } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let resp = authed(http.post(url(&api.api, "/cluster/join-tokens")), &api)?
                .json(&serde_json::json!({ "ttl_seconds": ttl_seconds }))
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            let v: serde_json::Value = resp.json().await?;
            let token = v["token"].as_str().unwrap_or_default();
            eprintln!(
                "join token {} (single use, valid {ttl_seconds} s); on the new node:\n  meridian serve --config NODE.toml --join <a member's cluster address> --token <the token>",
                v["id"].as_str().unwrap_or("?")
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Tokens { api } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let resp = authed(http.get(url(&api.api, "/cluster/join-tokens")), &api)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            let tokens: Vec<serde_json::Value> = resp.json().await?;
            println!(
                "{:<18} {:<8} {:<12} {:<26} USED BY",
                "ID", "STATE", "ISSUED BY", "EXPIRES (UNIX MS)"
            );
            for t in tokens {
                println!(
                    "{:<18} {:<8} {:<12} {:<26} {}",
                    t["id"].as_str().unwrap_or("?"),
                    t["state"].as_str().unwrap_or("?"),
                    t["created_by"].as_str().unwrap_or("?"),
                    t["expires_unix_ms"].as_u64().unwrap_or(0),
                    t["used_by_node"]
                        .as_u64()
                        .map_or_else(|| "-".to_string(), |n| format!("node {n}"))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Remove { api, node_id } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let path = format!("/cluster/nodes/{node_id}");
            let resp = authed(http.delete(url(&api.api, &path)), &api)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            eprintln!("removed node {node_id} from the cluster; stop its process now");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `meridian cluster status` as a table, from the API's JSON.
fn cluster_table(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let num = |m: &serde_json::Value, k: &str| {
        m[k].as_u64()
            .map_or_else(|| "-".to_string(), |n| n.to_string())
    };
    let mut out = format!(
        "{:<5} {:<22} {:<8} {:<10} {:>6} {:>8} {:>8} {:>6} {:>9}\n",
        "NODE", "ADDRESS", "ROLE", "STATE", "TERM", "COMMIT", "APPLIED", "LAG", "CONTACT"
    );
    for m in v["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let state = m["state"]
            .as_str()
            .or_else(|| m["error"].as_str())
            .unwrap_or("-");
        let contact = m["last_contact_ms"].as_u64().map_or_else(
            || "-".to_string(),
            |ms| format!("{:.1}s", ms as f64 / 1000.0),
        );
        let _ = writeln!(
            out,
            "{:<5} {:<22} {:<8} {:<10} {:>6} {:>8} {:>8} {:>6} {:>9}",
            num(m, "node_id"),
            m["address"].as_str().unwrap_or("?"),
            m["role"].as_str().unwrap_or("?"),
            state,
            num(m, "term"),
            num(m, "commit_index"),
            num(m, "last_applied"),
            num(m, "lag"),
            contact
        );
    }
    out
}

pub async fn backup(api: ApiArgs, out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let http = http_client(api.ca_cert.as_deref())?;
    let resp = authed(http.get(url(&api.api, "/backup")), &api)?
        .send()
        .await
        .with_context(|| format!("cannot reach {}", api.api))?;
    if !resp.status().is_success() {
        return Ok(report_error(resp).await);
    }
    let bytes = resp.bytes().await?;
    let backup: model::records::Backup =
        serde_json::from_slice(&bytes).context("the API answered something not a backup")?;
    crate::node::write_private_file(out, &bytes)?;
    eprintln!(
        "wrote {} (revision {}, {} users, {} certificates, {} TSIG keys; keys sealed with the cluster key)",
        out.display(),
        backup.revision,
        backup.auth.users.len(),
        backup.certificates.len(),
        backup.tsig_keys.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn dns(cmd: DnsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DnsCommand::Explain {
            api,
            name,
            qtype,
            client,
            ecs,
            json,
        } => dns_explain(api, name, qtype, client, ecs, json).await,
        DnsCommand::Import {
            api,
            name,
            file,
            if_match,
            force,
        } => dns_import(api, name, file, if_match, force).await,
        DnsCommand::Tsig(cmd) => tsig(cmd).await,
    }
}

async fn tsig(cmd: crate::cli::TsigCommand) -> anyhow::Result<ExitCode> {
    use crate::cli::TsigCommand;
    match cmd {
        TsigCommand::List { api } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let resp = authed(http.get(url(&api.api, "/dns/tsig-keys")), &api)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            let keys: Vec<serde_json::Value> = resp.json().await?;
            println!("{:<32} {:<12} USED BY", "NAME", "ALGORITHM");
            for k in keys {
                let used: Vec<&str> = k["used_by"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                println!(
                    "{:<32} {:<12} {}",
                    k["name"].as_str().unwrap_or("?"),
                    k["algorithm"].as_str().unwrap_or("?"),
                    if used.is_empty() {
                        "-".to_string()
                    } else {
                        used.join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TsigCommand::Add {
            api,
            name,
            algorithm,
            secret_file,
            generate,
        } => {
            let secret = match (&secret_file, generate) {
                (Some(path), _) => zeroize::Zeroizing::new(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .trim()
                        .to_string(),
                ),
                (None, _) => {
                    let alg = model::records::TsigAlgorithm::parse(&algorithm).unwrap_or_default();
                    credentials::new_tsig_secret(alg)
                        .map_err(|e| anyhow::anyhow!("cannot make a secret: {e}"))?
                }
            };
            let http = http_client(api.ca_cert.as_deref())?;
            let body = serde_json::json!({
                "name": name,
                "algorithm": algorithm,
                "secret": secret.as_str(),
            });
            let resp = authed(http.post(url(&api.api, "/dns/tsig-keys")), &api)?
                .json(&body)
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            let written: serde_json::Value = resp.json().await?;
            let stored = written["name"].as_str().unwrap_or(&name).to_string();
            eprintln!("stored TSIG key {stored} ({algorithm})");
            if generate {
                // The one time the secret is shown: the clause secondaries take.
                println!(
                    "key \"{}\" {{\n\talgorithm {algorithm};\n\tsecret \"{}\";\n}};",
                    stored.trim_end_matches('.'),
                    secret.as_str()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TsigCommand::Delete { api, name } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let path = format!("/dns/tsig-keys/{name}");
            let resp = authed(http.delete(url(&api.api, &path)), &api)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            eprintln!("deleted TSIG key {name}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn dns_explain(
    api: ApiArgs,
    name: String,
    qtype: String,
    client: Option<String>,
    ecs: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let http = http_client(api.ca_cert.as_deref())?;
    let mut query = vec![("name", name), ("type", qtype)];
    query.extend(client.map(|c| ("client", c)));
    query.extend(ecs.map(|e| ("ecs", e)));
    let resp = authed(http.get(url(&api.api, "/dns/explain")), &api)?
        .query(&query)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", api.api))?;
    if !resp.status().is_success() {
        return Ok(report_error(resp).await);
    }
    let explained: webui::DnsExplanation = resp.json().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&explained)?);
    } else {
        print!("{}", crate::explain::render(&explained));
    }
    Ok(ExitCode::SUCCESS)
}

async fn dns_import(
    api: ApiArgs,
    name: String,
    file: std::path::PathBuf,
    if_match: Option<u64>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let Some(precondition) = precondition(if_match, force) else {
        return Ok(ExitCode::FAILURE);
    };
    let body = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let http = http_client(api.ca_cert.as_deref())?;
    let path = format!("/zones/{}/file", seg(&name));
    let resp = authed(http.put(url(&api.api, &path)), &api)?
        .header("if-match", precondition)
        .header("content-type", "text/dns")
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", api.api))?;
    if resp.status() != StatusCode::OK {
        return Ok(report_error(resp).await);
    }
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    println!("imported {name}: revision {}", v["revision"]);
    Ok(ExitCode::SUCCESS)
}

/// The `If-Match` a write sends: `--if-match N` or `--force`; `None` (after saying why) when
/// neither was given, so that a blind overwrite is always deliberate.
fn precondition(if_match: Option<u64>, force: bool) -> Option<String> {
    match (if_match, force) {
        (Some(rev), _) => Some(format!("\"{rev}\"")),
        (None, true) => Some("*".to_string()),
        (None, false) => {
            eprintln!(
                "error: pass --if-match <revision> (from `meridian config get`) to apply \
                 only if nobody changed the config since, or --force to overwrite"
            );
            None
        }
    }
}

pub async fn cache(cmd: CacheCommand) -> anyhow::Result<ExitCode> {
    let (api, req) = match cmd {
        CacheCommand::Status { api } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let req = authed(http.get(url(&api.api, "/cache")), &api)?;
            (api, req)
        }
        CacheCommand::Purge {
            api,
            key,
            prefix,
            tag,
        } => {
            let body = match (key, prefix, tag) {
                (Some(k), _, _) => serde_json::json!({ "key": k }),
                (_, Some(p), _) => serde_json::json!({ "prefix": p }),
                (_, _, Some(t)) => serde_json::json!({ "tag": t }),
                _ => {
                    eprintln!("error: name what to purge: --key, --prefix or --tag");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let http = http_client(api.ca_cert.as_deref())?;
            let req = authed(http.post(url(&api.api, "/cache/purge")), &api)?.json(&body);
            (api, req)
        }
    };
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {}", api.api))?;
    if !resp.status().is_success() {
        return Ok(report_error(resp).await);
    }
    let v: serde_json::Value = resp.json().await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn cert(cmd: CertCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CertCommand::List { api } => {
            let http = http_client(api.ca_cert.as_deref())?;
            let resp = authed(http.get(url(&api.api, "/certificates")), &api)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            let v: serde_json::Value = resp.json().await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::Import {
            api,
            name,
            cert,
            key,
            ca,
        } => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let cert_pem = read(&cert)?;
            let key_pem = key.as_deref().map(read).transpose()?;
            let ca_pem = ca.as_deref().map(read).transpose()?;
            let http = http_client(api.ca_cert.as_deref())?;
            // An existing name is replaced (rotation); a new one is imported.
            let exists = authed(
                http.get(url(&api.api, &format!("/certificates/{}", seg(&name)))),
                &api,
            )?
            .send()
            .await
            .with_context(|| format!("cannot reach {}", api.api))?
            .status()
                == StatusCode::OK;
            let req = if exists {
                authed(
                    http.put(url(&api.api, &format!("/certificates/{}", seg(&name)))),
                    &api,
                )?
                .header("if-match", "*")
                .json(&serde_json::json!({"cert_pem": cert_pem, "key_pem": key_pem, "ca_pem": ca_pem}))
            } else {
                let Some(key_pem) = key_pem else {
                    eprintln!("error: {name} is new: pass --key with its private key");
                    return Ok(ExitCode::FAILURE);
                };
                authed(http.post(url(&api.api, "/certificates")), &api)?.json(
                    &serde_json::json!({"name": name, "cert_pem": cert_pem, "key_pem": key_pem, "ca_pem": ca_pem}),
                )
            };
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.api))?;
            if !resp.status().is_success() {
                return Ok(report_error(resp).await);
            }
            println!(
                "{} certificate {name}",
                if exists { "replaced" } else { "imported" }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
