//! One list's state in a poller: its budgets, cache and canaries, and how
//! a target's query on it becomes a verdict.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::budget::{DailyBudget, TokenBucket};
use crate::cache::TtlCache;
use crate::classify::{classify, Answer, Degraded, State, Verdict};
use crate::observation::Observation;
use crate::target::Target;

use super::{ListConfig, ListCounters};

/// A TXT answer is cut to this many bytes.
const MAX_TXT_BYTES: usize = 512;

pub(super) struct ListState {
    pub(super) cfg: ListConfig,
    pub(super) query_zone: String,
    pub(super) bucket: TokenBucket,
    pub(super) daily: DailyBudget,
    pub(super) cache: TtlCache<usize, (Verdict, Option<String>)>,
    /// The latest state of each target, by index: what a change is measured against.
    pub(super) last: HashMap<usize, State>,
    pub(super) canary_problem: Option<String>,
    pub(super) degraded_cycles: u32,
    pub(super) counters: ListCounters,
}

pub(super) struct Ctx<'a> {
    pub(super) resolver: &'a TokioResolver,
    pub(super) resolver_name: &'a str,
    pub(super) timeout: Duration,
}

impl ListState {
    /// Records a target's state; true when it changed from a known one.
    pub(super) fn record(&mut self, index: usize, state: State) -> bool {
        matches!(self.last.insert(index, state), Some(before) if before != state)
    }

    /// Waits for the rate budget and counts the query in the daily one;
    /// false when the day's allowance is used up.
    pub(super) async fn spend(&mut self) -> bool {
        if !self.daily.try_spend(now_ms()) {
            self.counters.daily_refused += 1;
            return false;
        }
        let mut waited = false;
        loop {
            let wait = self.bucket.wait(Instant::now());
            if wait.is_zero() && self.bucket.try_take(Instant::now()) {
                break;
            }
            waited = true;
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
        self.counters.rate_waits += u64::from(waited);
        self.counters.queries += 1;
        true
    }

    pub(super) async fn check_canaries(&mut self, ctx: &Ctx<'_>) -> bool {
        let (listed, clean) = self.cfg.canaries();
        let mut problem = None;
        for (target, must_be) in [(listed, State::Listed), (clean, State::Clean)] {
            if !self.spend().await {
                problem = Some("daily query budget used up".to_owned());
                break;
            }
            let name = target.query_name(&self.query_zone);
            let (answer, _) = lookup_a(ctx, &name).await;
            let verdict = classify(&answer, &self.cfg.meanings);
            if verdict.state != must_be {
                let detail = match &verdict.degraded {
                    Some(_) => verdict.meaning.clone().unwrap_or_default(),
                    None => verdict.state.to_string(),
                };
                problem = Some(format!("canary {target} must be {must_be} but is {} ({detail})", verdict.state));
                break;
            }
        }
        if problem.is_some() {
            self.counters.canary_failures += 1;
            self.degraded_cycles += 1;
        } else {
            self.degraded_cycles = 0;
        }
        self.canary_problem = problem;
        self.canary_problem.is_none()
    }

    pub(super) fn canary_degraded(&self, ctx: &Ctx<'_>, target: &Target) -> Observation {
        let verdict =
            Verdict::degraded(Degraded::CanaryFailed, Vec::new(), self.canary_problem.clone().unwrap_or_default());
        self.observation(ctx, target, &verdict, None, 0, false)
    }

    pub(super) async fn poll(&mut self, ctx: &Ctx<'_>, index: usize, target: &Target, force: bool) -> Observation {
        if !force {
            if let Some((verdict, txt)) = self.cache.get(&index, Instant::now()) {
                self.counters.cache_hits += 1;
                return self.observation(ctx, target, &verdict, txt, 0, true);
            }
        }
        if !self.spend().await {
            let verdict = Verdict::degraded(Degraded::BudgetExhausted, Vec::new(), "daily query budget used up");
            return self.observation(ctx, target, &verdict, None, 0, false);
        }
        let name = target.query_name(&self.query_zone);
        let (answer, latency) = lookup_a(ctx, &name).await;
        let verdict = classify(&answer, &self.cfg.meanings);
        *match verdict.state {
            State::Listed => &mut self.counters.listed,
            State::Clean => &mut self.counters.clean,
            State::Degraded => &mut self.counters.degraded,
        } += 1;
        let txt =
            if verdict.state == State::Listed && self.spend().await { lookup_txt(ctx, &name).await } else { None };
        if let Some(ttl) = verdict.ttl {
            self.cache.insert(
                index,
                (verdict.clone(), txt.clone()),
                Duration::from_secs(u64::from(ttl)),
                Instant::now(),
            );
        } else {
            self.cache.remove(&index);
        }
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.observation(ctx, target, &verdict, txt, latency_ms, false)
    }

    pub(super) fn observation(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        verdict: &Verdict,
        txt: Option<String>,
        latency_ms: u64,
        cached: bool,
    ) -> Observation {
        let code = (!verdict.codes.is_empty())
            .then(|| verdict.codes.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
        Observation {
            time_ms: now_ms(),
            list: self.cfg.name.clone(),
            zone: self.cfg.zone.clone(),
            kind: self.cfg.kind.to_string(),
            target: target.to_string(),
            state: verdict.state,
            code,
            meaning: verdict.meaning.clone(),
            degraded: verdict.degraded.as_ref().map(|d| d.as_str().to_owned()),
            txt,
            weight: self.cfg.weight,
            budget_used: self.daily.used_ratio(now_ms()),
            resolver: ctx.resolver_name.to_owned(),
            latency_ms,
            cached,
        }
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The `A` answer for `name`, and how long it took. Bounded by the timeout
/// even if the resolver library were to wait longer.
async fn lookup_a(ctx: &Ctx<'_>, name: &str) -> (Answer, Duration) {
    let started = Instant::now();
    let bound = ctx.timeout + Duration::from_millis(500);
    let answer = match tokio::time::timeout(bound, ctx.resolver.ipv4_lookup(fqdn(name))).await {
        Err(_) => Answer::Timeout,
        Ok(Err(e)) => answer_from_error(&e),
        Ok(Ok(lookup)) => {
            let mut addrs = Vec::new();
            let mut ttl = u32::MAX;
            for record in lookup.answers() {
                if let RData::A(a) = &record.data {
                    addrs.push(a.0);
                    ttl = ttl.min(record.ttl);
                }
            }
            if addrs.is_empty() {
                Answer::NoData { ttl: None }
            } else {
                Answer::Addresses { addrs, ttl }
            }
        }
    };
    (answer, started.elapsed())
}

/// The `TXT` answer for `name` (records joined by ` | `, cut to 512
/// bytes), or `None` if there is none or it failed.
async fn lookup_txt(ctx: &Ctx<'_>, name: &str) -> Option<String> {
    let bound = ctx.timeout + Duration::from_millis(500);
    let lookup = tokio::time::timeout(bound, ctx.resolver.txt_lookup(fqdn(name))).await.ok()?.ok()?;
    let mut texts = Vec::new();
    for record in lookup.answers() {
        if let RData::TXT(txt) = &record.data {
            let text: String = txt.txt_data.iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect();
            texts.push(text);
        }
    }
    if texts.is_empty() {
        return None;
    }
    let mut joined = texts.join(" | ");
    if joined.len() > MAX_TXT_BYTES {
        let mut cut = MAX_TXT_BYTES;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        joined.truncate(cut);
    }
    Some(joined)
}

pub(super) fn answer_from_error(error: &NetError) -> Answer {
    match error {
        NetError::Timeout => Answer::Timeout,
        NetError::Dns(DnsError::NoRecordsFound(none)) => match none.response_code {
            ResponseCode::NXDomain => Answer::NxDomain { ttl: none.negative_ttl },
            ResponseCode::NoError => Answer::NoData { ttl: none.negative_ttl },
            ResponseCode::ServFail => Answer::ServFail,
            ResponseCode::Refused => Answer::Refused,
            other => Answer::Failed(format!("response code {other}")),
        },
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => Answer::ServFail,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => Answer::Refused,
        other => Answer::Failed(other.to_string()),
    }
}
