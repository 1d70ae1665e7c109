//! A small authoritative DNSBL served in process over UDP on 127.0.0.1, so
//! that `streamd --embedded` shows listed, clean and degraded targets with
//! nothing installed. It answers `A` and `TXT` queries for the names it
//! holds, NXDOMAIN for other names inside its zones and REFUSED outside
//! them. It is a demo and a test peer, not a DNS server for production.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, TXT};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::poller::ListConfig;
use crate::target::{ListKind, Target};

#[derive(Debug, Default, Clone)]
struct Entry {
    addrs: Vec<Ipv4Addr>,
    txt: Option<String>,
}

/// Names and their answers.
#[derive(Debug, Default, Clone)]
pub struct Zone {
    zones: Vec<String>,
    entries: HashMap<String, Entry>,
    ttl: u32,
    /// Datagrams received by [`serve`].
    served: Arc<AtomicU64>,
}

impl Zone {
    /// An empty zone set answering with `ttl`.
    pub fn new(ttl: u32) -> Self {
        Zone { ttl, ..Zone::default() }
    }

    /// Serves `zone` (NXDOMAIN for what it does not hold).
    pub fn add_zone(&mut self, zone: &str) {
        self.zones.push(normalise(zone));
    }

    /// Answers `target` on `zone` with `code` (and `txt`).
    pub fn add(&mut self, zone: &str, target: &Target, code: Ipv4Addr, txt: Option<&str>) {
        let entry = self.entries.entry(normalise(&target.query_name(zone))).or_default();
        entry.addrs.push(code);
        if let Some(txt) = txt {
            entry.txt = Some(txt.to_owned());
        }
    }

    /// The demo: every list answers its RFC 5782 test point; on IP lists
    /// 192.0.2.2 is listed (with the list's first named code), 192.0.2.3 is
    /// listed on the first IP list only, and 192.0.2.4 gets 127.255.255.254,
    /// the answer of a list refusing a public resolver (degraded); every
    /// other target is clean.
    pub fn demo(lists: &[ListConfig]) -> Self {
        let mut zone = Zone::new(60);
        let mut first_ip_list = true;
        for list in lists {
            let name = list.query_zone();
            zone.add_zone(&name);
            let code = list.meanings.keys().next().copied();
            let (listed, _) = list.canaries();
            match list.kind {
                ListKind::Ip => {
                    let code = code.unwrap_or(Ipv4Addr::new(127, 0, 0, 2));
                    zone.add(&name, &listed, Ipv4Addr::new(127, 0, 0, 2), Some("RFC 5782 test point"));
                    let ip = |last| Target::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)));
                    let txt = format!("demo listing on {}: see docs/reputation.md", list.name);
                    zone.add(&name, &ip(2), code, Some(&txt));
                    if first_ip_list {
                        let second = list.meanings.keys().nth(1).copied().unwrap_or(code);
                        zone.add(&name, &ip(3), second, Some(&txt));
                        first_ip_list = false;
                    }
                    zone.add(&name, &ip(4), Ipv4Addr::new(127, 255, 255, 254), None);
                }
                ListKind::Domain => {
                    let code = code.unwrap_or(Ipv4Addr::new(127, 0, 1, 2));
                    zone.add(&name, &listed, code, Some("RFC 5782 test point"));
                }
            }
        }
        zone
    }

    /// How many queries [`serve`] received so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    fn in_zone(&self, name: &str) -> bool {
        self.zones.iter().any(|z| name == z || name.strip_suffix(z.as_str()).is_some_and(|rest| rest.ends_with('.')))
    }

    /// The response to a query message, or `None` for what is not a query.
    pub fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        let Some(question) = request.queries.first().cloned() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response.to_vec().ok();
        };
        let name = normalise(&question.name().to_ascii());
        response.add_query(question.clone());
        if !self.in_zone(&name) {
            response.metadata.response_code = ResponseCode::Refused;
            return response.to_vec().ok();
        }
        response.metadata.authoritative = true;
        match self.entries.get(&name) {
            None => response.metadata.response_code = ResponseCode::NXDomain,
            Some(entry) => match question.query_type() {
                RecordType::A => {
                    for addr in &entry.addrs {
                        response.add_answer(Record::from_rdata(question.name().clone(), self.ttl, RData::A(A(*addr))));
                    }
                }
                RecordType::TXT => {
                    if let Some(txt) = &entry.txt {
                        response.add_answer(Record::from_rdata(
                            question.name().clone(),
                            self.ttl,
                            RData::TXT(TXT::new(vec![txt.clone()])),
                        ));
                    }
                }
                _ => {}
            },
        }
        response.to_vec().ok()
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Binds a UDP socket on 127.0.0.1 (port 0 for any free one).
pub async fn bind(port: u16) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// Answers queries on `socket` until `shutdown` turns true or its sender
/// is dropped.
pub async fn serve(socket: UdpSocket, zone: Arc<Zone>, mut shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                zone.served.fetch_add(1, Ordering::Relaxed);
                if let Some(reply) = zone.answer(&buf[..len]) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poller::{Poller, PollerConfig};
    use crate::State;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn list(name: &str, zone: &str, kind: ListKind) -> ListConfig {
        ListConfig {
            name: name.into(),
            zone: zone.into(),
            kind,
            meanings: BTreeMap::new(),
            weight: 1.0,
            query_key: None,
            max_qps: 1000.0,
            max_queries_per_day: None,
        }
    }

    #[test]
    fn the_demo_zone_shows_listed_clean_and_degraded_targets_to_the_poller() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let lists = vec![list("zen", "zen.example", ListKind::Ip), list("dbl", "dbl.example", ListKind::Domain)];
            let socket = bind(0).await.unwrap();
            let addr = socket.local_addr().unwrap();
            let (stop, stopped) = watch::channel(false);
            let server = tokio::spawn(serve(socket, Arc::new(Zone::demo(&lists)), stopped));
            let targets = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "mail.example.com"]
                .iter()
                .map(|t| Target::parse(t).unwrap())
                .collect();
            let mut poller = Poller::new(PollerConfig {
                resolver: addr,
                timeout: Duration::from_secs(2),
                interval: Duration::from_secs(60),
                jitter: 0.0,
                recheck_after: Duration::from_secs(60),
                cache_capacity: 16,
                max_cache_ttl: Duration::from_secs(60),
                lists,
                targets,
                seed: 0,
            })
            .unwrap();
            let report = poller.sweep().await;
            assert!(report.lists.iter().all(|l| l.canaries_ok), "{:?}", report.lists);
            let states: Vec<(String, State)> =
                report.observations.iter().map(|o| (o.target.clone(), o.state)).collect();
            assert_eq!(
                states,
                [
                    ("192.0.2.1".to_owned(), State::Clean),
                    ("192.0.2.2".to_owned(), State::Listed),
                    ("192.0.2.3".to_owned(), State::Listed),
                    ("192.0.2.4".to_owned(), State::Degraded),
                    ("mail.example.com".to_owned(), State::Clean),
                ]
            );
            let listed = &report.observations[1];
            assert_eq!(listed.txt.as_deref(), Some("demo listing on zen: see docs/reputation.md"));
            assert_eq!(report.observations[3].degraded.as_deref(), Some("public_resolver"));
            stop.send(true).unwrap();
            server.await.unwrap();
        });
    }

    #[test]
    fn names_outside_the_zones_are_refused_and_junk_is_ignored() {
        let mut zone = Zone::new(60);
        zone.add_zone("bl.example");
        assert_eq!(zone.answer(b"not a dns message"), None);
        let mut query = Message::query();
        query.add_query(hickory_resolver::proto::op::Query::query("x.other.example.".parse().unwrap(), RecordType::A));
        let reply = Message::from_vec(&zone.answer(&query.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        let mut query = Message::query();
        query.add_query(hickory_resolver::proto::op::Query::query(
            "1.0.0.127.bl.example.".parse().unwrap(),
            RecordType::A,
        ));
        let reply = Message::from_vec(&zone.answer(&query.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(zone.in_zone("bl.example") && !zone.in_zone("xbl.example"));
    }
}
