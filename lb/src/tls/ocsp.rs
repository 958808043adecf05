//! OCSP stapling: reading an OCSP response (RFC 6960) an operator's job fetched for a
//! certificate, to decide whether it may be stapled. A response is stapled only when it is
//! successful, speaks of this certificate (by serial number), says `good`, and is current
//! (`thisUpdate` passed, `nextUpdate` not). Stapling a stale or foreign response would make
//! strict clients fail the handshake, so anything else is reported and not stapled.
//!
//! The structure is walked with asn1-rs (through x509-parser, already in the tree); the
//! signature is the client's to check against the issuer, as with any stapled response.

use x509_parser::asn1_rs::{Any, Class, FromDer, Tag, ToDer};
use x509_parser::time::ASN1Time;

/// What a response says about one certificate, when it may be stapled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspStaple {
    pub this_update: i64,
    /// Unix seconds; a response without one is good until replaced.
    pub next_update: Option<i64>,
}

/// `key` with `response` stapled when it is current and good for `key`'s leaf; otherwise
/// `key` as it is and why not.
pub fn staple(
    key: &std::sync::Arc<rustls::sign::CertifiedKey>,
    response: Vec<u8>,
    now: i64,
) -> (
    std::sync::Arc<rustls::sign::CertifiedKey>,
    Result<OcspStaple, String>,
) {
    use x509_parser::prelude::X509Certificate;
    let serial = key
        .cert
        .first()
        .and_then(|leaf| X509Certificate::from_der(leaf.as_ref()).ok())
        .map(|(_, c)| c.raw_serial().to_vec());
    let Some(serial) = serial else {
        return (key.clone(), Err("the certificate does not parse".into()));
    };
    match check(&response, &serial, now) {
        Ok(s) => {
            let mut stapled = rustls::sign::CertifiedKey::clone(key);
            stapled.ocsp = Some(response);
            (std::sync::Arc::new(stapled), Ok(s))
        }
        Err(e) => (key.clone(), Err(e)),
    }
}

/// `id-pkix-ocsp-basic`, 1.3.6.1.5.5.7.48.1.1.
const BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

fn tlv(i: &[u8]) -> Result<(Any<'_>, &[u8]), String> {
    Any::from_der(i)
        .map(|(rest, any)| (any, rest))
        .map_err(|_| "malformed DER".to_string())
}

/// The elements of a constructed value.
fn items<'a>(any: &Any<'a>) -> Result<Vec<Any<'a>>, String> {
    let mut out = Vec::new();
    let mut rest = any.data;
    while !rest.is_empty() {
        let (item, r) = tlv(rest)?;
        out.push(item);
        rest = r;
    }
    Ok(out)
}

/// `any`, when it is the universal `tag`.
fn universal<'a>(any: Any<'a>, tag: Tag, what: &str) -> Result<Any<'a>, String> {
    if any.header.class() == Class::Universal && any.tag() == tag {
        Ok(any)
    } else {
        Err(format!("{what}: unexpected element"))
    }
}

fn context(any: &Any<'_>, n: u32) -> bool {
    any.header.class() == Class::ContextSpecific && any.tag().0 == n
}

/// An explicitly tagged time (`[0] EXPLICIT GeneralizedTime`): its content is the time's TLV.
fn explicit_time(any: &Any<'_>, what: &str) -> Result<i64, String> {
    ASN1Time::from_der(any.data)
        .map(|(_, t)| t.timestamp())
        .map_err(|_| format!("{what} is not a time"))
}

/// Checks `der` (an OCSPResponse) against the certificate with serial number `serial`
/// (big-endian bytes as in the certificate) at `now` (Unix seconds).
pub fn check(der: &[u8], serial: &[u8], now: i64) -> Result<OcspStaple, String> {
    let (resp, rest) = tlv(der)?;
    if !rest.is_empty() {
        return Err("trailing bytes after the response".into());
    }
    let mut top = items(&universal(resp, Tag::Sequence, "OCSPResponse")?)?.into_iter();
    let status = universal(
        top.next().ok_or("no responseStatus")?,
        Tag::Enumerated,
        "responseStatus",
    )?;
    if status.data != [0] {
        return Err(format!(
            "the responder answered status {} instead of successful",
            status.data.first().copied().unwrap_or(255)
        ));
    }
    let bytes = top.next().ok_or("no responseBytes")?;
    if !context(&bytes, 0) {
        return Err("responseBytes: unexpected element".into());
    }
    let (rb, _) = tlv(bytes.data)?;
    let mut rb = items(&universal(rb, Tag::Sequence, "ResponseBytes")?)?.into_iter();
    let kind = universal(
        rb.next().ok_or("no responseType")?,
        Tag::Oid,
        "responseType",
    )?;
    if kind.data != BASIC {
        return Err("not a basic OCSP response".into());
    }
    let octets = universal(
        rb.next().ok_or("no response")?,
        Tag::OctetString,
        "response",
    )?;
    let (basic, _) = tlv(octets.data)?;
    let basic = items(&universal(basic, Tag::Sequence, "BasicOCSPResponse")?)?;
    let tbs = universal(
        basic.into_iter().next().ok_or("no tbsResponseData")?,
        Tag::Sequence,
        "tbsResponseData",
    )?;
    // ResponseData: [0] version?, responderID, producedAt, responses, [1] extensions?
    let responses = items(&tbs)?
        .into_iter()
        .rfind(|a| a.header.class() == Class::Universal && a.tag() == Tag::Sequence)
        .ok_or("no responses")?;
    let mut last_err = "no response for this certificate".to_string();
    for single in items(&responses)? {
        let fields = items(&universal(single, Tag::Sequence, "SingleResponse")?)?;
        let mut f = fields.into_iter();
        let cert_id = items(&universal(
            f.next().ok_or("no certID")?,
            Tag::Sequence,
            "certID",
        )?)?;
        let Some(their_serial) = cert_id.get(3) else {
            return Err("certID has no serial number".into());
        };
        if strip_zeros(their_serial.data) != strip_zeros(serial) {
            continue;
        }
        let cert_status = f.next().ok_or("no certStatus")?;
        if cert_status.header.class() != Class::ContextSpecific {
            return Err("certStatus: unexpected element".into());
        }
        match cert_status.tag().0 {
            0 => {}
            1 => {
                last_err = "the responder says the certificate is revoked".into();
                continue;
            }
            _ => {
                last_err = "the responder does not know the certificate".into();
                continue;
            }
        }
        let this_update = f.next().ok_or("no thisUpdate")?;
        let this_update = generalized(&this_update, "thisUpdate")?;
        let next_update = match f.next() {
            Some(n) if context(&n, 0) => Some(explicit_time(&n, "nextUpdate")?),
            _ => None,
        };
        if this_update > now + SKEW_SECS {
            return Err("thisUpdate is in the future".into());
        }
        if next_update.is_some_and(|n| n <= now) {
            return Err("the response is out of date (nextUpdate has passed)".into());
        }
        return Ok(OcspStaple {
            this_update,
            next_update,
        });
    }
    Err(last_err)
}

/// Clocks of the responder and the appliance may differ this much.
pub const SKEW_SECS: i64 = 300;

fn generalized(any: &Any<'_>, what: &str) -> Result<i64, String> {
    if any.header.class() != Class::Universal || any.tag() != Tag::GeneralizedTime {
        return Err(format!("{what} is not a time"));
    }
    let der = any
        .to_der_vec()
        .map_err(|_| format!("{what} is not a time"))?;
    ASN1Time::from_der(&der)
        .map(|(_, t)| t.timestamp())
        .map_err(|_| format!("{what} is not a time"))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    &b[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl ocsp` from a test CA (see testdata/README.md): serial 0x0abc1234 good,
    // serial 0x0abc9999 revoked; thisUpdate 2026-11-27T16:49:39Z, nextUpdate seven days on.
    const GOOD: &[u8] = include_bytes!("testdata/ocsp-good.der");
    const REVOKED: &[u8] = include_bytes!("testdata/ocsp-revoked.der");
    const THIS: i64 = 1_795_798_179;
    const NEXT: i64 = 1_796_402_979;

    #[test]
    fn a_current_good_response_for_the_certificate_is_stapled() {
        assert_eq!(
            check(GOOD, &[0x0a, 0xbc, 0x12, 0x34], THIS + 60),
            Ok(OcspStaple {
                this_update: THIS,
                next_update: Some(NEXT),
            })
        );
        // A leading zero in the serial (DER integers keep one when the top bit is set).
        assert!(check(GOOD, &[0, 0x0a, 0xbc, 0x12, 0x34], THIS).is_ok());
    }

    #[test]
    fn stale_foreign_revoked_or_failed_responses_are_not() {
        let serial = [0x0a, 0xbc, 0x12, 0x34];
        let err = check(GOOD, &serial, NEXT).expect_err("expired");
        assert!(err.contains("out of date"), "{err}");
        let err = check(GOOD, &serial, THIS - 3600).expect_err("future");
        assert!(err.contains("future"), "{err}");
        let err = check(GOOD, &[0x01], THIS).expect_err("another certificate");
        assert!(err.contains("no response for this certificate"), "{err}");
        let err = check(REVOKED, &[0x0a, 0xbc, 0x99, 0x99], THIS).expect_err("revoked");
        assert!(err.contains("revoked"), "{err}");
        // OCSPResponse { responseStatus tryLater(3) }.
        let err = check(&[0x30, 0x03, 0x0a, 0x01, 0x03], &serial, THIS).expect_err("tryLater");
        assert!(err.contains("status 3"), "{err}");
    }

    #[test]
    fn any_truncation_or_garbage_is_an_error_not_a_panic() {
        for len in 0..GOOD.len() {
            assert!(check(&GOOD[..len], &[0x0a, 0xbc, 0x12, 0x34], THIS).is_err());
        }
        let mut x: u32 = 7;
        for _ in 0..2000 {
            let mut bytes = GOOD.to_vec();
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let i = (x as usize) % bytes.len();
            bytes[i] ^= (x >> 16) as u8 | 1;
            let _ = check(&bytes, &[0x0a, 0xbc, 0x12, 0x34], THIS);
        }
        assert!(check(b"", &[1], 0).is_err());
        let mut trailing = GOOD.to_vec();
        trailing.push(0);
        assert!(check(&trailing, &[0x0a, 0xbc, 0x12, 0x34], THIS).is_err());
    }
}
