//! TCP (L4) proxying: a client connection is joined to one healthy pool member, with the pool's
//! balancing, connect timeout and retries, an optional PROXY protocol header, half-close in each
//! direction, and the listener's idle timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use model::ProxyProtocolVersion;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::listener::io::ListenerIo;
use crate::snapshot::{ListenerLimits, PoolSnapshot};

/// Serves one TCP client until either side closes, the connection idles out, or the listener's
/// drain timeout cuts it off (the caller's cut-off signal): bytes have no request boundary at
/// which to stop early, so a draining TCP connection simply runs until then.
pub async fn serve(
    io: ListenerIo,
    client: SocketAddr,
    bind: SocketAddr,
    pool: Arc<PoolSnapshot>,
    limits: ListenerLimits,
) {
    let mut chosen = None;
    let mut candidates = pool.candidates();
    for _ in 0..=pool.retries {
        let Some(i) = candidates.next() else {
            break;
        };
        let Some(member) = pool.members.get(i) else {
            break;
        };
        match tokio::time::timeout(pool.connect_timeout, TcpStream::connect(member.addr)).await {
            Ok(Ok(s)) => {
                chosen = Some((s, member));
                break;
            }
            Ok(Err(e)) => {
                member.metrics.connect_failures.inc();
                tracing::debug!(member = %member.addr, error = %e, "tcp connect failed");
            }
            Err(_) => {
                member.metrics.connect_failures.inc();
                tracing::debug!(member = %member.addr, "tcp connect timed out");
            }
        }
    }
    let Some((mut upstream, member)) = chosen else {
        tracing::debug!(pool = %pool.name, %client, "no member took the connection");
        return;
    };
    pool.metrics.connections.inc();
    let _ = upstream.set_nodelay(true);
    let header = match pool.proxy_protocol {
        ProxyProtocolVersion::Off => None,
        ProxyProtocolVersion::V1 => Some(crate::proxy_protocol::encode_v1(client, bind)),
        ProxyProtocolVersion::V2 => Some(crate::proxy_protocol::encode_v2(client, bind)),
    };
    if let Some(h) = header {
        if upstream.write_all(&h).await.is_err() {
            return;
        }
    }
    member.metrics.active.inc();
    let started = Instant::now();
    let result = join(io, upstream, limits.idle_timeout).await;
    member.metrics.active.dec();
    member
        .metrics
        .count(http::StatusCode::OK, started.elapsed());
    if let Err(e) = result {
        tracing::debug!(%client, member = %member.addr, error = %e, "tcp connection ended");
    }
}

/// Copies both ways until both directions have ended; an end of stream on one side is passed on
/// as a half-close (shutdown of the other side's write half). Ends early after `idle` without a
/// byte in either direction.
pub async fn join<A, B>(a: A, b: B, idle: Duration) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let copying = async {
        tokio::try_join!(
            one_way(&mut ar, &mut bw, &last, start),
            one_way(&mut br, &mut aw, &last, start)
        )
    };
    let idle_watch = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let deadline = start + since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        r = copying => r.map(|_| ()),
        () = idle_watch => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout")),
    }
}

async fn one_way<R, W>(
    r: &mut R,
    w: &mut W,
    last: &AtomicU64,
    start: Instant,
) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        total += n as u64;
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn bytes_flow_both_ways_and_half_close_is_passed_on() {
        let (client, proxy_side_a) = duplex(1024);
        let (proxy_side_b, upstream) = duplex(1024);
        let proxy = tokio::spawn(join(proxy_side_a, proxy_side_b, Duration::from_secs(5)));
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut ur, mut uw) = tokio::io::split(upstream);
        cw.write_all(b"ping").await.expect("write");
        cw.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        ur.read_to_end(&mut got)
            .await
            .expect("upstream reads to EOF");
        assert_eq!(got, b"ping");
        // The other direction still works after the client's half-close.
        uw.write_all(b"pong").await.expect("write");
        uw.shutdown().await.expect("close");
        let mut back = Vec::new();
        cr.read_to_end(&mut back)
            .await
            .expect("client reads to EOF");
        assert_eq!(back, b"pong");
        proxy.await.expect("task").expect("clean end");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let (_client, a) = duplex(64);
        let (b, _upstream) = duplex(64);
        let started = tokio::time::Instant::now();
        let r = join(a, b, Duration::from_secs(30)).await;
        assert_eq!(
            r.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::TimedOut)
        );
        assert!(started.elapsed() >= Duration::from_secs(30));
    }
}
