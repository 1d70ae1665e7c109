//! The embedded demo: librdkafka's in-process mock cluster, fed by the
//! built-in generator at a steady rate, consumed by the real consumer path.

use crate::config::RawEmbedded;
use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The running cluster and generator; dropping it stops both.
pub struct Embedded {
    // Field order matters: the producer thread stops before the cluster goes.
    stop: Arc<AtomicBool>,
    producer: Option<std::thread::JoinHandle<()>>,
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

impl Embedded {
    /// Creates another topic on the cluster (the demo's DNSBL observations).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        self.cluster.create_topic(topic, partitions, 1).with_context(|| format!("cannot create topic `{topic}`"))
    }

    /// Starts a one-broker mock cluster with `topic` (and the dead-letter
    /// and control topics) and the generator.
    pub fn start(
        topic: &str,
        dead_letter_topic: Option<&str>,
        control_topic: Option<&str>,
        settings: RawEmbedded,
    ) -> anyhow::Result<Self> {
        let cluster = MockCluster::new(1).context("cannot start the mock cluster")?;
        cluster.create_topic(topic, settings.partitions, 1).context("cannot create the topic")?;
        if let Some(dlq) = dead_letter_topic {
            cluster.create_topic(dlq, 1, 1).context("cannot create the dead-letter topic")?;
        }
        if let Some(control) = control_topic {
            // The mock does not serve the admin API; create the control topic directly.
            cluster.create_topic(control, 1, 1).context("cannot create the control topic")?;
        }
        let brokers = cluster.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("linger.ms", "5")
            .create()
            .context("cannot create the producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let topic = topic.to_string();
        let handle = std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || generate(&producer, &topic, settings, &flag))
            .context("cannot start the generator")?;
        info!(brokers = %brokers, events_per_second = settings.events_per_second, "Embedded Kafka and generator started.");
        Ok(Embedded { stop, producer: Some(handle), cluster })
    }

    /// `bootstrap.servers` of the mock cluster.
    pub fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.producer.take() {
            let _ = handle.join();
        }
    }
}

/// How far behind the clock generated event time starts. It runs
/// `time_acceleration` times faster than the clock (so windows close
/// quickly) only until it reaches the clock, then with it: ahead of the
/// clock, events would be `future_time` dead letters once more than their
/// source's `max_future` (an hour by default) ahead. At 20 times, a day
/// takes 76 minutes to catch up.
const HEAD_START_MS: i64 = 24 * 3_600_000;

fn generate(producer: &BaseProducer, topic: &str, settings: RawEmbedded, stop: &AtomicBool) {
    let now_ms = kafka::control::now_ms();
    let per_second = f64::from(settings.events_per_second).max(1.0);
    let acceleration = settings.time_acceleration.max(1.0);
    let config = |seed: u64, start_ms: i64, rate_per_s: f64| workload::Config {
        seed,
        start_ms,
        rate_per_s,
        bad_ratio: settings.bad_ratio,
        ..workload::Config::default()
    };
    let start_ms = if acceleration > 1.0 { now_ms - HEAD_START_MS } else { now_ms };
    let mut generator = workload::Generator::new(config(now_ms as u64, start_ms, per_second / acceleration));
    // Events of generators replaced when event time caught up with the clock.
    let mut generated_before = 0;
    let mut is_accelerated = acceleration > 1.0;
    let mut line = String::new();
    let started = Instant::now();
    let partitions = settings.partitions.max(1);
    while !stop.load(Ordering::Relaxed) {
        // Produce what is due by now, in slices of 10 ms.
        let due = (started.elapsed().as_secs_f64() * f64::from(settings.events_per_second)) as u64;
        while generated_before + generator.generated() < due && !stop.load(Ordering::Relaxed) {
            let event_time = start_ms as f64 + generator.generated() as f64 * 1000.0 * acceleration / per_second;
            if is_accelerated && event_time >= kafka::control::now_ms() as f64 {
                // Caught up: from here on, event time runs with the clock.
                generated_before += generator.generated();
                let now_ms = kafka::control::now_ms();
                generator = workload::Generator::new(config(now_ms as u64, now_ms, per_second));
                is_accelerated = false;
                info!("Generated event time caught up with the clock; it runs with it from now on.");
            }
            generator.next_into(&mut line);
            let partition = ((generated_before + generator.generated()) % partitions as u64) as i32;
            let mut record = Some(BaseRecord::<(), [u8]>::to(topic).partition(partition).payload(line.as_bytes()));
            while let Some(r) = record.take() {
                if let Err((error, r)) = producer.send(r) {
                    producer.poll(Duration::from_millis(5));
                    if stop.load(Ordering::Relaxed) {
                        warn!(error = %error, "Generator stopping with a message unsent.");
                        break;
                    }
                    record = Some(r);
                }
            }
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = producer.flush(Duration::from_secs(5));
}
