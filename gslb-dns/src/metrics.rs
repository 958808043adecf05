//! Prometheus metrics of the DNS plane. Label values are drawn from fixed sets, so the number of
//! series stays bounded whatever clients send.

use hickory_proto::op::ResponseCode;
use hickory_server::net::xfer::Protocol;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and gauges of the DNS server. Cheap to clone: every clone updates the same series.
#[derive(Clone, Debug)]
pub struct DnsMetrics {
    queries: IntCounterVec,
    config_revision: IntGauge,
    compile_errors: IntCounter,
    gslb_answers: IntCounterVec,
    rrl: IntCounterVec,
    transfers: IntCounterVec,
    notifies: IntCounterVec,
    tsig_rejected: IntCounterVec,
    /// `queries{rcode="NOERROR", transport="udp"}`, resolved once: the fast path's counter.
    udp_noerror: IntCounter,
}

impl DnsMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let queries = IntCounterVec::new(
            Opts::new(
                "meridian_dns_queries_total",
                "DNS responses sent, by response code and transport",
            ),
            &["rcode", "transport"],
        )?;
        let config_revision = IntGauge::new(
            "meridian_dns_config_revision",
            "Configuration revision the DNS answers are compiled from (also the SOA serial)",
        )?;
        let compile_errors = IntCounter::new(
            "meridian_dns_config_compile_errors_total",
            "Configuration revisions the DNS plane failed to compile and kept the previous one for",
        )?;
        let gslb_answers = IntCounterVec::new(
            Opts::new(
                "meridian_gslb_answers_total",
                "Addresses of each GSLB site handed out in answers (its share of the traffic)",
            ),
            &["record", "site"],
        )?;
        registry.register(Box::new(gslb_answers.clone()))?;
        let rrl = IntCounterVec::new(
            Opts::new(
                "meridian_dns_rate_limited_total",
                "UDP responses over a client subnet's rate: dropped, or sent truncated (slipped)",
            ),
            &["action"],
        )?;
        registry.register(Box::new(rrl.clone()))?;
        let transfers = IntCounterVec::new(
            Opts::new(
                "meridian_dns_transfers_total",
                "Zone transfers asked for, by type (axfr, ixfr) and outcome (full, incremental, \
                 current, udp-soa, refused, failed)",
            ),
            &["type", "outcome"],
        )?;
        registry.register(Box::new(transfers.clone()))?;
        let notifies = IntCounterVec::new(
            Opts::new(
                "meridian_dns_notify_total",
                "NOTIFY messages to secondaries: acknowledged, or given up after every retry",
            ),
            &["result"],
        )?;
        registry.register(Box::new(notifies.clone()))?;
        let tsig_rejected = IntCounterVec::new(
            Opts::new(
                "meridian_dns_tsig_rejected_total",
                "Signed requests answered NOTAUTH, by TSIG error (BADKEY, BADSIG, BADTIME)",
            ),
            &["error"],
        )?;
        registry.register(Box::new(tsig_rejected.clone()))?;
        registry.register(Box::new(queries.clone()))?;
        registry.register(Box::new(config_revision.clone()))?;
        registry.register(Box::new(compile_errors.clone()))?;
        Ok(DnsMetrics {
            udp_noerror: queries.with_label_values(&["NOERROR", "udp"]),
            queries,
            config_revision,
            compile_errors,
            gslb_answers,
            rrl,
            transfers,
            notifies,
            tsig_rejected,
        })
    }

    pub(crate) fn transfer(&self, kind: &'static str, outcome: &'static str) {
        self.transfers.with_label_values(&[kind, outcome]).inc();
    }

    pub(crate) fn notify(&self, result: &'static str) {
        self.notifies.with_label_values(&[result]).inc();
    }

    pub(crate) fn tsig_rejected(&self, error: &'static str) {
        self.tsig_rejected.with_label_values(&[error]).inc();
    }

    pub(crate) fn record_response(&self, rcode: ResponseCode, protocol: Protocol) {
        if rcode == ResponseCode::NoError && protocol == Protocol::Udp {
            self.udp_noerror.inc();
            return;
        }
        self.queries
            .with_label_values(&[rcode_label(rcode), transport_label(protocol)])
            .inc();
    }

    pub(crate) fn set_revision(&self, revision: u64) {
        self.config_revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
    }

    /// The counter of one site's answers, resolved once per revision, not per query.
    pub(crate) fn site_answers(&self, record: &str, site: &str) -> IntCounter {
        self.gslb_answers.with_label_values(&[record, site])
    }

    /// How many times each site of `record` was handed out, for the console.
    pub fn answers_of(&self, record: &str, site: &str) -> u64 {
        self.gslb_answers.with_label_values(&[record, site]).get()
    }

    pub(crate) fn rate_limited(&self, action: &'static str) {
        self.rrl.with_label_values(&[action]).inc();
    }

    pub(crate) fn compile_failed(&self) {
        self.compile_errors.inc();
    }
}

fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

fn transport_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Udp => "udp",
        Protocol::Tcp => "tcp",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_rcode_and_transport() -> Result<(), prometheus::Error> {
        let registry = Registry::new();
        let metrics = DnsMetrics::new(&registry)?;
        metrics.record_response(ResponseCode::NXDomain, Protocol::Udp);
        metrics.record_response(ResponseCode::NXDomain, Protocol::Udp);
        metrics.record_response(ResponseCode::Unknown(4000), Protocol::Tcp);
        metrics.set_revision(7);
        let nx = metrics.queries.with_label_values(&["NXDOMAIN", "udp"]);
        assert_eq!(nx.get(), 2);
        assert_eq!(
            metrics.queries.with_label_values(&["OTHER", "tcp"]).get(),
            1
        );
        assert_eq!(metrics.config_revision.get(), 7);
        // Registering twice in one registry is refused rather than double counting.
        assert!(DnsMetrics::new(&registry).is_err());
        Ok(())
    }
}
