//! A small UDP DNS responder for the scenarios' CNAME records (what a resolver the test controls answers).
//!
//! For a name of a scenario's `cname_targets` that is in DNS: `NOERROR` with the CNAME record (whatever the
//! question type, as a resolver following the alias would start its answer). Other names under a
//! scenario's domain: `NXDOMAIN` (`NOERROR`/no data at the apex) with the zone's SOA in the authority
//! section. Any other name: `NXDOMAIN`. DNS faults of the owning instance can drop the question (a timeout
//! for the client), answer `SERVFAIL`, or point the CNAME elsewhere.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::state::{DnsFaultAction, DnsOutcome, Shared, normalize_dns_name};

const TTL: u32 = 300;

/// The names the responder knows, built once from the scenarios.
pub(crate) struct DnsTable {
    /// Host -> (instance, expected target, present in DNS).
    records: HashMap<String, (usize, String, bool)>,
    /// Zone (a domain of an instance) -> instance.
    zones: HashMap<String, usize>,
}

impl DnsTable {
    pub(crate) fn build(shared: &Shared) -> Self {
        let mut records = HashMap::new();
        let mut zones = HashMap::new();
        for (index, instance) in shared.instances.iter().enumerate() {
            for domain in &instance.spec.domains {
                if let Some(targets) = &domain.cname_targets {
                    zones.insert(normalize_dns_name(&domain.name), index);
                    for target in targets {
                        records.insert(
                            normalize_dns_name(&target.host),
                            (index, normalize_dns_name(&target.value), target.in_dns),
                        );
                    }
                }
            }
        }
        Self { records, zones }
    }

    fn zone_of(&self, name: &str) -> Option<(&str, usize)> {
        self.zones
            .iter()
            .filter(|(zone, _)| name == zone.as_str() || name.ends_with(&format!(".{zone}")))
            .max_by_key(|(zone, _)| zone.len())
            .map(|(zone, index)| (zone.as_str(), *index))
    }
}

pub(crate) async fn serve(
    socket: UdpSocket,
    shared: Arc<Shared>,
    table: DnsTable,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let table = Arc::new(table);
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        // A question the gate holds is answered from its own task, so the others keep flowing.
        if let Some((instance, name)) = gated_question(&shared, &table, &buffer[..length]) {
            let (shared, table, socket) = (shared.clone(), table.clone(), socket.clone());
            let datagram = buffer[..length].to_vec();
            tokio::spawn(async move {
                shared.gate.pass(instance, || format!("DNS {name}")).await;
                if let Some(reply) = respond(&shared, &table, &datagram) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            });
            continue;
        }
        if let Some(reply) = respond(&shared, &table, &buffer[..length]) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// The instance and name of a question about an instance whose requests the gate holds now.
fn gated_question(shared: &Shared, table: &DnsTable, datagram: &[u8]) -> Option<(usize, String)> {
    if !shared.gate.armed() {
        return None;
    }
    let request = Message::from_vec(datagram).ok()?;
    let name = normalize_dns_name(&request.queries.first()?.name().to_ascii());
    let instance = table.records.get(&name).map(|(index, _, _)| *index).or(table.zone_of(&name).map(|(_, i)| i))?;
    shared.gate.holds(instance).then_some((instance, name))
}

/// The reply to one datagram, or `None` to stay silent.
fn respond(shared: &Shared, table: &DnsTable, datagram: &[u8]) -> Option<Vec<u8>> {
    let request = match Message::from_vec(datagram) {
        Ok(request) => request,
        Err(_) => {
            // Not a DNS message we can parse: answer FORMERR if there is at least an id.
            if datagram.len() < 2 {
                return None;
            }
            let id = u16::from_be_bytes([datagram[0], datagram[1]]);
            shared.record_dns(String::new(), String::new(), None, DnsOutcome::FormErr);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }

    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        reply.set_edns(edns);
    }
    let Some(query) = request.queries.first().cloned() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    };
    reply.add_query(query.clone());
    if request.metadata.op_code != OpCode::Query || request.queries.len() != 1 {
        reply.metadata.response_code = ResponseCode::NotImp;
        return reply.to_vec().ok();
    }

    let name = normalize_dns_name(&query.name().to_ascii());
    let record_type = query.query_type();
    let zone = table.zone_of(&name);
    let record = table.records.get(&name);
    let instance = record.map(|(index, _, _)| *index).or(zone.map(|(_, index)| index));

    let fault = instance.and_then(|index| shared.dns_fault(index, &name));
    let outcome = match (fault, record) {
        (Some(DnsFaultAction::Drop), _) => DnsOutcome::Dropped,
        (Some(DnsFaultAction::ServFail), _) => DnsOutcome::ServFail,
        (Some(DnsFaultAction::WrongTarget(target)), _) => DnsOutcome::Cname { target },
        (None, Some((_, target, true))) => DnsOutcome::Cname { target: target.clone() },
        (None, _) if zone.is_some_and(|(apex, _)| apex == name) => DnsOutcome::NoData,
        (None, _) => DnsOutcome::NxDomain,
    };
    shared.record_dns(name.clone(), record_type.to_string(), instance, outcome.clone());

    match &outcome {
        DnsOutcome::Dropped => return None,
        DnsOutcome::ServFail | DnsOutcome::FormErr => reply.metadata.response_code = ResponseCode::ServFail,
        DnsOutcome::Cname { target } => {
            let target = Name::from_ascii(format!("{target}.")).ok()?;
            reply.add_answer(Record::from_rdata(query.name().clone(), TTL, RData::CNAME(CNAME(target))));
        }
        DnsOutcome::NxDomain | DnsOutcome::NoData => {
            if matches!(outcome, DnsOutcome::NxDomain) {
                reply.metadata.response_code = ResponseCode::NXDomain;
            }
            if let Some((apex, _)) = zone
                && let Some(soa) = soa_record(apex)
            {
                reply.add_authority(soa);
            }
        }
    }
    reply.to_vec().ok()
}

fn soa_record(zone: &str) -> Option<Record> {
    let zone_name = Name::from_ascii(format!("{zone}.")).ok()?;
    let mname = Name::from_ascii(format!("ns1.{zone}.")).ok()?;
    let rname = Name::from_ascii(format!("hostmaster.{zone}.")).ok()?;
    let soa = SOA::new(mname, rname, 2026030201, 7200, 900, 1_209_600, TTL);
    Some(Record::from_rdata(zone_name, TTL, RData::SOA(soa)))
}
