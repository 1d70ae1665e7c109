//! A deterministic generator of realistic MTA delivery events, for the
//! embedded demo, `streamctl gen`, the tests and the benchmarks.
//!
//! It follows the distributions of the shared workload description: event
//! types (85% delivered, 8% deferred, 5% bounced, …), Zipf-distributed sender
//! and recipient domains, mailbox providers derived from the recipient,
//! lognormal latencies and sizes, bounded disorder with 0.1% late events, and
//! provider-specific SMTP diagnostics. The diagnostic texts are written for
//! this crate. The same seed always produces the same events.

#![deny(missing_docs)]

use std::fmt::Write;

/// Settings of a generated stream.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seeds the world and the stream.
    pub seed: u64,
    /// Event time of the first event, ms since the epoch.
    pub start_ms: i64,
    /// Event-time rate, events per second.
    pub rate_per_s: f64,
    /// Fraction of lines replaced by malformed ones.
    pub bad_ratio: f64,
    /// Whether engagement events (`opened`, `clicked`) are generated; without
    /// them the other event types keep their relative shares.
    pub engagement: bool,
}

impl Default for Config {
    fn default() -> Self {
        // 2024-06-03T00:00:00Z at 926 events/s, 80M a day.
        Config { seed: 42, start_ms: 1_717_372_800_000, rate_per_s: 926.0, bad_ratio: 0.0, engagement: true }
    }
}

/// A small, fast, deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Lognormal with the given median and sigma.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

/// Samples indices 0..n with probability ∝ 1/(rank+1)^s.
#[derive(Debug, Clone)]
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cdf = (0..n)
            .map(|i| {
                total += 1.0 / ((i + 1) as f64).powf(s);
                total
            })
            .collect::<Vec<_>>();
        Zipf { cdf: cdf.into_iter().map(|c| c / total).collect() }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// Named mailbox domains: (domain, share of all mail, provider, MX host).
const MAILBOXES: &[(&str, f64, &str, &str)] = &[
    ("gmail.com", 0.30, "gmail", "gmail-smtp-in.l.google.com"),
    ("yahoo.com", 0.08, "yahoo", "mta7.am0.yahoodns.net"),
    ("hotmail.com", 0.06, "microsoft", "hotmail-com.olc.protection.outlook.com"),
    ("outlook.com", 0.04, "microsoft", "outlook-com.olc.protection.outlook.com"),
    ("icloud.com", 0.04, "apple", "mx01.mail.icloud.com"),
    ("aol.com", 0.015, "yahoo", "mx-aol.mail.gm0.yahoodns.net"),
    ("live.com", 0.01, "microsoft", "live-com.olc.protection.outlook.com"),
    ("gmx.de", 0.01, "gmx", "mx00.emig.gmx.net"),
    ("web.de", 0.008, "gmx", "mx-ha02.web.de"),
    ("orange.fr", 0.007, "orange", "smtp-in.orange.fr"),
    ("yandex.ru", 0.006, "yandex", "mx.yandex.ru"),
    ("mail.ru", 0.006, "mailru", "mxs.mail.ru"),
    ("qq.com", 0.005, "tencent", "mx3.qq.com"),
    ("proton.me", 0.004, "proton", "mail.protonmail.ch"),
    ("att.net", 0.004, "yahoo", "al-ip4-mx-vip1.prodigy.net"),
    ("comcast.net", 0.004, "other", "mx1a1.comcast.net"),
];

/// Providers of generated business domains, by share (most are Microsoft 365 or Google Workspace).
const BUSINESS_PROVIDERS: &[(&str, f64)] =
    &[("microsoft", 0.45), ("gmail", 0.25), ("proofpoint", 0.08), ("mimecast", 0.1), ("other", 0.12)];

/// (event, smtp code, enhanced status, provider or "" for any, diagnostic).
/// Placeholders: {rcpt} {ip} {sd} {mx} {n}.
const BOUNCES: &[(u16, &str, &str, &str)] = &[
    (550, "5.1.1", "", "550 5.1.1 <{rcpt}>: Recipient address rejected: no such user here"),
    (550, "5.1.1", "", "550 5.1.1 {rcpt}... User unknown"),
    (
        550,
        "5.1.1",
        "gmail",
        "550 5.1.1 The addressed mailbox could not be located; check the address for typos. q{n} - gsmtp",
    ),
    (550, "5.1.10", "microsoft", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; {rcpt} not found in the directory [{mx}]"),
    (554, "5.1.1", "yahoo", "554 delivery error: dd No account by that name is registered here - {mx}"),
    (550, "5.2.1", "", "550 5.2.1 The mailbox {rcpt} has been disabled"),
    (552, "5.2.2", "", "552 5.2.2 <{rcpt}>: Mailbox full, message permanently rejected"),
    (550, "5.7.1", "gmail", "550 5.7.1 This message looks like unsolicited mail and was blocked. q{n} - gsmtp"),
    (554, "5.7.1", "", "554 5.7.1 Service unavailable; client host [{ip}] blocked using zen.spamhaus.org"),
    (550, "5.7.1", "", "550 5.7.1 SPF check failed: {ip} is not permitted to send for {sd}"),
    (
        550,
        "5.7.26",
        "gmail",
        "550 5.7.26 Unauthenticated mail from {sd} is not accepted because of its DMARC policy - gsmtp",
    ),
    (554, "5.7.9", "yahoo", "554 5.7.9 Message not accepted for policy reasons. See the postmaster pages"),
    (552, "5.3.4", "", "552 5.3.4 Message size exceeds the fixed limit of {n} bytes"),
    (550, "5.7.25", "", "550 5.7.25 The sending IP {ip} has no reverse DNS (PTR) record"),
    (554, "5.4.4", "", "554 5.4.4 Host or domain name not found for {rcpt}"),
    (550, "5.7.1", "microsoft", "550 5.7.1 Content rejected: the message was classified as spam [{mx}]"),
];

/// Deferral diagnostics, same layout.
const DEFERRALS: &[(u16, &str, &str, &str)] = &[
    (
        452,
        "4.2.2",
        "gmail",
        "452 4.2.2 The recipient's mailbox is over its storage limit; try again later. q{n} - gsmtp",
    ),
    (452, "4.2.2", "", "452 4.2.2 Mailbox full: {rcpt} has exceeded its quota"),
    (
        421,
        "4.7.0",
        "yahoo",
        "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints",
    ),
    (
        451,
        "4.7.500",
        "microsoft",
        "451 4.7.500 Access temporarily denied for {ip}; too much suspicious traffic, retry later [{mx}]",
    ),
    (450, "4.7.1", "", "450 4.7.1 Greylisted, please try again in {n} seconds"),
    (421, "4.7.28", "gmail", "421 4.7.28 Unusual rate of mail from {ip}; rate limited, try again later. q{n} - gsmtp"),
    (451, "4.3.0", "", "451 4.3.0 Temporary system failure, please retry"),
    (454, "4.7.5", "", "454 4.7.5 TLS negotiation failed with {mx}"),
    (421, "4.4.2", "", "421 4.4.2 Connection timed out while talking to {mx}"),
];

/// An endless, deterministic stream of delivery events as JSON lines.
#[derive(Debug, Clone)]
pub struct Generator {
    config: Config,
    rng: Rng,
    index: u64,
    senders: Vec<(String, usize)>,
    sender_zipf: Zipf,
    business: Vec<(String, &'static str)>,
    business_zipf: Zipf,
    pools: Vec<(&'static str, Vec<String>)>,
    mailbox_cdf: Vec<f64>,
    malformed: u64,
    text: String,
}

impl Generator {
    /// A generator for `config`.
    pub fn new(config: Config) -> Self {
        let mut rng = Rng::new(config.seed);
        let words = ["peak", "tundra", "prism", "juniper", "atlas", "harbor", "ember", "summit", "meadow", "quartz"];
        let kinds = ["shop", "news", "co", "labs", "mail", "travel", "bank", "games"];
        let prefixes = ["", "news.", "em.", "mail.", "e."];
        let senders = (0..10_000)
            .map(|i| {
                let name = format!(
                    "{}{}{}{}.com",
                    prefixes[rng.below(prefixes.len())],
                    words[rng.below(words.len())],
                    kinds[rng.below(kinds.len())],
                    i
                );
                (name, rng.below(5000))
            })
            .collect();
        let business = (0..50_000)
            .map(|i| {
                let u = rng.unit();
                let mut acc = 0.0;
                let provider = BUSINESS_PROVIDERS.iter().find(|(_, share)| {
                    acc += share;
                    u < acc
                });
                (
                    format!("{}-{}{i}.com", words[rng.below(words.len())], kinds[rng.below(kinds.len())]),
                    provider.map_or("other", |p| p.0),
                )
            })
            .collect();
        let pool_sizes = [
            ("shared-a", 128),
            ("shared-b", 64),
            ("shared-c", 64),
            ("transactional", 64),
            ("marketing-1", 64),
            ("marketing-2", 32),
            ("dedicated-1", 32),
            ("dedicated-2", 16),
            ("dedicated-3", 16),
            ("warmup", 16),
        ];
        let subnets = ["192.0.2", "198.51.100", "203.0.113"];
        let mut ip = 0usize;
        let pools = pool_sizes
            .iter()
            .map(|(name, size)| {
                let ips = (0..*size)
                    .map(|_| {
                        ip += 1;
                        format!("{}.{}", subnets[ip / 250 % 3], ip % 250 + 1)
                    })
                    .collect();
                (*name, ips)
            })
            .collect();
        let mut acc = 0.0;
        let mailbox_cdf = MAILBOXES
            .iter()
            .map(|(_, share, _, _)| {
                acc += share;
                acc
            })
            .collect();
        Generator {
            rng: Rng::new(config.seed.wrapping_mul(31).wrapping_add(7)),
            config,
            index: 0,
            senders,
            sender_zipf: Zipf::new(10_000, 1.05),
            business,
            business_zipf: Zipf::new(50_000, 1.0),
            pools,
            mailbox_cdf,
            malformed: 0,
            text: String::new(),
        }
    }

    /// How many events have been generated.
    pub fn generated(&self) -> u64 {
        self.index
    }

    /// How many of the generated lines are malformed (see [`Config::bad_ratio`]).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// The next line (without newline) into `out` (cleared first), as bytes:
    /// a malformed line may not be UTF-8.
    pub fn next_line(&mut self, out: &mut Vec<u8>) {
        let mut text = std::mem::take(&mut self.text);
        let corruption = self.next_event(&mut text);
        out.clear();
        out.extend_from_slice(text.as_bytes());
        self.text = text;
        if let Some(kind) = corruption {
            self.malformed += 1;
            corrupt(out, kind, &mut self.rng);
        }
    }

    /// The next line (without newline) into `out` (cleared first); a
    /// malformed line that is not UTF-8 has its bad bytes replaced by U+FFFD.
    pub fn next_into(&mut self, out: &mut String) {
        let mut bytes = std::mem::take(out).into_bytes();
        self.next_line(&mut bytes);
        *out = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
    }

    /// The next event into `out` (cleared first), and how it is to be
    /// corrupted, if it is.
    fn next_event(&mut self, out: &mut String) -> Option<usize> {
        out.clear();
        let i = self.index;
        self.index += 1;
        let rng = &mut self.rng;
        let nominal = self.config.start_ms as f64 + i as f64 * 1000.0 / self.config.rate_per_s;
        let jitter =
            if rng.unit() < 0.95 { (rng.unit() * 2.0 - 1.0) * 1500.0 } else { (rng.unit() * 2.0 - 1.0) * 5000.0 };
        let late = if rng.unit() < 0.001 { 60_000.0 + rng.unit() * 840_000.0 } else { 0.0 };
        let ts = (nominal + jitter - late) as i64;
        let u = if self.config.engagement { rng.unit() } else { rng.unit() * 0.983 };
        let event = match u {
            u if u < 0.85 => "delivered",
            u if u < 0.93 => "deferred",
            u if u < 0.98 => "bounced",
            u if u < 0.983 => "complained",
            u if u < 0.995 => "opened",
            _ => "clicked",
        };
        let (sender, account) = &self.senders[self.sender_zipf.sample(rng)];
        let (pool, ips) = &self.pools[(account * 7 + i as usize % 3) % self.pools.len()];
        let ip = &ips[rng.below(ips.len())];
        let u = rng.unit();
        let (rcpt_domain, provider, mx) = match self.mailbox_cdf.iter().position(|c| u < *c) {
            Some(m) => (MAILBOXES[m].0.to_string(), MAILBOXES[m].2, MAILBOXES[m].3.to_string()),
            None => {
                let (domain, provider) = &self.business[self.business_zipf.sample(rng)];
                let mx = match *provider {
                    "microsoft" => format!("{}.mail.protection.outlook.com", domain.replace('.', "-")),
                    "gmail" => "aspmx.l.google.com".to_string(),
                    "proofpoint" => format!("mx0a-{}.pphosted.com", rng.below(9000) + 1000),
                    "mimecast" => "eu-smtp-inbound-1.mimecast.com".to_string(),
                    _ => format!("mx1.{domain}"),
                };
                (domain.clone(), *provider, mx)
            }
        };
        let rcpt = format!("user{}@{rcpt_domain}", rng.below(100_000));
        let (code, status, diagnostic, attempt, latency) = match event {
            "deferred" | "bounced" => {
                let table = if event == "bounced" { BOUNCES } else { DEFERRALS };
                // Provider-specific wordings are three times as likely for their provider.
                let weights: Vec<f64> = table
                    .iter()
                    .map(|(_, _, p, _)| {
                        if p.is_empty() {
                            1.0
                        } else if *p == provider {
                            3.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let total: f64 = weights.iter().sum();
                let mut pick = rng.unit() * total;
                let t = weights.iter().position(|w| {
                    pick -= w;
                    pick < 0.0
                });
                let (code, status, _, text) = table[t.unwrap_or(0)];
                let text = text
                    .replace("{rcpt}", &rcpt)
                    .replace("{ip}", ip)
                    .replace("{sd}", sender)
                    .replace("{mx}", &mx)
                    .replace("{n}", &rng.below(100_000).to_string());
                let (median, sigma) = if event == "bounced" { (600.0, 1.0) } else { (2500.0, 1.2) };
                (
                    code,
                    status,
                    Some(text),
                    1 + rng.below(if event == "bounced" { 3 } else { 8 }),
                    rng.lognormal(median, sigma),
                )
            }
            "delivered" | "complained" => (
                250,
                "2.0.0",
                Some(format!("250 2.0.0 OK {:08x}", rng.next_u64() as u32)),
                1 + usize::from(rng.unit() < 0.1),
                rng.lognormal(850.0, 0.9),
            ),
            _ => (250, "2.0.0", None, 1, 0.0),
        };
        let size = if status == "5.3.4" {
            25_000_000.0 + rng.unit() * 100_000_000.0
        } else {
            rng.lognormal(38_000.0, 0.85).clamp(900.0, 30e6)
        };
        let _ = write!(
            out,
            r#"{{"ts":"{}","event":"{event}","message_id":"{:010x}.{i:x}@esp.example","account_id":"acct_{account:06}","sender_domain":"{sender}","sending_ip":"{ip}","ip_pool":"{pool}","recipient_domain":"{rcpt_domain}","provider":"{provider}","mx_host":"{mx}","smtp_code":{code},"status":"{status}","diagnostic":{},"attempt":{attempt},"latency_ms":{},"size_bytes":{}}}"#,
            engine::value::format_timestamp(ts),
            rng.next_u64() & 0xff_ffff_ffff,
            diagnostic.map_or("null".to_string(), |d| serde_json::Value::String(d).to_string()),
            latency.round() as i64,
            size.round() as i64,
        );
        (self.config.bad_ratio > 0.0 && rng.unit() < self.config.bad_ratio).then(|| rng.below(CORRUPTIONS))
    }
}

impl Iterator for Generator {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        let mut line = String::new();
        self.next_into(&mut line);
        Some(line)
    }
}

/// How many kinds of malformed lines [`corrupt`] makes.
const CORRUPTIONS: usize = 8;

/// Replaces a good line with malformed kind `kind` (below [`CORRUPTIONS`]):
/// cut short, a number as a string, a required field renamed, not JSON, a
/// bad timestamp, JSON but not an object, not UTF-8, blank.
fn corrupt(line: &mut Vec<u8>, kind: usize, rng: &mut Rng) {
    let replace = |line: &mut Vec<u8>, from: &str, to: &str| {
        let text = String::from_utf8_lossy(line).replacen(from, to, 1);
        *line = text.into_bytes();
    };
    match kind {
        0 => {
            // Cut at an ASCII byte, so what is left stays UTF-8.
            let cut = rng.below(line.len());
            let cut = (0..=cut).rev().find(|c| line.get(*c).is_none_or(u8::is_ascii)).unwrap_or(0);
            line.truncate(cut.max(1));
        }
        1 => {
            replace(line, r#""latency_ms":"#, r#""latency_ms":"1"#);
            replace(line, r#","size_bytes""#, r#"ms","size_bytes""#);
        }
        2 => replace(line, r#""ts":"#, r#""tz":"#),
        3 => *line = b"not json at all".to_vec(),
        4 => replace(line, r#""ts":"20"#, r#""ts":"yesterday-"#),
        5 => {
            line.insert(0, b'[');
            line.push(b']');
        }
        6 => {
            // A Latin-1 byte in the sender domain, as a misconfigured relay writes it.
            let at = find_bytes(line, br#""sender_domain":""#).map_or(0, |i| i + 17);
            line.insert(at, 0xe9);
        }
        _ => line.clear(),
    }
}

/// Where `needle` first occurs in `haystack`.
fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_valid_json_shape() {
        let a: Vec<String> = Generator::new(Config::default()).take(2000).collect();
        let b: Vec<String> = Generator::new(Config::default()).take(2000).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|l| l.starts_with("{\"ts\":\"2024-06-0") && l.ends_with('}')), "{}", a[0]);
        let bounced = a.iter().filter(|l| l.contains("\"event\":\"bounced\"")).count();
        assert!((50..=160).contains(&bounced), "about 5% bounced, got {bounced}");
    }

    #[test]
    fn without_engagement_there_are_no_opens_or_clicks_and_the_rest_keep_their_shares() {
        let config = Config { engagement: false, ..Config::default() };
        let lines: Vec<String> = Generator::new(config).take(20_000).collect();
        let count = |event: &str| lines.iter().filter(|l| l.contains(&format!("\"event\":\"{event}\""))).count();
        assert_eq!(count("opened") + count("clicked"), 0);
        let delivered = count("delivered") as f64 / lines.len() as f64;
        assert!((0.85..0.88).contains(&delivered), "delivered {delivered}");
        assert!(count("complained") > 0);
    }

    #[test]
    fn malformed_lines_are_counted_and_of_every_kind() {
        let mut generator = Generator::new(Config { bad_ratio: 0.2, seed: 5, ..Config::default() });
        let mut line = Vec::new();
        let (mut not_utf8, mut blank, mut not_object, mut bad) = (0, 0, 0, 0);
        for _ in 0..5_000 {
            generator.next_line(&mut line);
            let text = std::str::from_utf8(&line);
            not_utf8 += usize::from(text.is_err());
            blank += usize::from(line.is_empty());
            not_object += usize::from(line.first() == Some(&b'['));
            let good = text.ok().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()).is_some_and(|v| {
                v.get("ts").and_then(|ts| ts.as_str()).is_some_and(|ts| ts.starts_with("20"))
                    && v.get("latency_ms").is_some_and(serde_json::Value::is_i64)
            });
            bad += usize::from(!good);
        }
        assert_eq!(bad as u64, generator.malformed(), "every malformed line is counted, and only those");
        assert!((900..1100).contains(&bad), "about 20% malformed: {bad}");
        assert!(not_utf8 > 50 && blank > 50 && not_object > 50, "{not_utf8} {blank} {not_object}");
    }
}
