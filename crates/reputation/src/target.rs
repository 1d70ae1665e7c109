//! What a DNSBL is asked about, and the name it is asked under.
//!
//! An IP list is queried with the address reversed (IPv4 octets, IPv6
//! nibbles) in front of the zone: `2.0.0.127.zen.example` asks about
//! `127.0.0.2`. A domain list is queried with the domain itself in front of
//! the zone: `example.com.dbl.example`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Whether a list is about IP addresses or about domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Ip,
    Domain,
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListKind::Ip => "ip",
            ListKind::Domain => "domain",
        })
    }
}

/// One thing to look up: an address or a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Target {
    Ip(IpAddr),
    Domain(String),
}

impl Target {
    /// Parses an address or a domain name (lower-cased, without a trailing dot).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Target::Ip(ip));
        }
        let domain = text.trim_end_matches('.').to_ascii_lowercase();
        if dsl::dnsbl::is_domain(&domain) {
            Ok(Target::Domain(domain))
        } else {
            Err(Error::BadTarget { target: text.to_owned(), why: "neither an IP address nor a domain name" })
        }
    }

    pub fn kind(&self) -> ListKind {
        match self {
            Target::Ip(_) => ListKind::Ip,
            Target::Domain(_) => ListKind::Domain,
        }
    }

    /// The name to query in `zone`, without a trailing dot.
    pub fn query_name(&self, zone: &str) -> String {
        let zone = zone.trim_end_matches('.');
        match self {
            Target::Ip(IpAddr::V4(ip)) => format!("{}.{zone}", reversed_v4(*ip)),
            Target::Ip(IpAddr::V6(ip)) => format!("{}.{zone}", reversed_v6(*ip)),
            Target::Domain(domain) => format!("{domain}.{zone}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ip(ip) => write!(f, "{ip}"),
            Target::Domain(domain) => f.write_str(domain),
        }
    }
}

fn reversed_v4(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}")
}

fn reversed_v6(ip: Ipv6Addr) -> String {
    let mut out = String::with_capacity(63);
    for byte in ip.octets().iter().rev() {
        for nibble in [byte & 0x0f, byte >> 4] {
            if !out.is_empty() {
                out.push('.');
            }
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

/// Expands a target specification, an address, a CIDR block or a domain,
/// into targets, refusing a block of more than `max` addresses so that a
/// typo (`10.0.0.0/8`) cannot make the poller's memory or query count explode.
pub fn expand(spec: &str, max: usize) -> Result<Vec<Target>> {
    let spec = spec.trim();
    if !spec.contains('/') {
        return Ok(vec![Target::parse(spec)?]);
    }
    let net: IpNet = spec.parse().map_err(|_| Error::BadTarget { target: spec.to_owned(), why: "not a CIDR block" })?;
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
    if size > max as u128 {
        return Err(Error::TooManyTargets { target: spec.to_owned(), max });
    }
    // Every address of the block: a block of sending IPs has no network or
    // broadcast address to skip.
    Ok(net_addresses(net).map(Target::Ip).collect())
}

fn net_addresses(net: IpNet) -> impl Iterator<Item = IpAddr> {
    let (first, last): (u128, u128) = match net {
        IpNet::V4(n) => (u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast()))),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    };
    let v4 = matches!(net, IpNet::V4(_));
    (first..=last).map(move |n| if v4 { IpAddr::V4(Ipv4Addr::from(n as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_octets_are_reversed_before_the_zone() {
        let t = Target::parse("127.0.0.2").unwrap();
        assert_eq!(t.query_name("zen.spamhaus.org"), "2.0.0.127.zen.spamhaus.org");
        assert_eq!(t.query_name("zen.spamhaus.org."), "2.0.0.127.zen.spamhaus.org");
        let t = Target::parse("192.0.2.99").unwrap();
        assert_eq!(t.query_name("bl.example"), "99.2.0.192.bl.example");
    }

    #[test]
    fn ipv6_nibbles_are_reversed_before_the_zone() {
        // RFC 5782 section 2.4's example address.
        let t = Target::parse("2001:db8:1:2:3:4:567:89ab").unwrap();
        assert_eq!(
            t.query_name("ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
        let t = Target::parse("::2").unwrap();
        assert!(t.query_name("z").starts_with("2.0.0.0."));
        assert_eq!(t.query_name("z").split('.').count(), 33);
    }

    #[test]
    fn domains_are_lower_cased_and_put_before_the_zone() {
        let t = Target::parse("Mail.Example.COM.").unwrap();
        assert_eq!(t, Target::Domain("mail.example.com".into()));
        assert_eq!(t.kind(), ListKind::Domain);
        assert_eq!(t.query_name("dbl.example"), "mail.example.com.dbl.example");
    }

    #[test]
    fn junk_is_a_clear_error() {
        for bad in ["", "a..b", "exa mple.com", "x/y", &"a".repeat(64), "1.2.3.4/33"] {
            assert!(expand(bad, 16).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cidr_blocks_expand_to_every_address_up_to_a_limit() {
        let all = expand("192.0.2.0/30", 16).unwrap();
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        assert_eq!(expand("2001:db8::/126", 4).unwrap().len(), 4);
        assert!(matches!(expand("10.0.0.0/8", 1024), Err(Error::TooManyTargets { max: 1024, .. })));
        assert!(matches!(expand("2001:db8::/0", 1024), Err(Error::TooManyTargets { .. })));
        assert_eq!(expand("198.51.100.7", 1).unwrap().len(), 1);
    }
}
