//! The pipelines' `export prometheus` series on `/metrics`: the engine's
//! live export state ([`engine::export::live`]) fed at every flush, and its
//! rendering in the Prometheus text format after the daemon's own series.
//!
//! The families change with the plan and the keys, so they are written
//! directly rather than registered: a registry wants fixed label sets and
//! explicit removal of every series of a closed window.

use engine::export::live::{Family, LiveExport};
use engine::export::SeriesKind;
use engine::{CompiledPlan, Partition, Row};
use kafka::control::now_ms;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Mutex;
use tracing::warn;

/// Live exported series of the running plan.
#[derive(Default)]
pub struct Exporter {
    live: Mutex<LiveExport>,
    /// Family names already warned about, so a collision is logged once.
    warned: Mutex<BTreeSet<String>>,
}

impl Exporter {
    /// Takes in the state after a flush (see [`LiveExport::observe`]).
    pub fn observe(&self, plan: &CompiledPlan, partitions: &[(&str, &Partition)], rows: &[(&str, &Row)]) {
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.observe(plan, partitions, rows, now_ms());
    }

    /// Appends the exported families to `out`, skipping any whose name is in
    /// `taken` (the daemon's own series) or repeats an earlier family.
    pub fn render(&self, taken: &BTreeSet<String>, out: &mut String) {
        let (families, summaries) = {
            let live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (live.families(), live.summaries())
        };
        let mut names = taken.clone();
        for family in &families {
            if !names.insert(family.name.clone()) {
                self.warn_once(&family.name);
                continue;
            }
            write_family(family, out);
        }
        if summaries.is_empty() {
            return;
        }
        let served = Family {
            name: "stream_exported_series".into(),
            kind: SeriesKind::Gauge,
            help: "Series served for each metric with export prometheus, __other__ included.".into(),
            samples: summaries.iter().map(|s| (vec![("metric".into(), s.name.clone())], s.series as f64)).collect(),
        };
        let overflow = Family {
            name: "stream_exported_series_overflow_total".into(),
            kind: SeriesKind::Counter,
            help: "Keys folded into a metric's __other__ series because it served its cardinality limit.".into(),
            samples: summaries
                .iter()
                .map(|s| (vec![("metric".into(), s.name.clone())], s.overflow_keys as f64))
                .collect(),
        };
        write_family(&served, out);
        write_family(&overflow, out);
    }

    fn warn_once(&self, name: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.insert(name.to_string()) {
            warn!(series = %name, "An exported series has the name of another series; it is not exported.");
        }
    }
}

/// One family in the text format (version 0.0.4).
fn write_family(family: &Family, out: &mut String) {
    if family.samples.is_empty() {
        return;
    }
    let kind = match family.kind {
        SeriesKind::Counter => "counter",
        SeriesKind::Gauge => "gauge",
    };
    let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {} {help}", family.name);
    let _ = writeln!(out, "# TYPE {} {kind}", family.name);
    for (labels, value) in &family.samples {
        out.push_str(&family.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(out, "{name}=\"{escaped}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The processing time messages without a broker timestamp arrive at
    /// (2100-01-01): after every event time here, so none is too far ahead.
    const NOW_MS: i64 = 4_102_444_800_000;

    #[test]
    fn families_render_in_the_text_format_with_escaped_labels() {
        let family = Family {
            name: "stream_m_c_total".into(),
            kind: SeriesKind::Counter,
            help: "Metric m: c.".into(),
            samples: vec![
                (vec![("k".into(), "a\"b\\c\nd".into()), ("p".into(), String::new())], 3.0),
                (vec![("k".into(), "x".into()), ("p".into(), "y".into())], 0.25),
            ],
        };
        let mut out = String::new();
        write_family(&family, &mut out);
        assert_eq!(
            out,
            "# HELP stream_m_c_total Metric m: c.\n# TYPE stream_m_c_total counter\n\
             stream_m_c_total{k=\"a\\\"b\\\\c\\nd\",p=\"\"} 3\nstream_m_c_total{k=\"x\",p=\"y\"} 0.25\n"
        );
    }

    #[test]
    fn a_series_named_like_a_daemon_series_is_skipped_the_others_served() {
        let text = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time, k: string }\n\
                    metric events from s group by k compute count() as consumed, count() as seen window 1m export prometheus\n";
        let compiled = dsl::compile_str("p.stream", text);
        let plan = compiled.plan.clone().unwrap_or_else(|| panic!("{}", compiled.render_diagnostics()));
        let plan = std::sync::Arc::new(CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan"));
        let mut partition = Partition::new(plan.clone(), 0);
        let payload = br#"{"ts": "2025-01-01T00:00:00Z", "k": "a"}"#;
        partition.process(&engine::Message::plain("t", 0, 0, payload), NOW_MS, &mut engine::Output::default());

        let exporter = Exporter::default();
        let mut out = String::new();
        exporter.render(&BTreeSet::new(), &mut out);
        assert!(out.is_empty(), "nothing observed, nothing written: {out}");
        exporter.observe(&plan, &[("t", &partition)], &[]);
        let taken = BTreeSet::from(["stream_events_consumed_total".to_string()]);
        exporter.render(&taken, &mut out);
        assert!(!out.contains("stream_events_consumed_total"), "{out}");
        assert!(out.contains("stream_events_seen_total{k=\"a\"} 1\n"), "{out}");
        assert!(out.contains("stream_exported_series{metric=\"events\"} 1\n"), "{out}");
        assert!(out.contains("stream_exported_series_overflow_total{metric=\"events\"} 0\n"), "{out}");
    }
}
