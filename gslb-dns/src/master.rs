//! Zone files in RFC 1035 master format, turned into a [`model::ZoneSpec`] that is then
//! validated like any other: the import is an edit, not a side door.
//!
//! hickory's parser reads the text (directives, `@`, relative names, `$TTL`, parentheses,
//! comments). `$INCLUDE` is refused before parsing, since it would read files on the appliance.
//! Every problem is listed, not just the first.

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::txt::Parser;
use model::{RecordSpec, SoaSpec, ZoneSpec};

/// Parses `text` as the zone `origin`. `Err` lists every problem found.
pub fn import_zone(origin: &str, text: &str) -> Result<ZoneSpec, Vec<String>> {
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.eq_ignore_ascii_case("$INCLUDE") {
            errors.push(format!(
                "line {}: $INCLUDE is not allowed; paste the included records in",
                i + 1
            ));
        }
    }
    let mut origin_name = Name::from_ascii(origin.trim())
        .map_err(|e| vec![format!("zone name {origin:?} is not a DNS name: {e}")])?;
    origin_name.set_fqdn(true);
    if !errors.is_empty() {
        return Err(errors);
    }
    let (_, sets) = Parser::new(text, None, Some(origin_name.clone()))
        .parse()
        .map_err(|e| vec![format!("the zone file does not parse: {e}")])?;

    let apex = origin_name.to_lowercase();
    let mut soa = None;
    let mut ns = Vec::new();
    let mut records = Vec::new();
    for set in sets.values() {
        let name = set.name().to_lowercase();
        let owner = name.to_string();
        for record in set.records_without_rrsigs() {
            let ttl = record.ttl;
            let value = match &record.data {
                RData::SOA(s) if name == apex => {
                    soa = Some(SoaSpec {
                        mname: s.mname.to_string(),
                        rname: s.rname.to_string(),
                        refresh: u32::try_from(s.refresh).unwrap_or(0),
                        retry: u32::try_from(s.retry).unwrap_or(0),
                        expire: u32::try_from(s.expire).unwrap_or(0),
                        minimum: s.minimum,
                        ttl,
                    });
                    continue;
                }
                RData::NS(target) if name == apex => {
                    ns.push(target.0.to_string());
                    continue;
                }
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                RData::CNAME(t) => t.0.to_string(),
                RData::NS(t) => t.0.to_string(),
                RData::PTR(t) => t.0.to_string(),
                RData::MX(mx) => format!("{} {}", mx.preference, mx.exchange),
                RData::SRV(srv) => format!(
                    "{} {} {} {}",
                    srv.priority, srv.weight, srv.port, srv.target
                ),
                RData::TXT(txt) => txt
                    .txt_data
                    .iter()
                    .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                    .collect(),
                RData::CAA(caa) => caa.to_string(),
                other => {
                    errors.push(format!(
                        "{owner} {}: this record type is not supported",
                        other.record_type()
                    ));
                    continue;
                }
            };
            let rtype = match record.record_type() {
                RecordType::A => model::RecordType::A,
                RecordType::AAAA => model::RecordType::AAAA,
                RecordType::CNAME => model::RecordType::CNAME,
                RecordType::NS => model::RecordType::NS,
                RecordType::PTR => model::RecordType::PTR,
                RecordType::MX => model::RecordType::MX,
                RecordType::SRV => model::RecordType::SRV,
                RecordType::TXT => model::RecordType::TXT,
                RecordType::CAA => model::RecordType::CAA,
                other => {
                    errors.push(format!(
                        "{owner} {other}: this record type is not supported"
                    ));
                    continue;
                }
            };
            records.push(RecordSpec {
                name: owner.clone(),
                rtype,
                ttl,
                value,
            });
        }
    }
    let Some(soa) = soa else {
        errors.push(format!("the zone file has no SOA record for {apex}"));
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ZoneSpec {
        name: apex.to_string(),
        soa,
        ns,
        records,
        secondaries: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = r#"
$ORIGIN example.org.
$TTL 3600
@   IN SOA ns1 hostmaster ( 2024010101 7200 900 1209600 300 )
    IN NS  ns1
    IN NS  ns2.elsewhere.net.
    IN MX  10 mail
    IN CAA 0 issue "letsencrypt.org"
    IN TXT "v=spf1 -all"
ns1 IN A 192.0.2.53
mail 600 IN A 192.0.2.25
www IN CNAME example.org.
*.apps IN A 192.0.2.80
_sip._tcp IN SRV 10 5 5060 mail
child IN NS ns.child
ns.child IN A 192.0.2.99
25.2.0.192 IN PTR mail ; a comment
"#;

    #[test]
    fn a_master_file_becomes_a_zone_that_validates_and_compiles() {
        let zone = import_zone("example.org", ZONE).expect("imports");
        assert_eq!(zone.name, "example.org.");
        assert_eq!(zone.soa.mname, "ns1.example.org.");
        assert_eq!(
            (zone.soa.refresh, zone.soa.minimum, zone.soa.ttl),
            (7200, 300, 3600)
        );
        assert_eq!(zone.ns, vec!["ns1.example.org.", "ns2.elsewhere.net."]);
        let find = |name: &str, t: model::RecordType| {
            zone.records
                .iter()
                .find(|r| r.name == name && r.rtype == t)
                .map(|r| (r.value.clone(), r.ttl))
        };
        assert_eq!(
            find("mail.example.org.", model::RecordType::A),
            Some(("192.0.2.25".into(), 600))
        );
        assert_eq!(
            find("example.org.", model::RecordType::MX).map(|v| v.0),
            Some("10 mail.example.org.".into())
        );
        assert_eq!(
            find("example.org.", model::RecordType::CAA).map(|v| v.0),
            Some("0 issue \"letsencrypt.org\"".into())
        );
        assert!(find("*.apps.example.org.", model::RecordType::A).is_some());
        // It is a configuration like any other: it validates and the DNS plane compiles it.
        let spec = model::ConfigSpec {
            zones: vec![zone],
            ..Default::default()
        };
        let config = model::validate(&spec).expect("valid");
        let snap = crate::ZonesSnapshot::compile(&config, 1).expect("compiles");
        let health = crate::gslb::tests::FakeHealth::default();
        let www = snap.lookup(
            &Name::from_ascii("www.example.org.").expect("name"),
            RecordType::A,
            &health,
        );
        assert_eq!(
            www.answers.len(),
            1,
            "the CNAME to the apex, which has no A"
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let e = import_zone("example.org", "$INCLUDE /etc/shadow\n").expect_err("refused");
        assert!(e[0].contains("line 1: $INCLUDE"), "{e:?}");
        let e = import_zone(
            "example.org",
            "@ 60 IN SOA ns1 h 1 2 3 4 5\n@ 60 IN HINFO \"x\" \"y\"\nx 60 IN SSHFP 1 1 abcd\n",
        )
        .expect_err("unsupported types");
        assert_eq!(e.len(), 2, "{e:?}");
        let e = import_zone("example.org", "www 60 IN A 192.0.2.1\n").expect_err("no SOA");
        assert!(e[0].contains("no SOA"), "{e:?}");
        let e = import_zone("example.org", "www 60 IN A not-an-address\n").expect_err("bad");
        assert!(e[0].contains("does not parse"), "{e:?}");
    }
}
