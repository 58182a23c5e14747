//! What the DNS interface answers, from the registry [`State`]: the names under the
//! domain, their records, and `NXDOMAIN` (no such name) against `NODATA` (the name
//! exists, not with that type).
//!
//! | name | records |
//! | --- | --- |
//! | `_services._dns-sd._udp.DOMAIN` | `PTR` to every service, `SERVICE.DOMAIN` |
//! | `SERVICE.DOMAIN` | `SRV`, `A`/`AAAA`, `TXT` of all its instances; `PTR` to each instance |
//! | `INSTANCE.SERVICE.DOMAIN` | `SRV`, `A`/`AAAA`, `TXT` of that instance |
//! | `HOST._addr.DOMAIN` | the `A` or `AAAA` the host label spells |
//!
//! The instances of a service are the registration named `SERVICE` itself (whose
//! instance name is `SERVICE.DOMAIN`) and every `SERVICE/INSTANCE`. Each location is one
//! `SRV` (priority 0, weight 1, its port, target its host); the hosts' addresses come
//! as additional records. `TXT` holds one `key=value` string per metadata entry, and
//! one empty string for an instance without metadata.

use super::names::{self, ADDR_LABEL};
use crate::view::{Listed, State};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The labels of `_services._dns-sd._udp`.
const BROWSE: [&[u8]; 3] = [b"_services", b"_dns-sd", b"_udp"];

/// An answer: its code and sections.
#[derive(Debug, Default)]
pub struct Answer {
    /// `NXDOMAIN` when the name does not exist.
    pub nxdomain: bool,
    /// The answer section.
    pub answers: Vec<Record>,
    /// Addresses of the `SRV` targets.
    pub additionals: Vec<Record>,
}

impl Answer {
    /// The response code.
    pub fn code(&self) -> ResponseCode {
        if self.nxdomain {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        }
    }

    fn nxdomain() -> Answer {
        Answer {
            nxdomain: true,
            ..Answer::default()
        }
    }
}

/// Answers `qtype` for `labels` (the query name's labels under the domain, leftmost
/// first), whose full name is `qname`.
pub fn lookup(
    state: &State,
    domain: &Name,
    ttl: u32,
    qname: &Name,
    labels: &[&[u8]],
    qtype: RecordType,
) -> Answer {
    let ctx = Context { domain, ttl, qname };
    let lower: Vec<Vec<u8>> = labels.iter().map(|l| l.to_ascii_lowercase()).collect();
    let lower: Vec<&[u8]> = lower.iter().map(Vec::as_slice).collect();
    match lower.as_slice() {
        [] => Answer::default(),
        l if l == BROWSE => {
            let mut answer = Answer::default();
            if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                for service in services(state) {
                    if let Some(target) = ctx.service_name(&service) {
                        answer.answers.push(ctx.record(RData::PTR(PTR(target))));
                    }
                }
            }
            answer
        }
        // The names between the domain and the browsing name exist, without records.
        l if BROWSE.ends_with(l) => Answer::default(),
        [l] if *l == ADDR_LABEL => Answer::default(),
        [host, addr] if *addr == ADDR_LABEL => match names::parse_host(host) {
            Some(ip) => {
                let mut answer = Answer::default();
                if let Some(rdata) = address(ip, qtype) {
                    answer.answers.push(ctx.record(rdata));
                }
                answer
            }
            None => Answer::nxdomain(),
        },
        [service] => {
            let Some(service) = names::decode(service) else {
                return Answer::nxdomain();
            };
            let instances = instances(state, &service);
            if instances.is_empty() {
                return Answer::nxdomain();
            }
            let mut answer = Answer::default();
            if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                for l in &instances {
                    if let Some(target) = ctx.instance_name(&l.info.name) {
                        answer.answers.push(ctx.record(RData::PTR(PTR(target))));
                    }
                }
            }
            ctx.describe(&instances, qtype, &mut answer);
            answer
        }
        [instance, service] => {
            let (Some(instance), Some(service)) = (names::decode(instance), names::decode(service))
            else {
                return Answer::nxdomain();
            };
            let name = format!("{service}/{instance}");
            let Some(listed) = state.services.get(&name) else {
                return Answer::nxdomain();
            };
            let mut answer = Answer::default();
            ctx.describe(&[listed], qtype, &mut answer);
            answer
        }
        _ => Answer::nxdomain(),
    }
}

/// Every service that has at least one instance with a DNS name, in name order.
fn services(state: &State) -> BTreeSet<String> {
    state
        .services
        .keys()
        .map(|name| names::split(name).0.to_owned())
        .filter(|s| names::encode(s).is_some())
        .collect()
}

/// The live instances of `service`: `service` itself and every `service/…`.
fn instances<'a>(state: &'a State, service: &str) -> Vec<&'a Listed> {
    state
        .services
        .range(service.to_owned()..)
        .take_while(|(name, _)| name.starts_with(service))
        .filter(|(name, _)| names::split(name).0 == service)
        .map(|(_, l)| l)
        .collect()
}

/// The record for `ip` if the query asks for its type.
fn address(ip: IpAddr, qtype: RecordType) -> Option<RData> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
        _ => None,
    }
}

struct Context<'a> {
    domain: &'a Name,
    ttl: u32,
    qname: &'a Name,
}

impl Context<'_> {
    fn record(&self, rdata: RData) -> Record {
        Record::from_rdata(self.qname.clone(), self.ttl, rdata)
    }

    fn under(&self, labels: &[&str]) -> Option<Name> {
        Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .ok()?
            .append_domain(self.domain)
            .ok()
    }

    fn service_name(&self, service: &str) -> Option<Name> {
        self.under(&[&names::encode(service)?])
    }

    /// The DNS name of the instance a registry name is.
    fn instance_name(&self, name: &str) -> Option<Name> {
        match names::split(name) {
            (service, None) => self.service_name(service),
            (service, Some(instance)) => {
                self.under(&[&names::encode(instance)?, &names::encode(service)?])
            }
        }
    }

    fn host(&self, ip: IpAddr) -> Option<Name> {
        self.under(&[&names::host_label(ip), "_addr"])
    }

    /// The `SRV`, address and `TXT` records of `instances` that `qtype` asks for.
    fn describe(&self, instances: &[&Listed], qtype: RecordType, answer: &mut Answer) {
        let any = qtype == RecordType::ANY;
        let mut hosts = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for l in instances {
            if qtype == RecordType::SRV || any {
                for loc in &l.info.locations {
                    let Some(target) = self.host(loc.ip()) else {
                        continue;
                    };
                    let srv = SRV::new(0, 1, loc.port(), target);
                    answer.answers.push(self.record(RData::SRV(srv)));
                    hosts.insert(loc.ip());
                }
            }
            ips.extend(l.info.locations.iter().map(|s| s.ip()));
            if qtype == RecordType::TXT || any {
                let mut strings: Vec<String> = l
                    .info
                    .meta
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if strings.is_empty() {
                    strings.push(String::new());
                }
                answer
                    .answers
                    .push(self.record(RData::TXT(TXT::new(strings))));
            }
        }
        // One A or AAAA per address, however many instances share it.
        for ip in ips {
            if let Some(rdata) = address(ip, qtype) {
                answer.answers.push(self.record(rdata));
            }
        }
        for ip in hosts {
            let (Some(host), Some(rdata)) = (self.host(ip), address(ip, RecordType::ANY)) else {
                continue;
            };
            answer
                .additionals
                .push(Record::from_rdata(host, self.ttl, rdata));
        }
    }
}
