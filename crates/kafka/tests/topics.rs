//! `kafka::control::ensure_topic` against a real broker process (tansu):
//! the product makes the topics it writes itself (the control topic, a
//! DNSBL poller's sweep markers) where brokers do not create them on first
//! use. librdkafka's mock cluster cannot create topics through the admin
//! API, so this needs the broker.

#[path = "../../streamd/tests/common/tansu.rs"]
mod tansu;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use std::time::Duration;

#[test]
fn ensure_topic_makes_a_missing_topic_with_one_partition_and_leaves_an_existing_one() {
    let test = "ensure_topic_makes_a_missing_topic_with_one_partition_and_leaves_an_existing_one";
    let Some(binary) = tansu::or_skip(test) else { return };
    let dir = std::env::temp_dir().join(format!("kafka-topics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let broker = tansu::Tansu::start(&binary, &dir, &[("kept", 3)]);
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &broker.address);
    let partitions = |topic: &str| -> Option<usize> {
        let probe: BaseConsumer = config.clone().set("allow.auto.create.topics", "false").create().expect("consumer");
        let metadata = probe.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let found = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none());
        found.map(|t| t.partitions().len()).filter(|&n| n > 0)
    };
    let timeout = Duration::from_secs(10);

    assert_eq!(partitions("reputation.dnsbl.sweeps"), None);
    kafka::control::ensure_topic(&config, "reputation.dnsbl.sweeps", &[], timeout).expect("made");
    assert_eq!(partitions("reputation.dnsbl.sweeps"), Some(1));
    kafka::control::ensure_topic(&config, "reputation.dnsbl.sweeps", &[], timeout).expect("there already");
    kafka::control::ensure_topic(&config, "streamd.control", &[("cleanup.policy", "compact")], timeout)
        .expect("made, compacted");
    assert_eq!(partitions("streamd.control"), Some(1));
    kafka::control::ensure_topic(&config, "kept", &[], timeout).expect("there already");
    assert_eq!(partitions("kept"), Some(3));
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
