//! The fixed shape of a DNSBL reputation source, and the checks of what its
//! `dnsbl { … }` block names (targets, zones, codes). No I/O: the poller
//! lives in the `reputation` crate.

use crate::plan::Scalar;
use std::net::{IpAddr, Ipv4Addr};

/// One field of a DNSBL observation: JSON key, type, nullable, event time.
pub struct ObservationField {
    /// The JSON key.
    pub name: &'static str,
    /// Its type.
    pub scalar: Scalar,
    /// Whether it may be null.
    pub nullable: bool,
    /// Whether it is the event time.
    pub is_event_time: bool,
}

const fn field(name: &'static str, scalar: Scalar, nullable: bool) -> ObservationField {
    ObservationField { name, scalar, nullable, is_event_time: false }
}

/// The fields of every `dnsbl` source: one observation of one target on one
/// list in one sweep. The poller writes exactly these JSON keys.
pub const OBSERVATION_FIELDS: &[ObservationField] = &[
    ObservationField { name: "time", scalar: Scalar::Timestamp, nullable: false, is_event_time: true },
    field("list", Scalar::String, false),
    field("zone", Scalar::String, false),
    field("kind", Scalar::String, false),
    field("target", Scalar::String, false),
    field("status", Scalar::String, false),
    field("code", Scalar::String, true),
    field("meaning", Scalar::String, true),
    field("degraded", Scalar::String, true),
    field("txt", Scalar::String, true),
    field("weight", Scalar::Float, false),
    field("resolver", Scalar::String, false),
    field("budget_used", Scalar::Float, false),
    field("latency_ms", Scalar::Int, false),
    field("cached", Scalar::Bool, false),
];

/// A `dnsbl` source without `every` sweeps this often.
pub const DEFAULT_EVERY_MS: u64 = 300_000;
/// Sweeps may not come closer than this: lists throttle and ban eager pollers.
pub const MIN_EVERY_MS: u64 = 10_000;
/// A list without `max_qps` sends at most this many queries a second.
pub const DEFAULT_MAX_QPS: f64 = 10.0;
/// A CIDR block among the targets holds at most this many addresses.
pub const MAX_BLOCK_ADDRESSES: u128 = 65_536;

/// How many targets `spec` (an address, a CIDR block or a domain) stands for,
/// or why it stands for none.
pub fn target_count(spec: &str) -> Result<u128, String> {
    if let Some((addr, len)) = spec.split_once('/') {
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("`/{len}` is not a prefix length from 0 to {max}"))?;
        let count = 1u128.checked_shl(max - len).unwrap_or(u128::MAX);
        if count > MAX_BLOCK_ADDRESSES {
            return Err(format!("a block of {count} addresses; at most {MAX_BLOCK_ADDRESSES} are polled per block"));
        }
        return Ok(count);
    }
    if spec.parse::<IpAddr>().is_ok() || is_domain(spec) {
        Ok(1)
    } else {
        Err("neither an IP address, a CIDR block nor a domain name".to_string())
    }
}

/// A plausible DNS name: dot-separated labels of letters, digits, `-` and
/// `_`, each 1 to 63 bytes, 253 bytes in all.
pub fn is_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A listing code: an IPv4 address inside 127.0.0.0/8.
pub fn listing_code(text: &str) -> Option<Ipv4Addr> {
    text.parse::<Ipv4Addr>().ok().filter(|a| a.octets()[0] == 127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_addresses_blocks_or_domains() {
        assert_eq!(target_count("192.0.2.1"), Ok(1));
        assert_eq!(target_count("2001:db8::1"), Ok(1));
        assert_eq!(target_count("mail.example.com"), Ok(1));
        assert_eq!(target_count("192.0.2.0/28"), Ok(16));
        assert_eq!(target_count("2001:db8::/120"), Ok(256));
        assert!(target_count("10.0.0.0/8").unwrap_err().contains("16777216"));
        assert!(target_count("::/0").is_err());
        assert!(target_count("192.0.2.0/33").is_err());
        assert!(target_count("not a host").is_err());
        assert!(target_count("").is_err());
    }

    #[test]
    fn codes_are_loopback_addresses() {
        assert_eq!(listing_code("127.0.0.2"), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(listing_code("10.0.0.2"), None);
        assert_eq!(listing_code("SBL"), None);
    }
}
