//! Mailbox providers by domain suffix, from the data table
//! `dsl/stdlib/providers.tsv`: what `provider(recipient_domain, mx_host)`
//! in the language evaluates to, and what `streamctl classify` derives.
//!
//! The table is data, not code: adding a provider is a line in the file.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The table as shipped (tab-separated `SUFFIX PROVIDER` lines, `#` comments).
pub const PROVIDERS_TSV: &str = include_str!("../../../dsl/stdlib/providers.tsv");

/// Parses a providers table; returns the problems with their line numbers.
///
/// # Errors
/// Lines that are not `SUFFIX<TAB>PROVIDER`, suffixes not in lower case,
/// and suffixes listed twice.
pub fn parse(text: &str) -> Result<HashMap<String, String>, Vec<String>> {
    let mut table = HashMap::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t').map(str::trim);
        match (fields.next(), fields.next(), fields.next()) {
            (Some(suffix), Some(provider), None) if !suffix.is_empty() && !provider.is_empty() => {
                if suffix != suffix.to_ascii_lowercase() {
                    problems.push(format!("line {}: `{suffix}` is not lower case", i + 1));
                }
                if table.insert(suffix.to_string(), provider.to_string()).is_some() {
                    problems.push(format!("line {}: `{suffix}` is listed twice", i + 1));
                }
            }
            _ => problems.push(format!("line {}: expected `SUFFIX<TAB>PROVIDER`", i + 1)),
        }
    }
    if problems.is_empty() {
        Ok(table)
    } else {
        Err(problems)
    }
}

/// The table as a tree of labels read from the right (`com` → `google` →
/// `l`), so a lookup hashes each label of a host once: looking suffixes
/// up whole re-hashed the rest of the host for every label, which made one
/// event with a domain of 200,000 labels take seconds (issue 25).
#[derive(Debug, Default)]
struct Suffixes {
    provider: Option<String>,
    children: HashMap<String, Suffixes>,
}

impl Suffixes {
    fn build(table: HashMap<String, String>) -> Self {
        let mut root = Suffixes::default();
        for (suffix, provider) in table {
            let node =
                suffix.rsplit('.').fold(&mut root, |node, label| node.children.entry(label.to_string()).or_default());
            node.provider = Some(provider);
        }
        root
    }
}

fn suffixes() -> &'static Suffixes {
    static SUFFIXES: OnceLock<Suffixes> = OnceLock::new();
    // The shipped table is checked by this module's tests; a broken one maps nothing.
    SUFFIXES.get_or_init(|| Suffixes::build(parse(PROVIDERS_TSV).unwrap_or_default()))
}

/// The provider of a host name, domain or e-mail address: that of its
/// longest listed suffix. `None` when no suffix is listed.
///
/// Linear in the length of `host`: the labels are walked from the right,
/// each looked up once, and the walk stops at the first label the table
/// does not continue with.
pub fn lookup(host: &str) -> Option<&'static str> {
    lookup_counting(host, &mut 0)
}

/// [`lookup`], adding the number of labels looked up to `probes`.
fn lookup_counting(host: &str, probes: &mut usize) -> Option<&'static str> {
    let host = host.trim().trim_end_matches('.').trim_end_matches('>');
    let host = host.rsplit_once('@').map_or(host, |(_, domain)| domain);
    let lowered;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        lowered = host.to_ascii_lowercase();
        lowered.as_str()
    } else {
        host
    };
    let mut node = suffixes();
    let mut found = None;
    for label in host.rsplit('.') {
        *probes += 1;
        let Some(child) = node.children.get(label) else { break };
        node = child;
        found = node.provider.as_deref().or(found);
    }
    found
}

/// `provider(recipient_domain, mx_host)`: the MX host decides when it is a
/// known provider's (a company domain hosted by Google or Microsoft), else
/// the recipient domain.
pub fn of(recipient_domain: Option<&str>, mx_host: Option<&str>) -> Option<&'static str> {
    mx_host.and_then(lookup).or_else(|| recipient_domain.and_then(lookup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_is_well_formed() {
        let table = parse(PROVIDERS_TSV).unwrap_or_else(|problems| panic!("{}", problems.join("\n")));
        assert!(table.len() > 30);
    }

    #[test]
    fn bad_lines_are_reported_with_their_numbers() {
        let problems = parse("# ok\ngmail.com\tgmail\nGMAIL.COM\tgmail\nno-tab\ngmail.com\tgoogle\n").expect_err("bad");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 3") && problems[1].starts_with("line 4"));
    }

    #[test]
    fn hosts_domains_and_addresses_map_by_their_longest_suffix() {
        assert_eq!(lookup("gmail-smtp-in.l.google.com"), Some("gmail"));
        assert_eq!(lookup("contoso-com.mail.protection.outlook.com."), Some("microsoft"));
        assert_eq!(lookup("User@Hotmail.COM"), Some("microsoft"));
        assert_eq!(lookup("mx01.mail.icloud.com"), Some("apple"));
        assert_eq!(lookup("example.com"), None);
        assert_eq!(lookup(""), None);
        assert_eq!(of(Some("contoso.com"), Some("contoso-com.mail.protection.outlook.com")), Some("microsoft"));
        assert_eq!(of(Some("gmail.com"), Some("mx.unknown.example")), Some("gmail"));
        assert_eq!(of(Some("contoso.com"), None), None);
        assert_eq!(lookup("a..gmail.com"), Some("gmail"), "an empty label ends the walk, not the match");
        assert_eq!(lookup("com"), None);
    }

    /// Issue 25: a host of 1 MiB of labels is looked up with as many probes
    /// as one of 1 KiB (the walk stops where the table does), and in time
    /// proportional to its length.
    #[test]
    fn a_hostile_host_is_looked_up_in_linear_time() {
        let depth = |host: &str| {
            let mut probes = 0;
            let found = lookup_counting(host, &mut probes);
            (found, probes)
        };
        for unit in ["a.", ".", "x"] {
            let small = unit.repeat(1024 / unit.len());
            let large = unit.repeat((1 << 20) / unit.len());
            let (found_small, probes_small) = depth(&small);
            let (found_large, probes_large) = depth(&large);
            assert_eq!((found_small, found_large), (None, None));
            assert!(
                probes_large <= probes_small.max(2),
                "{unit:?}: {probes_large} probes for 1 MiB, {probes_small} for 1 KiB"
            );
        }
        // Labels the table continues with as far as it goes, then a hostile rest.
        let large = format!("{}gmail-smtp-in.l.google.com", "a.".repeat(1 << 19));
        let mut probes = 0;
        assert_eq!(lookup_counting(&large, &mut probes), Some("gmail"));
        assert!(probes <= 6, "{probes} probes");

        // Time: 1 MiB once against 1 KiB a thousand times (the same bytes),
        // with a generous factor so a loaded machine does not fail it.
        let small = "A.".repeat(512);
        let large = "A.".repeat(1 << 19);
        let started = std::time::Instant::now();
        for _ in 0..1024 {
            std::hint::black_box(lookup(std::hint::black_box(&small)));
        }
        let small_time = started.elapsed();
        let started = std::time::Instant::now();
        std::hint::black_box(lookup(std::hint::black_box(&large)));
        let large_time = started.elapsed();
        assert!(
            large_time <= small_time * 20 + std::time::Duration::from_millis(50),
            "1 MiB took {large_time:?}; 1024 × 1 KiB took {small_time:?}"
        );
    }
}
