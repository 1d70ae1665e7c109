//! The engine: runs a compiled [`dsl::Plan`] over raw messages.
//!
//! Pure and deterministic: no I/O, no threads, no clock of its own (the
//! caller passes processing time). Given the same messages in the same
//! per-partition order it emits the same rows, which is what makes replay
//! after a crash safe.
//!
//! One pass per message serves every metric: the JSON is decoded once into
//! the fields the plan needs, each classification runs at most once (one
//! `RegexSet` per text parameter), then each metric filters, keys and
//! aggregates into its event-time window. Closed windows become [`Row`]s
//! with mergeable aggregate states; coarser tiers are merged from closed
//! windows. See [`partition`] for the exactly-once replay protocol.
//!
//! Expressions and classifiers are layered, each module using only those
//! below it: [`matcher`] (a classifier's compiled pattern sets and the hits
//! of one classification) ← [`eval`] (expressions, which ask for an event's
//! classifications through the narrow [`eval::Classify`]) ← [`classify`]
//! (rules, whose conditions are expressions).

#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod aggregate;
pub mod classify;
pub mod decode;
pub mod eval;
pub mod export;
pub mod literal_table;
pub mod literals;
pub mod matcher;
pub mod output;
pub mod partition;
pub mod value;
pub mod window;

pub use decode::Reason;
pub use eval::MessageMeta;
pub use output::{drop_superseded, Checkpoint, DeadLetter, MetricStart, Output, Row};
pub use partition::{Message, Partition, PartitionStats, DEAD_LETTER_PREFIX_BYTES};
pub use value::KeyVal;

use classify::ClassifierRuntime;
use decode::Decoder;
use dsl::plan::{AggregateFn, Expr, Function};
use dsl::Plan;
use eval::{Prepared, RegexCache, TextSlots};

/// Errors building a runnable plan, and why a bundle is refused: data that
/// `/status`, the control topic and the deployment history carry as is.
#[derive(Debug, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Error {
    /// A classifier's pattern set is too large or invalid for the regex engine.
    #[error("classifier `{classifier}`: its patterns do not compile")]
    Matcher {
        /// Classifier name.
        classifier: String,
        /// The regex error.
        #[source]
        #[serde(serialize_with = "dsl::serialize_display")]
        source: regex::Error,
    },
    /// A standalone regex does not compile.
    #[error("a regular expression does not compile")]
    Regex(
        #[source]
        #[serde(serialize_with = "dsl::serialize_display")]
        regex::Error,
    ),
    /// A bundle that contradicts itself (format, hashes, paths).
    #[error("bundle {version} is not valid: {source}")]
    InvalidBundle {
        /// The bundle's version.
        version: u64,
        /// What is inconsistent.
        #[source]
        source: dsl::Error,
    },
    /// A bundle written for a newer language than this build reads.
    #[error("bundle {version} needs language version {needs}; this build reads up to {supported}")]
    NewerLanguage {
        /// The bundle's version.
        version: u64,
        /// Its language version.
        needs: u64,
        /// [`dsl::LANGUAGE_VERSION`].
        supported: u64,
    },
    /// A bundle whose files do not compile.
    #[error("bundle {version} does not compile:\n{rendered}")]
    DoesNotCompile {
        /// The bundle's version.
        version: u64,
        /// Every diagnostic, located.
        diagnostics: Vec<dsl::diagnostic::LocatedDiagnostic>,
        /// The same, rendered as `check` prints them.
        rendered: String,
    },
    /// A bundle that compiles but whose plan does not build into an engine.
    #[error("bundle {version} cannot run: {source}")]
    CannotRun {
        /// The bundle's version.
        version: u64,
        /// Why (a [`Error::Matcher`] or [`Error::Regex`]).
        #[source]
        source: Box<Error>,
    },
    /// A classifier argument read from JSON has the wrong type.
    #[error("`{param}` should be {expected}, not {found}")]
    ClassifierArgument {
        /// The parameter.
        param: String,
        /// Its type.
        expected: &'static str,
        /// The JSON value given.
        found: String,
    },
}

/// Limits that are the runtime's business, not the pipeline's.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Messages larger than this are dead-lettered as oversized.
    pub max_message_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_message_bytes: 1 << 20 }
    }
}

/// A plan with its decoders and matchers built, shared by all partitions.
#[derive(Debug)]
pub struct CompiledPlan {
    /// The plan.
    pub plan: Plan,
    decoders: Vec<Decoder>,
    classifiers: Vec<ClassifierRuntime>,
    regexes: RegexCache,
    metrics_by_source: Vec<Vec<usize>>,
    /// Per metric, its expressions prepared for the per-event path.
    prepared: Vec<PreparedMetric>,
    /// Per source, the texts its metrics' prepared tests compare fields with.
    text_slots: Vec<TextSlots>,
    /// The most `group by` keys of any metric.
    max_keys: usize,
    /// Whether an expression calls `header()`: if none does, callers need
    /// not gather a message's headers (librdkafka parses them on request).
    reads_headers: bool,
    /// How far ahead of the processing time a partition's event time can
    /// be: twice the largest `max_future` of the sources (twice, for the
    /// clocks of instances that differ); `None` without sources.
    event_time_reach_ms: Option<i64>,
    /// The limits it was built with.
    config: EngineConfig,
}

/// A metric's per-event expressions, prepared (see [`Prepared`]).
#[derive(Debug)]
struct PreparedMetric {
    filter: Option<Prepared>,
    keys: Vec<Prepared>,
    /// The number of aggregates.
    width: usize,
    /// What the aggregates take of an event, by kind, each with its index
    /// (a loop per kind, so the per-event path does not jump on the kind of
    /// every aggregate in turn). `count()`: one more.
    counts: Vec<usize>,
    /// `count_if(p)`: one more where `p` holds (tested, no value built).
    count_ifs: Vec<(usize, Prepared)>,
    /// Any other aggregate: its argument's value (but not for a quantile
    /// sharing another's sketch, which takes nothing per event).
    values: Vec<(usize, Prepared)>,
    /// (follower, leader) pairs of quantiles of one argument (`p50(x)`,
    /// `p99(x)`): only the leader's sketch is fed per event, and the
    /// followers' become copies of it when a window's states are read.
    shared_sketches: Vec<(usize, usize)>,
}

impl CompiledPlan {
    /// Validates and compiles a deployment bundle with this build's language
    /// and engine: the plan, or why it cannot run here (for the refusal report).
    ///
    /// # Errors
    /// A bundle that fails validation, needs a newer language, does not
    /// compile, or whose matchers do not build.
    pub fn from_bundle(bundle: &dsl::bundle::Bundle, config: EngineConfig) -> Result<Self, Error> {
        let version = bundle.version;
        bundle.validate().map_err(|source| Error::InvalidBundle { version, source })?;
        if bundle.language_version > dsl::LANGUAGE_VERSION {
            return Err(Error::NewerLanguage {
                version,
                needs: bundle.language_version,
                supported: dsl::LANGUAGE_VERSION,
            });
        }
        let mut compiled = bundle.compile();
        let Some(built) = CompiledPlan::from_compiled(&mut compiled, config) else {
            return Err(Error::DoesNotCompile {
                version,
                diagnostics: compiled.diagnostics.iter().map(|d| d.located(&compiled.sources)).collect(),
                rendered: dsl::render_all(&compiled.diagnostics, &compiled.sources),
            });
        };
        built.map_err(|e| Error::CannotRun { version, source: Box::new(e) })
    }

    /// The runnable plan of a compilation: the one step from compiled
    /// pipelines to a plan this engine runs, shared by
    /// [`CompiledPlan::from_bundle`], the commands (`streamctl check`, `run`,
    /// `test`, ...) and a daemon started on local files
    /// (`dsl::files::compile`). `None` when the compilation has errors (its
    /// diagnostics say which); else the plan built, or why it cannot run
    /// here. The compilation keeps its sources and diagnostics; its plan
    /// moves into the result.
    pub fn from_compiled(compiled: &mut dsl::Compiled, config: EngineConfig) -> Option<Result<Self, Error>> {
        if compiled.diagnostics.iter().any(dsl::Diagnostic::is_error) {
            return None;
        }
        compiled.plan.take().map(|plan| CompiledPlan::new(plan, config))
    }

    /// Builds decoders, matchers and regexes.
    ///
    /// # Errors
    /// If a regex or pattern set does not compile (e.g. exceeds size limits).
    pub fn new(plan: Plan, config: EngineConfig) -> Result<Self, Error> {
        let decoders = plan.sources.iter().map(|s| Decoder::new(s, config.max_message_bytes)).collect();
        let classifiers = plan
            .classifiers
            .iter()
            .map(|c| {
                ClassifierRuntime::new(c.clone())
                    .map_err(|source| Error::Matcher { classifier: c.name.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut regexes = RegexCache::default();
        let exprs = || {
            plan.metrics
                .iter()
                .flat_map(|m| {
                    m.filter
                        .iter()
                        .chain(m.keys.iter().map(|k| &k.expr))
                        .chain(m.aggregates.iter().filter_map(|a| a.arg.as_ref()))
                })
                .chain(plan.classifiers.iter().flat_map(|c| c.rules.iter().map(|r| &r.condition)))
                .chain(plan.sources.iter().flat_map(|s| s.classifications.iter().flat_map(|c| c.args.iter())))
        };
        regexes.add_all(exprs()).map_err(Error::Regex)?;
        let mut reads_headers = false;
        for expr in exprs() {
            expr.walk(&mut |e| {
                reads_headers |= matches!(e, Expr::Call { function: Function::Header, .. });
            });
        }
        let metrics_by_source = (0..plan.sources.len())
            .map(|s| plan.metrics.iter().enumerate().filter(|(_, m)| m.source == s).map(|(i, _)| i).collect())
            .collect();
        let mut text_slots: Vec<TextSlots> = plan.sources.iter().map(|_| TextSlots::default()).collect();
        let prepared = plan
            .metrics
            .iter()
            .map(|m| {
                let slots = &mut text_slots[m.source];
                let mut prepare = |expr: &Expr| Prepared::for_events(expr, slots);
                let shared_sketches = shared_sketches(&m.aggregates);
                let (mut counts, mut count_ifs, mut values) = (Vec::new(), Vec::new(), Vec::new());
                for (i, aggregate) in m.aggregates.iter().enumerate() {
                    match (&aggregate.function, &aggregate.arg) {
                        _ if shared_sketches.iter().any(|&(follower, _)| follower == i) => {}
                        (_, None) => counts.push(i),
                        (AggregateFn::CountIf, Some(arg)) => count_ifs.push((i, prepare(arg))),
                        (_, Some(arg)) => values.push((i, prepare(arg))),
                    }
                }
                PreparedMetric {
                    filter: m.filter.as_ref().map(&mut prepare),
                    keys: m.keys.iter().map(|k| prepare(&k.expr)).collect(),
                    width: m.aggregates.len(),
                    counts,
                    count_ifs,
                    values,
                    shared_sketches,
                }
            })
            .collect();
        let max_keys = plan.metrics.iter().map(|m| m.keys.len()).max().unwrap_or(0);
        let event_time_reach_ms =
            plan.sources.iter().map(|s| i64::try_from(s.max_future_ms.saturating_mul(2)).unwrap_or(i64::MAX)).max();
        Ok(CompiledPlan {
            plan,
            decoders,
            classifiers,
            regexes,
            metrics_by_source,
            prepared,
            text_slots,
            max_keys,
            reads_headers,
            event_time_reach_ms,
            config,
        })
    }

    /// The empty plan: no source, no metric. A consumer starts from it,
    /// so that its first plan is applied as every later one is.
    pub fn empty() -> Self {
        CompiledPlan {
            plan: Plan::empty(),
            decoders: Vec::new(),
            classifiers: Vec::new(),
            regexes: RegexCache::default(),
            metrics_by_source: Vec::new(),
            prepared: Vec::new(),
            text_slots: Vec::new(),
            max_keys: 0,
            reads_headers: false,
            event_time_reach_ms: None,
            config: EngineConfig::default(),
        }
    }

    /// Whether a partition's event time `event_time` is further ahead of the
    /// processing time `now_ms` than any event of this plan could have
    /// moved it: more than twice the largest `max_future` of its sources.
    /// Such an event time was reached before far-future events were
    /// refused, or through a clock that jumped ahead and back (idle
    /// partitions advance event time by the clock); kept, it would make
    /// every event late until the real time caught up with it. Never
    /// without sources.
    pub fn is_unreachable_event_time(&self, event_time: i64, now_ms: i64) -> bool {
        self.event_time_reach_ms.is_some_and(|reach| event_time > now_ms.saturating_add(reach))
    }

    /// Messages larger than this are dead-lettered as oversized; a reader
    /// need not keep more of one than this (see
    /// [`Partition::process_truncated`]).
    pub fn max_message_bytes(&self) -> usize {
        self.config.max_message_bytes
    }

    /// Whether any expression reads a message header (`header(name)`):
    /// if not, [`MessageMeta::headers`] may be left empty.
    pub fn reads_headers(&self) -> bool {
        self.reads_headers
    }

    /// Of metric `metric`, the (follower, leader) pairs of quantiles sharing
    /// one sketch: a window's states are whole once
    /// [`window::fill_shared_sketches`] has copied them.
    pub(crate) fn shared_sketches(&self, metric: usize) -> &[(usize, usize)] {
        self.prepared.get(metric).map_or(&[], |p| &p.shared_sketches)
    }
}

/// The (follower, leader) pairs of `aggregates`: each quantile whose
/// argument an earlier quantile has, with the first such quantile.
fn shared_sketches(aggregates: &[dsl::plan::AggregatePlan]) -> Vec<(usize, usize)> {
    let is_quantile = |a: &dsl::plan::AggregatePlan| a.function == AggregateFn::Quantile && a.arg.is_some();
    (0..aggregates.len())
        .filter(|&i| is_quantile(&aggregates[i]))
        .filter_map(|i| {
            let leader = (0..i).find(|&j| is_quantile(&aggregates[j]) && aggregates[j].arg == aggregates[i].arg)?;
            Some((i, leader))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsl::bundle::{Bundle, Provenance};

    fn bundle(metric: &str) -> Bundle {
        let source = "version 1\n\nsource s from kafka \"t\" format json { ts: timestamp event_time, k: string }\n";
        let files = vec![("s.stream".to_string(), source.to_string()), ("m.stream".to_string(), metric.to_string())];
        match Bundle::build(files, 7, Provenance::default()) {
            Ok((bundle, _)) => bundle,
            Err(compiled) => panic!("{}", compiled.render_diagnostics()),
        }
    }

    /// A refusal is data: `/status`, the control topic and the deployment
    /// history can carry its kind and fields, not only its text.
    #[test]
    fn a_refused_bundle_says_why_as_serialisable_data() {
        let good = bundle("version 1\nimport \"s.stream\"\nmetric m from s\n  compute count() as n\n  window 1m\n");
        assert!(CompiledPlan::from_bundle(&good, EngineConfig::default()).is_ok());

        let newer = Bundle { language_version: dsl::LANGUAGE_VERSION + 1, ..good.clone() };
        let error = CompiledPlan::from_bundle(&newer, EngineConfig::default()).expect_err("refused");
        assert!(matches!(error, Error::NewerLanguage { version: 7, .. }));
        let json = serde_json::to_value(&error).expect("serialisable");
        assert_eq!(json["kind"], "newer_language");
        assert!(error.to_string().contains("language version"), "{error}");

        let mut broken = good;
        broken.files[0].text.push_str("metric edited from s\n  compute count() as n\n  window 1m\n");
        let error = CompiledPlan::from_bundle(&broken, EngineConfig::default()).expect_err("refused");
        assert!(matches!(error, Error::InvalidBundle { source: dsl::Error::FileHash { .. }, .. }), "{error}");
        assert_eq!(serde_json::to_value(&error).expect("serialisable")["source"]["kind"], "file_hash");
    }
}
