//! `meridian`: the appliance binary. Parses the command line and hands off; the wiring lives in
//! `node`, the demo in `demo`, the API client in `client`.

mod admin_tls;
mod backend;
mod certs;
mod cli;
mod client;
mod cluster_tls;
mod demo;
mod explain;
mod geoip;
mod global_limits;
mod node;
mod node_config;
mod site_health;
mod tickets;

use clap::Parser;

/// mimalloc: the proxy and DNS paths allocate per request, and glibc malloc showed up at about
/// 14 % of proxy samples in `perf record` (see perf/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("meridian")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
