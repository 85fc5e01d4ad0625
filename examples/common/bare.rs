//! What the bare baselines share: a plain rdkafka producer with rtds' producer
//! settings (so a comparison measures rtds, not different settings) and a send
//! that waits while the local queue is full.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

pub type Producer = ThreadedProducer<DefaultProducerContext>;

pub fn producer(brokers: &str) -> anyhow::Result<Producer> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers).set("compression.type", "lz4");
    for (k, v) in rtds::kafka::PRODUCER_DEFAULTS {
        cfg.set(*k, *v);
    }
    Ok(cfg.create()?)
}

pub fn send(producer: &Producer, mut record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => anyhow::bail!("send: {e}"),
        }
    }
}
