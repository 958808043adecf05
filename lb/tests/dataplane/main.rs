//! The data plane over real sockets: real listeners, real upstreams, real clients.

mod changes;
mod errors;
mod harness;
mod protocols;
mod server;
mod strict;
