//! The dead-letter producer: rejected messages with their reason.

use engine::DeadLetter;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most of a message a dead letter carries to the topic: well under
/// librdkafka's default `message.max.bytes` (1,000,000) and a broker's
/// default topic limit (1,048,588), with room for the headers and key. A
/// message the engine accepts may be 1 MiB, and a record the producer or the
/// broker refuses would fail every retry of its flush (issue 25). The store
/// keeps the whole message.
const MAX_PAYLOAD_BYTES: usize = 512 * 1024;

/// What of `payload` goes to the topic, and, when that is not all of it,
/// the `original_size` and `sha256` headers' values.
fn bounded(payload: &[u8]) -> (&[u8], Option<(String, String)>) {
    if payload.len() <= MAX_PAYLOAD_BYTES {
        return (payload, None);
    }
    let digest: String = Sha256::digest(payload).iter().map(|b| format!("{b:02x}")).collect();
    (&payload[..MAX_PAYLOAD_BYTES], Some((payload.len().to_string(), digest)))
}

/// Counts failed deliveries so a flush can tell whether every record arrived.
#[derive(Default)]
pub(crate) struct DeliveryCounter {
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces dead letters (to the topic the running plan names).
pub(crate) struct DeadLetterProducer {
    producer: ThreadedProducer<DeliveryCounter>,
}

impl DeadLetterProducer {
    pub(crate) fn new(config: &ClientConfig) -> rdkafka::error::KafkaResult<Self> {
        let mut config = config.clone();
        // Dead letters must not be lost or duplicated by the producer itself.
        config.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "20");
        let producer = config.create_with_context(DeliveryCounter::default())?;
        Ok(DeadLetterProducer { producer })
    }

    /// Sends every dead letter to `topic` and waits until all are acknowledged.
    pub(crate) fn send_all(&self, topic: &str, dead_letters: &[DeadLetter], timeout: Duration) -> Result<(), String> {
        if dead_letters.is_empty() {
            return Ok(());
        }
        let failed_before = self.producer.context().failed.load(Ordering::Relaxed);
        for d in dead_letters {
            let partition = d.partition.to_string();
            let offset = d.offset.to_string();
            let (payload, cut) = bounded(&d.payload);
            let mut headers = OwnedHeaders::new()
                .insert(Header { key: "reason", value: Some(d.reason.as_str()) })
                .insert(Header { key: "detail", value: Some(d.detail.as_str()) })
                .insert(Header { key: "source_topic", value: Some(d.topic.as_str()) })
                .insert(Header { key: "source_partition", value: Some(partition.as_str()) })
                .insert(Header { key: "source_offset", value: Some(offset.as_str()) });
            if let Some((size, sha256)) = &cut {
                headers = headers
                    .insert(Header { key: "original_size", value: Some(size.as_str()) })
                    .insert(Header { key: "sha256", value: Some(sha256.as_str()) });
            }
            let mut record = BaseRecord::to(topic).payload(payload).headers(headers);
            if let Some(key) = &d.key {
                record = record.key(&key[..]);
            }
            let mut record = Some(record);
            while let Some(r) = record.take() {
                if let Err((error, r)) = self.producer.send(r) {
                    if matches!(error.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)) {
                        std::thread::sleep(Duration::from_millis(5));
                        record = Some(r);
                    } else {
                        return Err(format!("cannot queue a dead letter: {error}"));
                    }
                }
            }
        }
        self.producer.flush(timeout).map_err(|e| format!("dead letters not acknowledged: {e}"))?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed) - failed_before;
        if failed > 0 {
            return Err(format!("{failed} dead letter(s) were not delivered"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_over_the_topic_limit_is_cut_with_its_size_and_digest() {
        let small = vec![b'a'; MAX_PAYLOAD_BYTES];
        assert_eq!(bounded(&small), (&small[..], None));
        let large = vec![b'a'; 1 << 20];
        let (sent, cut) = bounded(&large);
        assert_eq!(sent.len(), MAX_PAYLOAD_BYTES);
        let (size, sha256) = cut.expect("cut");
        assert_eq!(size, "1048576");
        assert_eq!(sha256.len(), 64);
    }
}
