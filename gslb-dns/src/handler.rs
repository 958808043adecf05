//! The hickory `RequestHandler`: turns one parsed request into one response from the current
//! snapshot, and counts it.
//!
//! hickory's `Catalog` is not used because it needs `&mut` to change zones; here the whole
//! compiled snapshot is swapped instead, and each request loads it exactly once.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet as EcsOption, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use model::HealthView;
use tracing::{debug, warn};

use crate::rrl::Verdict;
use crate::tsig::{Rejection, Signing, Verified};
use crate::{Answer, ClientSubnet, DnsMetrics, ZonesSnapshot};

/// The UDP payload size we advertise and cap responses at: the DNS Flag Day 2020 value, which
/// avoids IP fragmentation on common paths.
const MAX_UDP_PAYLOAD: u16 = 1232;

/// The highest EDNS version we speak.
const EDNS_VERSION: u8 = 0;

pub(crate) struct Handler {
    pub(crate) snapshot: Arc<ArcSwap<ZonesSnapshot>>,
    pub(crate) health: Arc<dyn HealthView>,
    pub(crate) metrics: DnsMetrics,
    /// Response-rate limiting's counters; they outlive revisions.
    pub(crate) rates: crate::rrl::RateTable,
    /// The TSIG keys of zone transfers.
    pub(crate) keys: crate::tsig::TsigKeyStore,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let snapshot = self.snapshot.load();
        if request.protocol() == Protocol::Udp {
            if let Some(limit) = snapshot.rrl() {
                match self.rates.check(limit, request.src().ip()) {
                    Verdict::Answer => {}
                    Verdict::Drop => {
                        self.metrics.rate_limited("dropped");
                        return failed(request);
                    }
                    Verdict::Slip => {
                        self.metrics.rate_limited("slipped");
                        return send_truncated(request, response_handle).await;
                    }
                }
            }
        }
        let info = self.respond(request, &snapshot, response_handle).await;
        self.metrics
            .record_response(info.response_code, request.protocol());
        info
    }
}

impl Handler {
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        snapshot: &ZonesSnapshot,
        handle: R,
    ) -> ResponseInfo {
        let response_edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns.set_version(EDNS_VERSION);
            edns
        });
        let edns = response_edns.as_ref();

        // A signed request gets a signed answer, or NOTAUTH saying what is wrong with it.
        let verified = match request.signature {
            None => Verified::Unsigned,
            Some(_) => crate::tsig::verify(request, &self.keys.load(), crate::tsig::now()),
        };
        let signing = match verified {
            Verified::Unsigned => None,
            Verified::Signed(signing) => Some(signing),
            Verified::Rejected(rejection) => {
                self.metrics.tsig_rejected(rejection.label());
                debug!(src = %request.src(), error = rejection.label(), "tsig rejected");
                return send_rejection(request, rejection, edns, handle).await;
            }
        };
        let sign = signing.as_ref();

        if request.edns.as_ref().map(Edns::version) > Some(EDNS_VERSION) {
            return send_error(request, ResponseCode::BADVERS, edns, sign, handle).await;
        }
        let ecs = match client_subnet(request.edns.as_ref()) {
            Ok(ecs) => ecs,
            Err(()) => return send_error(request, ResponseCode::FormErr, edns, sign, handle).await,
        };
        // hickory's server already drops responses (no reflection); this guards direct callers.
        if request.metadata.message_type != MessageType::Query {
            return send_error(request, ResponseCode::FormErr, edns, sign, handle).await;
        }
        // Dynamic updates are not taken: the configuration is the only way to change a zone.
        if request.metadata.op_code == OpCode::Update {
            return send_error(request, ResponseCode::Refused, edns, sign, handle).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return send_error(request, ResponseCode::NotImp, edns, sign, handle).await;
        }
        let [query] = request.queries.queries() else {
            return send_error(request, ResponseCode::FormErr, edns, sign, handle).await;
        };
        let question = query.original();
        // Only the Internet class is served; CHAOS `version.bind` and friends are refused.
        if question.query_class() != DNSClass::IN {
            return send_error(request, ResponseCode::Refused, edns, sign, handle).await;
        }
        if matches!(question.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return self
                .transfer(request, snapshot, question.query_type(), edns, sign, handle)
                .await;
        }

        // RFC 7871: a source prefix of 0 asks for an answer that does not depend on the client.
        let client = match &ecs {
            Some(option) if option.source_prefix() == 0 => None,
            Some(option) => Some(ClientSubnet {
                addr: option.addr(),
                prefix: option.source_prefix(),
            }),
            None => Some(ClientSubnet::host(request.src().ip())),
        };
        let mut answer = snapshot.lookup_for(
            question.name(),
            question.query_type(),
            &*self.health,
            client.as_ref(),
        );
        if question.query_type() == RecordType::ANY && request.protocol() == Protocol::Udp {
            minimal_any(&mut answer);
        }
        debug!(
            name = %question.name(),
            qtype = %question.query_type(),
            rcode = %answer.rcode,
            revision = snapshot.revision(),
            "dns answer"
        );
        // The option is echoed with the query's family, prefix and address, and the scope the
        // answer actually used.
        let mut response_edns = response_edns;
        if let (Some(edns), Some(option)) = (response_edns.as_mut(), ecs) {
            let echo = EcsOption::new(option.addr(), option.source_prefix(), answer.ecs_scope);
            edns.options_mut().insert(EdnsOption::Subnet(echo));
        }
        send_answer(request, &answer, response_edns.as_ref(), sign, handle).await
    }

    /// AXFR and IXFR of a zone with secondaries, to one of them, signed with its key. Anything
    /// else is REFUSED (NOTAUTH for a name that is no zone of ours).
    async fn transfer<R: ResponseHandler>(
        &self,
        request: &Request,
        snapshot: &ZonesSnapshot,
        qtype: RecordType,
        edns: Option<&Edns>,
        sign: Option<&Signing>,
        mut handle: R,
    ) -> ResponseInfo {
        let kind = if qtype == RecordType::AXFR {
            "axfr"
        } else {
            "ixfr"
        };
        let Some(query) = request.queries.queries().first() else {
            return send_error(request, ResponseCode::FormErr, edns, sign, handle).await;
        };
        let zone_name = LowerName::new(query.original().name());
        let zone = snapshot.transfer(&zone_name);
        let granted = zone
            .zip(sign)
            .filter(|(zone, signing)| zone.allows(request.src().ip(), &signing.key()));
        let Some((zone, signing)) = granted else {
            self.metrics.transfer(kind, "refused");
            let rcode = if zone.is_some() || snapshot.is_apex(&zone_name) {
                ResponseCode::Refused
            } else {
                ResponseCode::NotAuth
            };
            // Anyone can ask: the log says so at most every 10 s; the metric counts them all.
            if REFUSAL_LOG.due() {
                warn!(
                    src = %request.src(),
                    zone = %zone_name,
                    kind,
                    signed = sign.is_some(),
                    "zone transfer refused: not a secondary of the zone with its TSIG key \
                     (further refusals for 10 s only in meridian_dns_transfers_total)"
                );
            }
            return send_error(request, rcode, edns, sign, handle).await;
        };
        let (records, outcome) = match qtype {
            // RFC 5936 §4.2: AXFR is a TCP exchange.
            RecordType::AXFR if request.protocol() == Protocol::Udp => {
                self.metrics.transfer(kind, "refused");
                return send_error(request, ResponseCode::Refused, edns, sign, handle).await;
            }
            RecordType::AXFR => (zone.axfr(), "full"),
            _ => {
                let Some(serial) = crate::xfr::requested_serial(&request.authorities) else {
                    self.metrics.transfer(kind, "refused");
                    return send_error(request, ResponseCode::FormErr, edns, sign, handle).await;
                };
                let (records, outcome) = zone.ixfr(serial);
                // Over UDP the current SOA alone tells the secondary to come back over TCP
                // (RFC 1995 §2) unless it is up to date.
                if request.protocol() == Protocol::Udp && outcome != "current" {
                    (vec![zone.soa()], "udp-soa")
                } else {
                    (records, outcome)
                }
            }
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let mut prior: Option<Vec<u8>> = None;
        let mut info = None;
        for part in crate::xfr::messages(&records) {
            let build = || {
                MessageResponseBuilder::new(&request.queries, edns).build(
                    metadata,
                    part.iter().copied(),
                    std::iter::empty(),
                    std::iter::empty(),
                    std::iter::empty(),
                )
            };
            match send_built(&mut handle, Some((signing, prior.as_deref())), build).await {
                Ok((sent, mac)) => {
                    info.get_or_insert(sent);
                    prior = mac;
                }
                Err(error) => {
                    warn!(%error, zone = %zone_name, "zone transfer failed");
                    self.metrics.transfer(kind, "failed");
                    return failed(request);
                }
            }
        }
        self.metrics.transfer(kind, outcome);
        debug!(src = %request.src(), zone = %zone_name, kind, outcome, records = records.len(), "zone transfer");
        info.unwrap_or_else(|| failed(request))
    }
}

static REFUSAL_LOG: model::LogThrottle = model::LogThrottle::new();

/// Sends the response `build` makes. With `sign`, signed: as the first message answering the
/// request, or chained to the prior message's MAC. Returns the MAC it carries.
async fn send_built<'q, 'a, R, A, B, C, D>(
    handle: &mut R,
    sign: Option<(&Signing, Option<&[u8]>)>,
    build: impl Fn() -> MessageResponse<'q, 'a, A, B, C, D>,
) -> Result<(ResponseInfo, Option<Vec<u8>>), String>
where
    R: ResponseHandler,
    A: Iterator<Item = &'a Record> + Send + 'a,
    B: Iterator<Item = &'a Record> + Send + 'a,
    C: Iterator<Item = &'a Record> + Send + 'a,
    D: Iterator<Item = &'a Record> + Send + 'a,
{
    let mut response = build();
    let mut mac = None;
    if let Some((signing, prior)) = sign {
        let mut unsigned = Vec::with_capacity(512);
        build()
            .destructive_emit(&mut BinEncoder::new(&mut unsigned))
            .map_err(|e| e.to_string())?;
        let tsig = match prior {
            None => signing.first(&unsigned),
            Some(prior) => signing.next(prior, &unsigned),
        }
        .map_err(|e| e.to_string())?;
        mac = Some(tsig.data.mac.clone());
        response.set_signature(tsig);
    }
    let info = handle
        .send_response(response)
        .await
        .map_err(|e| e.to_string())?;
    Ok((info, mac))
}

/// NOTAUTH for a request whose TSIG does not verify: with an unsigned TSIG naming the error
/// (BADKEY, BADSIG), or a signed one (BADTIME).
async fn send_rejection<R: ResponseHandler>(
    request: &Request,
    rejection: Rejection,
    edns: Option<&Edns>,
    mut handle: R,
) -> ResponseInfo {
    match rejection.unsigned_tsig() {
        Some(Ok(tsig)) => {
            let mut response = MessageResponseBuilder::new(&request.queries, edns)
                .error_msg(&request.metadata, ResponseCode::NotAuth);
            response.set_signature(tsig);
            match handle.send_response(response).await {
                Ok(info) => info,
                Err(_) => failed(request),
            }
        }
        Some(Err(error)) => {
            warn!(%error, "cannot build the TSIG error response");
            send_error(request, ResponseCode::NotAuth, edns, None, handle).await
        }
        None => {
            let Rejection::Time(signing) = &rejection else {
                return failed(request);
            };
            send_error(request, ResponseCode::NotAuth, edns, Some(signing), handle).await
        }
    }
}

/// The query's EDNS Client Subnet option. `Err` when it is malformed in a way RFC 7871 §7.1.1
/// answers with FORMERR: a prefix longer than the family, or address bits set past the prefix.
/// (hickory's parser already rejects unknown families and over-long addresses.)
fn client_subnet(edns: Option<&Edns>) -> Result<Option<EcsOption>, ()> {
    let Some(EdnsOption::Subnet(option)) = edns.and_then(|e| e.option(EdnsCode::Subnet)) else {
        return Ok(None);
    };
    let (bits, width): (u128, u8) = match option.addr() {
        std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
        std::net::IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    let prefix = option.source_prefix();
    if prefix > width {
        return Err(());
    }
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    if bits & !mask != 0 {
        return Err(());
    }
    Ok(Some(*option))
}

/// RFC 8482: over UDP, ANY gets one rrset rather than all of them, so that the server is no
/// amplifier; TCP clients still get everything.
fn minimal_any(answer: &mut Answer) {
    if let Some(first) = answer.answers.first().map(|r| r.record_type()) {
        answer.answers.retain(|r| r.record_type() == first);
        answer.additionals.clear();
    }
}

async fn send_answer<R: ResponseHandler>(
    request: &Request,
    answer: &Answer,
    edns: Option<&Edns>,
    sign: Option<&Signing>,
    mut handle: R,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = answer.rcode;
    metadata.authoritative = answer.authoritative;
    let build = || {
        MessageResponseBuilder::new(&request.queries, edns).build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        )
    };
    match send_built(&mut handle, sign.map(|s| (s, None)), build).await {
        Ok((info, _)) => info,
        Err(error) => {
            warn!(%error, "failed to send dns response");
            failed(request)
        }
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    edns: Option<&Edns>,
    sign: Option<&Signing>,
    mut handle: R,
) -> ResponseInfo {
    let build =
        || MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, rcode);
    match send_built(&mut handle, sign.map(|s| (s, None)), build).await {
        Ok((info, _)) => info,
        Err(error) => {
            warn!(%error, "failed to send dns error response");
            failed(request)
        }
    }
}

/// Over the rate limit: an empty response with TC set, which a real client retries over TCP.
async fn send_truncated<R: ResponseHandler>(request: &Request, mut handle: R) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.truncation = true;
    let response = MessageResponseBuilder::new(&request.queries, None).build(
        metadata,
        std::iter::empty(),
        std::iter::empty(),
        std::iter::empty(),
        std::iter::empty(),
    );
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => failed(request),
    }
}

/// What we report when nothing could be sent; counted as SERVFAIL.
fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
