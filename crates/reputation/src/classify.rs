//! What an answer from a DNSBL means: listed, clean, or degraded.
//!
//! Degraded is the third state: the list or the path to it did not give a
//! usable answer (an error code, a rewritten NXDOMAIN, a timeout, a
//! SERVFAIL), so the target is neither known clean nor known listed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// What the resolver returned for a target's `A` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `A` records, with the smallest TTL among them.
    Addresses { addrs: Vec<Ipv4Addr>, ttl: u32 },
    /// NXDOMAIN: the name does not exist, not listed.
    NxDomain { ttl: Option<u32> },
    /// The name exists but has no `A` record: not listed.
    NoData { ttl: Option<u32> },
    /// SERVFAIL from the resolver.
    ServFail,
    /// REFUSED from the resolver.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// Anything else that went wrong on the way (network, malformed reply).
    Failed(String),
}

/// The three states of a target on a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Clean,
    Listed,
    Degraded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Clean => "clean",
            State::Listed => "listed",
            State::Degraded => "degraded",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Degraded {
    /// 127.255.255.252: the zone name is wrong.
    ZoneTypo,
    /// 127.255.255.254: the query came through a public or unattributable resolver.
    PublicResolver,
    /// 127.255.255.255: too many queries.
    RateLimited,
    /// 127.255.255.250 or .251: the data-query key is wrong or missing.
    BadQueryKey,
    /// 127.0.1.255: an IP address was sent to a domain list.
    WrongTargetKind,
    /// Another code of the 127.255.255.0/24 error range, or 127.0.0.1,
    /// which RFC 5782 reserves and no list uses as a listing.
    ListError,
    /// An address outside 127.0.0.0/8: a resolver rewrote NXDOMAIN.
    ResolverRewrite,
    /// The list's canaries failed this cycle: nothing it says can be trusted.
    CanaryFailed,
    /// The list's query budget for the day is used up; not queried.
    BudgetExhausted,
    Timeout,
    ServFail,
    Refused,
    Failed,
}

impl Degraded {
    pub fn as_str(&self) -> &'static str {
        match self {
            Degraded::ZoneTypo => "zone_typo",
            Degraded::PublicResolver => "public_resolver",
            Degraded::RateLimited => "rate_limited",
            Degraded::BadQueryKey => "bad_query_key",
            Degraded::WrongTargetKind => "wrong_target_kind",
            Degraded::ListError => "list_error",
            Degraded::ResolverRewrite => "resolver_rewrite",
            Degraded::CanaryFailed => "canary_failed",
            Degraded::BudgetExhausted => "budget_exhausted",
            Degraded::Timeout => "timeout",
            Degraded::ServFail => "servfail",
            Degraded::Refused => "refused",
            Degraded::Failed => "failed",
        }
    }
}

/// The verdict on one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: State,
    /// The answer's codes (for a listing, the sub-lists; for an error code,
    /// the code), in the order they came.
    pub codes: Vec<Ipv4Addr>,
    /// What the codes mean: the list's names for them, or a description of
    /// the problem when degraded.
    pub meaning: Option<String>,
    pub degraded: Option<Degraded>,
    /// How long the answer may be cached (not for degraded answers).
    pub ttl: Option<u32>,
}

impl Verdict {
    fn clean(ttl: Option<u32>) -> Self {
        Verdict { state: State::Clean, codes: Vec::new(), meaning: None, degraded: None, ttl }
    }

    pub fn degraded(why: Degraded, codes: Vec<Ipv4Addr>, meaning: impl Into<String>) -> Self {
        Verdict { state: State::Degraded, codes, meaning: Some(meaning.into()), degraded: Some(why), ttl: None }
    }
}

/// What an error code of the 127.255.255.0/24 range (and 127.0.1.255) means.
fn error_code(code: Ipv4Addr) -> Option<(Degraded, &'static str)> {
    match code.octets() {
        [127, 255, 255, 252] => Some((Degraded::ZoneTypo, "the list's zone name is wrong")),
        [127, 255, 255, 254] => {
            Some((Degraded::PublicResolver, "query came through a public or unattributable resolver"))
        }
        [127, 255, 255, 255] => Some((Degraded::RateLimited, "too many queries")),
        [127, 255, 255, 250] | [127, 255, 255, 251] => {
            Some((Degraded::BadQueryKey, "the data-query key is wrong or missing"))
        }
        [127, 0, 1, 255] => Some((Degraded::WrongTargetKind, "an IP address was sent to a domain list")),
        [127, 255, 255, _] => Some((Degraded::ListError, "an error code of the list")),
        [127, 0, 0, 1] => Some((Degraded::ListError, "127.0.0.1 is never a listing (RFC 5782)")),
        _ => None,
    }
}

/// Classifies an answer. `meanings` names a list's listing codes
/// (`127.0.0.2` → `SBL`); a listing code it does not name is still a
/// listing, with the code as its meaning.
pub fn classify(answer: &Answer, meanings: &BTreeMap<Ipv4Addr, String>) -> Verdict {
    match answer {
        Answer::NxDomain { ttl } | Answer::NoData { ttl } => Verdict::clean(*ttl),
        Answer::Addresses { addrs, .. } if addrs.is_empty() => Verdict::clean(None),
        Answer::Addresses { addrs, ttl } => {
            if let Some(outside) = addrs.iter().find(|a| a.octets()[0] != 127) {
                return Verdict::degraded(
                    Degraded::ResolverRewrite,
                    addrs.clone(),
                    format!("answer {outside} is outside 127.0.0.0/8: the resolver rewrites NXDOMAIN"),
                );
            }
            if let Some((why, text)) = addrs.iter().find_map(|a| error_code(*a)) {
                return Verdict::degraded(why, addrs.clone(), text);
            }
            let meaning = addrs
                .iter()
                .map(|code| match meanings.get(code) {
                    Some(name) => name.clone(),
                    None => code.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",");
            Verdict {
                state: State::Listed,
                codes: addrs.clone(),
                meaning: Some(meaning),
                degraded: None,
                ttl: Some(*ttl),
            }
        }
        Answer::ServFail => Verdict::degraded(Degraded::ServFail, Vec::new(), "SERVFAIL"),
        Answer::Refused => Verdict::degraded(Degraded::Refused, Vec::new(), "REFUSED"),
        Answer::Timeout => Verdict::degraded(Degraded::Timeout, Vec::new(), "no answer in time"),
        Answer::Failed(why) => Verdict::degraded(Degraded::Failed, Vec::new(), why.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(addrs: &[[u8; 4]]) -> Answer {
        Answer::Addresses { addrs: addrs.iter().map(|o| Ipv4Addr::from(*o)).collect(), ttl: 300 }
    }

    fn spamhaus() -> BTreeMap<Ipv4Addr, String> {
        [([127, 0, 0, 2], "SBL"), ([127, 0, 0, 4], "XBL"), ([127, 0, 0, 10], "PBL")]
            .into_iter()
            .map(|(c, n)| (Ipv4Addr::from(c), n.to_owned()))
            .collect()
    }

    #[test]
    fn listing_codes_are_named_by_the_list() {
        let v = classify(&a(&[[127, 0, 0, 2], [127, 0, 0, 4]]), &spamhaus());
        assert_eq!(v.state, State::Listed);
        assert_eq!(v.meaning.as_deref(), Some("SBL,XBL"));
        assert_eq!(v.ttl, Some(300));
        let v = classify(&a(&[[127, 0, 0, 3]]), &spamhaus());
        assert_eq!(v.state, State::Listed);
        assert_eq!(v.meaning.as_deref(), Some("127.0.0.3"));
    }

    #[test]
    fn nxdomain_and_nodata_are_clean() {
        let m = spamhaus();
        assert_eq!(classify(&Answer::NxDomain { ttl: Some(60) }, &m).state, State::Clean);
        assert_eq!(classify(&Answer::NoData { ttl: None }, &m).state, State::Clean);
        assert_eq!(classify(&a(&[]), &m).state, State::Clean);
    }

    #[test]
    fn every_error_code_is_degraded_never_listed() {
        let cases = [
            ([127, 255, 255, 252], Degraded::ZoneTypo),
            ([127, 255, 255, 254], Degraded::PublicResolver),
            ([127, 255, 255, 255], Degraded::RateLimited),
            ([127, 255, 255, 250], Degraded::BadQueryKey),
            ([127, 255, 255, 251], Degraded::BadQueryKey),
            ([127, 0, 1, 255], Degraded::WrongTargetKind),
            ([127, 255, 255, 1], Degraded::ListError),
            ([127, 0, 0, 1], Degraded::ListError),
        ];
        for (code, why) in cases {
            let v = classify(&a(&[code]), &spamhaus());
            assert_eq!(v.state, State::Degraded, "{code:?}");
            assert_eq!(v.degraded, Some(why), "{code:?}");
            assert_eq!(v.ttl, None, "degraded answers are not cached");
            // An error code beside a listing code still spoils the answer.
            let v = classify(&a(&[[127, 0, 0, 2], code]), &spamhaus());
            assert_eq!(v.state, State::Degraded, "{code:?} with a listing");
        }
    }

    #[test]
    fn an_answer_outside_loopback_is_a_rewriting_resolver() {
        let v = classify(&a(&[[198, 51, 100, 1]]), &spamhaus());
        assert_eq!(v.degraded, Some(Degraded::ResolverRewrite));
        let v = classify(&a(&[[127, 0, 0, 2], [10, 0, 0, 1]]), &spamhaus());
        assert_eq!(v.degraded, Some(Degraded::ResolverRewrite));
    }

    #[test]
    fn transport_failures_are_degraded() {
        let m = spamhaus();
        for (answer, why) in [
            (Answer::Timeout, Degraded::Timeout),
            (Answer::ServFail, Degraded::ServFail),
            (Answer::Refused, Degraded::Refused),
            (Answer::Failed("io".into()), Degraded::Failed),
        ] {
            let v = classify(&answer, &m);
            assert_eq!((v.state, v.degraded), (State::Degraded, Some(why)));
        }
    }
}
