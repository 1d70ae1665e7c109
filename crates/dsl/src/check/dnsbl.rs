//! Checks of a `dnsbl { … }` source block.

use super::{Checker, DefKind};
use crate::ast::{Dnsbl, DnsblList, DnsblOption, DnsblSetting};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::dnsbl::{is_domain, listing_code, target_count, DEFAULT_EVERY_MS, DEFAULT_MAX_QPS, MIN_EVERY_MS};
use crate::fmt::format_duration;
use crate::plan::{DnsblKind, DnsblListPlan, DnsblPlan, DnsblTargetsFromPlan};
use crate::span::Span;
use std::collections::{BTreeMap, HashMap};

/// `targets from metric … within` reaches back at most this far: 90 days.
const MAX_TARGETS_WITHIN_MS: u64 = 90 * 86_400_000;

impl Checker<'_> {
    pub(super) fn check_dnsbl(&mut self, dnsbl: &Dnsbl) -> DnsblPlan {
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        let mut every_ms = DEFAULT_EVERY_MS;
        let mut targets = Vec::new();
        let mut lists: Vec<DnsblListPlan> = Vec::new();
        let mut list_spans: HashMap<&str, Span> = HashMap::new();
        for setting in &dnsbl.settings {
            let (keyword, span) = match setting {
                DnsblSetting::Topic(t) => ("topic", t.span),
                DnsblSetting::Every(e) => ("every", e.span),
                DnsblSetting::Targets(t) => ("targets", t.span),
                DnsblSetting::TargetsFrom(_) | DnsblSetting::List(_) => ("list", Span::default()),
            };
            if keyword != "list" {
                if let Some(first) = seen.insert(keyword, span) {
                    self.report(
                        Diagnostic::error(Code::DuplicateClause, span, format!("`{keyword}` is given twice"))
                            .with_secondary(first, "first given here"),
                    );
                    continue;
                }
            }
            match setting {
                // Checked with the metrics: see `check_dnsbl_targets_from`.
                DnsblSetting::Topic(_) | DnsblSetting::TargetsFrom(_) => {}
                DnsblSetting::Every(every) => {
                    if every.node.as_millis() < MIN_EVERY_MS {
                        self.report(
                            Diagnostic::error(
                                Code::BadDnsbl,
                                every.span,
                                "sweeps this often would get the poller banned",
                            )
                            .with_label(format!("at least {}", format_duration(MIN_EVERY_MS))),
                        );
                    }
                    every_ms = every.node.as_millis().max(MIN_EVERY_MS);
                }
                DnsblSetting::Targets(list) => {
                    for target in &list.node {
                        match target_count(&target.node) {
                            Ok(_) => targets.push(target.node.clone()),
                            Err(why) => self.report(
                                Diagnostic::error(Code::BadDnsbl, target.span, format!("bad target `{}`", target.node))
                                    .with_label(why)
                                    .with_help("write an address (`192.0.2.7`), a block (`192.0.2.0/28`) or a domain (`mail.example.com`)"),
                            ),
                        }
                    }
                }
                DnsblSetting::List(list) => {
                    let plan = self.check_dnsbl_list(list);
                    if self.declare_once(&mut list_spans, &list.name, "list", "defined") {
                        lists.push(plan);
                    }
                }
            }
        }
        if lists.is_empty() {
            self.report(
                Diagnostic::error(Code::MissingClause, dnsbl.span, "a `dnsbl` source needs at least one `list`")
                    .with_help("e.g. `list zen zone \"zen.spamhaus.org\" ip weight 3`"),
            );
        }
        let takes_from_metrics = dnsbl.settings.iter().any(|s| matches!(s, DnsblSetting::TargetsFrom(_)));
        if !seen.contains_key("targets") && !takes_from_metrics {
            self.report(
                Diagnostic::error(Code::MissingClause, dnsbl.span, "a `dnsbl` source needs `targets`")
                    .with_help("e.g. `targets [\"192.0.2.0/28\", \"mail.example.com\"]` or `targets from metric ip_block_bounces key sending_ip within 1d`"),
            );
        }
        DnsblPlan { every_ms, targets, targets_from: Vec::new(), lists }
    }

    /// The `targets from metric M key K within D` settings of `dnsbl`: the
    /// metric must exist (and be visible), `K` must be one of its group-by
    /// keys, and `D` at least one of its windows and at most 90 days and
    /// the retention of its finest tier.
    pub(super) fn check_dnsbl_targets_from(&mut self, dnsbl: &Dnsbl) -> Vec<DnsblTargetsFromPlan> {
        let mut plans: Vec<DnsblTargetsFromPlan> = Vec::new();
        for setting in &dnsbl.settings {
            let DnsblSetting::TargetsFrom(from) = setting else { continue };
            let Some(index) = self.lookup(&from.metric, DefKind::Metric, Code::UnknownMetric) else { continue };
            let Some(metric) = self.metric_plans.get(index).and_then(Option::as_ref) else { continue };
            let keys: Vec<String> = metric.keys.iter().map(|k| k.name.clone()).collect();
            let window_ms = metric.window_ms;
            // Rows older than the finest tier's retention are gone: reaching
            // further back would find nothing more.
            let kept_ms = metric.tiers.first().map_or(MAX_TARGETS_WITHIN_MS, |t| t.retention_ms);
            let max_ms = kept_ms.min(MAX_TARGETS_WITHIN_MS);
            if !keys.contains(&from.key.node) {
                let label = if keys.is_empty() {
                    format!("`{}` has no group-by keys", from.metric.node)
                } else {
                    format!("its keys are {}", keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
                };
                self.report(
                    Diagnostic::error(
                        Code::DnsblTargetKey,
                        from.key.span,
                        format!("`{}` is not a group-by key of `{}`", from.key.node, from.metric.node),
                    )
                    .with_label(label)
                    .with_help("targets are the values of a key the metric groups by, e.g. `sending_ip`"),
                );
                continue;
            }
            let within_ms = from.within.node.as_millis();
            if within_ms < window_ms || within_ms > max_ms {
                self.report(
                    Diagnostic::error(Code::BadDnsbl, from.within.span, "`within` is out of range")
                        .with_label(format!(
                            "from `{}`'s window ({}) to {}",
                            from.metric.node,
                            format_duration(window_ms),
                            format_duration(max_ms)
                        ))
                        .with_note("at most 90d, and at most as long as the metric's finest rows are kept"),
                );
                continue;
            }
            let plan = DnsblTargetsFromPlan { metric: from.metric.node.clone(), key: from.key.node.clone(), within_ms };
            if plans.iter().any(|p| p.metric == plan.metric && p.key == plan.key) {
                self.report(Diagnostic::error(
                    Code::DuplicateClause,
                    from.span,
                    format!("targets are taken from `{}`'s `{}` twice", plan.metric, plan.key),
                ));
                continue;
            }
            plans.push(plan);
        }
        plans
    }

    fn check_dnsbl_list(&mut self, list: &DnsblList) -> DnsblListPlan {
        let kind = match list.kind.node.as_str() {
            "ip" => DnsblKind::Ip,
            "domain" => DnsblKind::Domain,
            other => {
                self.report(
                    Diagnostic::error(Code::BadDnsbl, list.kind.span, format!("unknown list kind `{other}`"))
                        .with_help("a list is `ip` (queried with reversed addresses) or `domain`"),
                );
                DnsblKind::Ip
            }
        };
        if !is_domain(&list.zone.node) {
            self.report(
                Diagnostic::error(Code::BadDnsbl, list.zone.span, format!("`{}` is not a zone name", list.zone.node))
                    .with_help("e.g. `zen.spamhaus.org`"),
            );
        }
        let mut plan = DnsblListPlan {
            name: list.name.node.clone(),
            zone: list.zone.node.trim_end_matches('.').to_ascii_lowercase(),
            kind,
            weight: 1.0,
            max_qps: DEFAULT_MAX_QPS,
            max_per_day: None,
            key_env: None,
            codes: BTreeMap::new(),
        };
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        for option in &list.options {
            let (keyword, span) = match option {
                DnsblOption::Weight(w) => ("weight", w.span),
                DnsblOption::MaxQps(q) => ("max_qps", q.span),
                DnsblOption::MaxPerDay(d) => ("max_per_day", d.span),
                DnsblOption::KeyEnv(k) => ("key_env", k.span),
                DnsblOption::Codes(c) => ("codes", c.span),
            };
            if let Some(first) = seen.insert(keyword, span) {
                self.report(
                    Diagnostic::error(Code::DuplicateClause, span, format!("`{keyword}` is given twice"))
                        .with_secondary(first, "first given here"),
                );
                continue;
            }
            match option {
                DnsblOption::Weight(w) => {
                    if !(0.0..=1000.0).contains(&w.node) {
                        self.report(Diagnostic::error(Code::BadDnsbl, w.span, "a weight is from 0 to 1000"));
                    }
                    plan.weight = w.node;
                }
                DnsblOption::MaxQps(q) => {
                    if !(q.node > 0.0 && q.node <= 10_000.0) {
                        self.report(Diagnostic::error(
                            Code::BadDnsbl,
                            q.span,
                            "`max_qps` is above 0 and at most 10000",
                        ));
                        continue;
                    }
                    plan.max_qps = q.node;
                }
                DnsblOption::MaxPerDay(d) => {
                    if d.node == 0 {
                        self.report(Diagnostic::error(Code::BadDnsbl, d.span, "`max_per_day` of 0 would never query"));
                        continue;
                    }
                    plan.max_per_day = Some(d.node);
                }
                DnsblOption::KeyEnv(k) => {
                    let ok = !k.node.is_empty() && k.node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !ok {
                        self.report(
                            Diagnostic::error(Code::BadDnsbl, k.span, "not an environment variable name")
                                .with_help("the key itself stays out of the pipeline: name the variable holding it"),
                        );
                    }
                    plan.key_env = Some(k.node.clone());
                }
                DnsblOption::Codes(codes) => {
                    for (code, meaning) in &codes.node {
                        match listing_code(&code.node) {
                            Some(addr) => {
                                if plan.codes.insert(addr.to_string(), meaning.node.clone()).is_some() {
                                    self.report(Diagnostic::error(
                                        Code::Duplicate,
                                        code.span,
                                        format!("code `{}` is named twice", code.node),
                                    ));
                                }
                            }
                            None => self.report(
                                Diagnostic::error(
                                    Code::BadDnsbl,
                                    code.span,
                                    format!("`{}` is not a listing code", code.node),
                                )
                                .with_label("a listing code is an address in 127.0.0.0/8"),
                            ),
                        }
                    }
                }
            }
        }
        plan
    }
}
