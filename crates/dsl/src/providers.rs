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

fn table() -> &'static HashMap<String, String> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    // The shipped table is checked by this module's tests; a broken one maps nothing.
    TABLE.get_or_init(|| parse(PROVIDERS_TSV).unwrap_or_default())
}

/// The provider of a host name, domain or e-mail address: that of its
/// longest listed suffix. `None` when no suffix is listed.
pub fn lookup(host: &str) -> Option<&'static str> {
    let host = host.trim().trim_end_matches('.').trim_end_matches('>');
    let host = host.rsplit_once('@').map_or(host, |(_, domain)| domain);
    let lowered;
    let mut rest = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        lowered = host.to_ascii_lowercase();
        lowered.as_str()
    } else {
        host
    };
    let table = table();
    loop {
        if let Some(provider) = table.get(rest) {
            return Some(provider.as_str());
        }
        rest = rest.split_once('.')?.1;
    }
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
    }
}
