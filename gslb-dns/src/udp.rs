//! UDP serving: one thread per socket, the sockets sharing the port with `SO_REUSEPORT` so the
//! kernel spreads clients over them. Each thread answers from the fast path when it can
//! ([`crate::fast`]) and otherwise hands the packet to the same [`Handler`] TCP uses, on the
//! tokio runtime, capturing the response it would send.
//!
//! Datagrams are taken and answered in batches (`recvmmsg` and `sendmmsg`, through nix): one
//! wake-up and two system calls for up to [`BATCH`] queries that arrived together, where
//! `recv_from`/`send_to` paid a context switch and two calls for each. The threads block with
//! a short timeout, so they notice shutdown.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{MessageType, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tracing::warn;

use crate::fast::{self, Fast};
use crate::handler::Handler;
use crate::rrl::Verdict;

/// How often a blocked thread looks up to see whether it should stop.
const POLL: Duration = Duration::from_millis(250);

/// Datagrams taken (and answered) per system call at most.
const BATCH: usize = 32;

/// Room for one query: more than any EDNS payload a resolver offers (4096 at most in
/// practice). A longer datagram arrives cut (`MSG_TRUNC`) and is dropped.
const SLOT: usize = 4096;

pub(crate) fn spawn(
    sockets: Vec<UdpSocket>,
    handler: Arc<Handler>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(POLL))?;
        let (handler, runtime, stop) = (handler.clone(), runtime.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || serve(&socket, &handler, &runtime, &stop))?,
        );
    }
    Ok(threads)
}

fn serve(
    socket: &UdpSocket,
    handler: &Handler,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    use nix::sys::socket::{
        recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
    };
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    let fd = socket.as_raw_fd();
    let mut slots = vec![0u8; BATCH * SLOT];
    // Per slot: its datagram's length and sender; `None` for one dropped (cut short, or from
    // no IP address), so slot `i` stays datagram `i`.
    let mut received: Vec<Option<(usize, SocketAddr)>> = Vec::with_capacity(BATCH);
    let mut replies: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(4096)).collect();
    let mut to: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    while !stop.load(Ordering::Relaxed) {
        received.clear();
        {
            let mut chunks = slots.chunks_exact_mut(SLOT);
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
            // Blocks (up to the socket's read timeout) for the first datagram, then takes what
            // else is queued without waiting.
            match recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(msgs) => {
                    received.extend(msgs.map(|msg| {
                        let src = msg.address.as_ref().and_then(socket_addr)?;
                        (!msg.flags.contains(MsgFlags::MSG_TRUNC)).then_some((msg.bytes, src))
                    }));
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    // ICMP errors from earlier sends surface here (ECONNREFUSED): keep serving.
                    tracing::debug!(error = %e, "dns udp receive");
                    continue;
                }
            }
        }
        to.clear();
        for (i, &(n, src)) in received
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
        {
            let packet = &slots[i * SLOT..i * SLOT + n];
            let out = &mut replies[to.len()];
            let answered = match fast_path(handler, packet, src, out) {
                Some(()) => true,
                None => {
                    out.clear();
                    slow_path(handler, runtime, packet, src, out)
                }
            };
            // An empty reply is a response-rate limit drop.
            if answered && !out.is_empty() {
                to.push(Some(SockaddrStorage::from(src)));
            }
        }
        if to.is_empty() {
            continue;
        }
        let sent = {
            let iovs: [[IoSlice<'_>; 1]; BATCH] =
                std::array::from_fn(|i| [IoSlice::new(replies.get(i).map_or(&[][..], |r| r))]);
            let none: [ControlMessage<'_>; 0] = [];
            let batch = iovs[..to.len()].iter();
            match sendmmsg(
                fd,
                &mut send_headers,
                batch,
                &to[..],
                none,
                MsgFlags::empty(),
            ) {
                Ok(results) => results.count(),
                Err(e) => {
                    tracing::debug!(error = %e, "dns udp send");
                    0
                }
            }
        };
        // Whatever the batch call did not take goes one by one (a full send buffer, say).
        for (reply, addr) in replies.iter().zip(&to).skip(sent) {
            if let Some(dst) = addr.as_ref().and_then(socket_addr) {
                if let Err(e) = socket.send_to(reply, dst) {
                    tracing::debug!(error = %e, peer = %dst, "dns udp send");
                }
            }
        }
    }
}

/// The std form of a socket address nix filled in; `None` for a family other than IP.
fn socket_addr(addr: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(std::net::SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
}

/// `Some` when `out` holds the answer, or the response-rate limit said to drop it (then `out`
/// is empty); `None` for the slow path.
fn fast_path(handler: &Handler, packet: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> Option<()> {
    let q = fast::parse(packet)?;
    let snapshot = handler.snapshot.load();
    // Response-rate limiting counts only what this path answers; the slow path counts its own.
    let found = snapshot.fast_entry(&q)?;
    if let Some(limit) = snapshot.rrl() {
        match handler.rates.check(limit, src.ip()) {
            Verdict::Answer => {}
            Verdict::Drop => {
                handler.metrics.rate_limited("dropped");
                out.clear();
                return Some(());
            }
            Verdict::Slip => {
                handler.metrics.rate_limited("slipped");
                fast::truncated(packet, &q, out);
                return Some(());
            }
        }
    }
    match found.answer(packet, &q, src.ip(), &*handler.health, out) {
        Fast::Answer(rcode) => {
            handler.metrics.record_response(rcode, Protocol::Udp);
            Some(())
        }
        Fast::Slow => None,
    }
}

/// Hickory's parser and our handler, as for TCP; `true` when `out` holds a response.
fn slow_path(
    handler: &Handler,
    runtime: &tokio::runtime::Handle,
    packet: &[u8],
    src: SocketAddr,
    out: &mut Vec<u8>,
) -> bool {
    // Under 12 bytes there is no header to answer; responses are never answered (no
    // reflection loops between servers).
    let Some(header) = packet.get(..12) else {
        return false;
    };
    if header[2] & 0x80 != 0 {
        return false;
    }
    let request = match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
        Ok(r) => r,
        Err(_) => {
            // The header is there but the rest does not parse: FORMERR, as hickory's own
            // server answers.
            formerr(packet, out);
            handler
                .metrics
                .record_response(ResponseCode::FormErr, Protocol::Udp);
            return true;
        }
    };
    if request.metadata.message_type == MessageType::Response {
        return false;
    }
    let max = request
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().clamp(512, 1232));
    let capture = Capture::new(max);
    runtime.block_on(handler.handle_request::<_, TokioTime>(&request, capture.clone()));
    match capture.take() {
        Some(bytes) => {
            *out = bytes;
            true
        }
        None => false,
    }
}

/// A FORMERR with the query's ID and opcode, no sections.
fn formerr(packet: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&packet[..2]);
    // QR, the query's opcode and RD; rcode 1.
    out.push(0x80 | (packet[2] & 0x79));
    out.push(0x01);
    out.extend_from_slice(&[0; 8]);
}

/// Captures the encoded response the handler sends, encoded as hickory's UDP path would
/// (truncated to the client's payload size, TC set).
#[derive(Clone)]
pub(crate) struct Capture {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    max: u16,
}

impl Capture {
    /// Encodes what is sent to it into at most `max` bytes.
    pub(crate) fn new(max: u16) -> Capture {
        Capture {
            out: Arc::default(),
            max,
        }
    }

    /// The response sent, if one was.
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        self.out.lock().ok().and_then(|mut slot| slot.take())
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(self.max);
        let info = response.destructive_emit(&mut encoder)?;
        match self.out.lock() {
            Ok(mut slot) => *slot = Some(buf),
            Err(e) => warn!(error = %e, "dns response capture poisoned"),
        }
        Ok(info)
    }
}
