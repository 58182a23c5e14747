//! `herald serve --dns ADDR`: the registry over DNS, over UDP (on `hickory-server`) and
//! over TCP ([`tcp`]: connections bounded in number and idle time).
//!
//! Answers come from the [`View`], so they are never staler than the directory's own
//! state by more than one wake-up of its loop. The names and records are described in
//! [`answer`], the name mapping in [`names`]. The server is authoritative for its domain
//! only: a name outside it is `REFUSED`. Negative answers carry the domain's `SOA`
//! (its minimum is the TTL, so resolvers cache a miss no longer than a hit). Over UDP an
//! answer is limited to 512 bytes, or to the size the query's EDNS allows (at most
//! 4096): what does not fit is left out (additional records first) and the `TC` bit
//! set, so the resolver asks again over TCP.
//!
//! UDP answers are no reflection amplifier: an answer larger than [`AMPLIFICATION`]
//! times its query is charged to a byte budget of its destination address and to one of
//! all destinations (token buckets, [`ByteBudgets`]); once either is spent, such answers
//! go out truncated, with no records, so a forged source address gets back no more than
//! about its own bytes and a real resolver asks again over TCP (which no forged address
//! can open). Smaller answers, and answers over TCP, are never held back.

pub mod answer;
pub mod names;
pub mod tcp;

use crate::clock::Clock;
use crate::view::View;
use herald_core::budget::ByteBudgets;
use hickory_proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, UdpSocket};

/// The default domain.
pub const DEFAULT_DOMAIN: &str = "herald.";
/// Largest UDP answer without EDNS (RFC 1035).
const UDP_PLAIN: usize = 512;
/// Largest UDP answer whatever EDNS allows.
const UDP_MAX: u16 = 4096;
/// A UDP answer up to this many times its query's bytes is never held back.
pub const AMPLIFICATION: usize = herald_core::directory::AMPLIFICATION;
/// Default bytes per second of larger UDP answers to one source address.
pub const DEFAULT_SOURCE_RATE: u32 = 32 << 10;
/// Default bytes per second of larger UDP answers to all source addresses together.
pub const DEFAULT_RATE: u32 = 256 << 10;
/// How many source addresses' budgets are kept (the least recently used forgotten).
const BUDGET_SOURCES: usize = 256;

/// The DNS interface's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// Where to listen (UDP and TCP).
    pub addr: SocketAddr,
    /// The domain served.
    pub domain: Name,
    /// TTL of the answers, in seconds.
    pub ttl: u32,
    /// Bytes per second of UDP answers larger than [`AMPLIFICATION`] times their query
    /// that one source address may receive.
    pub source_rate: u32,
    /// The same for all source addresses together.
    pub rate: u32,
}

/// Parses `--dns-domain` (a trailing dot is implied).
pub fn parse_domain(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text).map_err(|e| format!("{text:?}: {e}"))?;
    name.set_fqdn(true);
    if name.is_root() {
        return Err("the root cannot be served: use a domain such as herald.".to_owned());
    }
    Ok(name.to_lowercase())
}

/// Binds the UDP socket and TCP listener on `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(udp.local_addr()?).await?;
    Ok((udp, tcp))
}

/// Serves DNS on the bound sockets until the process stops.
/// Counts in `truncated` the answers sent truncated for want of byte budget.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    settings: DnsSettings,
    view: View,
    truncated: Arc<AtomicU64>,
) {
    let clock = Clock::new();
    let handler = Arc::new(Handler {
        view,
        budgets: Mutex::new(ByteBudgets::new(settings.rate, clock.now())),
        clock,
        domain: settings.domain,
        ttl: settings.ttl,
        source_rate: settings.source_rate,
        rate: settings.rate,
        truncated,
    });
    let mut server = ServerFuture::new(Shared(handler.clone()));
    server.register_socket(udp);
    tokio::select! {
        () = tcp::serve(tcp, handler) => {}
        done = server.block_until_done() => {
            if let Err(e) = done {
                tracing::error!(error = %e, "dns server failed");
            }
        }
    }
}

/// The handler, shared by the UDP server and the TCP connections.
struct Shared(Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        self.0.handle_request(request, response).await
    }
}

/// Answers queries from the view.
struct Handler {
    view: View,
    /// What larger UDP answers may still send, per source address and in all.
    budgets: Mutex<ByteBudgets<BUDGET_SOURCES>>,
    clock: Clock,
    domain: Name,
    ttl: u32,
    source_rate: u32,
    rate: u32,
    truncated: Arc<AtomicU64>,
}

impl Handler {
    fn soa(&self, serial: u64) -> Record {
        let host = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&self.domain))
                .unwrap_or_else(|_| self.domain.clone())
        };
        let soa = SOA::new(
            host("ns"),
            host("hostmaster"),
            // The low 32 bits of the registry version: grows with every change.
            serial as u32,
            60,
            60,
            3600,
            self.ttl,
        );
        Record::from_rdata(self.domain.clone(), self.ttl, RData::SOA(soa))
    }

    /// Whether an answer of `bytes` to `request` may go out whole: always over TCP and
    /// within [`AMPLIFICATION`] times the query; otherwise while the budgets of its
    /// source address and of all sources have bytes left (then it is charged to them).
    fn may_answer(&self, request: &Request, bytes: usize) -> bool {
        if request.protocol() != Protocol::Udp {
            return true;
        }
        let asked = request.to_bytes().map_or(0, |b| b.len());
        if bytes <= AMPLIFICATION * asked {
            return true;
        }
        let ip = request.src().ip();
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        let whole = budgets.may_send(self.source_rate, self.rate, ip, now);
        if whole {
            budgets.spent(ip, bytes);
        } else {
            self.truncated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(source = %ip, bytes, "dns: over the byte budget, answered truncated");
        }
        whole
    }
}

/// Most bytes an answer to `request` may take.
fn limit(request: &Request) -> usize {
    if request.protocol() != Protocol::Udp {
        return usize::from(u16::MAX);
    }
    match request.edns() {
        Some(edns) => usize::from(edns.max_payload().clamp(UDP_PLAIN as u16, UDP_MAX)),
        None => UDP_PLAIN,
    }
}

/// Bytes `record` takes at most (encoded without name compression).
fn size(record: &Record) -> usize {
    record.to_bytes().map_or(usize::MAX / 4, |b| b.len())
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let max = limit(request);
        if let Some(edns) = request.edns() {
            let mut ours = Edns::new();
            ours.set_max_payload(max.min(usize::from(UDP_MAX)) as u16);
            ours.set_dnssec_ok(false);
            if edns.version() > 0 {
                // Only EDNS version 0 exists (RFC 6891: BADVERS).
                let header = Header::response_from_request(request.header());
                builder.edns(ours);
                let mut reply = builder.error_msg(&header, ResponseCode::BADVERS);
                reply.header_mut().set_authoritative(true);
                return send(&mut response, reply).await;
            }
            builder.edns(ours);
        }
        let refuse = |code| (code, None);
        let (code, found) = match request.request_info() {
            Err(_) => refuse(ResponseCode::FormErr),
            Ok(_) if request.message_type() != MessageType::Query => refuse(ResponseCode::FormErr),
            Ok(_) if request.op_code() != OpCode::Query => refuse(ResponseCode::NotImp),
            Ok(info) => {
                let qname: Name = info.query.name().into();
                let qtype = info.query.query_type();
                if !self.domain.zone_of(&qname) {
                    refuse(ResponseCode::Refused)
                } else {
                    let depth = usize::from(qname.num_labels() - self.domain.num_labels());
                    let labels: Vec<&[u8]> = qname.iter().take(depth).collect();
                    let state = self.view.read();
                    let mut found =
                        answer::lookup(&state, &self.domain, self.ttl, &qname, &labels, qtype);
                    if depth == 0 && matches!(qtype, RecordType::SOA | RecordType::ANY) {
                        found.answers.push(self.soa(state.version));
                    }
                    let soa = self.soa(state.version);
                    (found.code(), Some((found, soa)))
                }
            }
        };
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(code != ResponseCode::Refused);
        header.set_recursion_available(false);
        header.set_response_code(code);
        let Some((mut found, soa)) = found else {
            let reply = builder.build_no_records(header);
            return send(&mut response, reply).await;
        };
        let negative = found.answers.is_empty();
        let mut authority: Vec<Record> = if negative { vec![soa] } else { Vec::new() };
        // Header, question and OPT, then the records, until the limit.
        let question = request
            .request_info()
            .map_or(0, |i| i.query.original().to_bytes().map_or(0, |b| b.len()));
        let mut used = 12 + question + 11 + authority.iter().map(size).sum::<usize>();
        let mut keep = 0;
        for r in &found.answers {
            if used + size(r) > max {
                break;
            }
            used += size(r);
            keep += 1;
        }
        if keep < found.answers.len() {
            header.set_truncated(true);
            found.answers.truncate(keep);
            found.additionals.clear();
        } else {
            let mut extra = 0;
            for r in &found.additionals {
                if used + size(r) > max {
                    break;
                }
                used += size(r);
                extra += 1;
            }
            // Leaving out additional records does not set TC (RFC 2181 9).
            found.additionals.truncate(extra);
        }
        if !self.may_answer(request, used) {
            header.set_truncated(true);
            found.answers.clear();
            found.additionals.clear();
            authority.clear();
        }
        let reply = builder.build(
            header,
            found.answers.iter(),
            authority.iter(),
            std::iter::empty(),
            found.additionals.iter(),
        );
        send(&mut response, reply).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    reply: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response.send_response(reply).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "dns: cannot send an answer");
            let mut header = Header::new();
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}
