//! A producer whose delivery reports are served on a thread that sleeps until
//! librdkafka has one. rdkafka's `ThreadedProducer` polls every 100 ms and
//! spins through the last millisecond of each poll (its deadline is rounded
//! down to whole milliseconds, so the final wait is 0 ms, again and again):
//! about 1% of a core for a producer with nothing to do (bench/README.md,
//! "Cheap at the rates users run").

use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{IsError, KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer as _, ProducerContext, PurgeConfig};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::delivery::{BatchAck, Deliveries};

/// Producer context that counts delivery reports, in total and per batch.
pub struct Counting(pub Arc<Deliveries>);

impl ClientContext for Counting {
    fn error(&self, error: KafkaError, reason: &str) {
        super::client_error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::client_log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        super::requests::record("producer", statistics);
    }
}

impl ProducerContext for Counting {
    type DeliveryOpaque = Arc<BatchAck>;
    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<BatchAck>) {
        match result {
            Ok(m) => {
                self.0.record(Ok((m.topic(), m.partition(), m.offset())));
                batch.reported(Ok(()));
            }
            Err((e, _)) => {
                self.0.record(Err(e.to_string()));
                batch.reported(Err(format!("Kafka did not take a record: {e}")));
            }
        }
    }
}

/// How often `flush` looks whether every record has its report.
const FLUSH_STEP: Duration = Duration::from_millis(1);

/// How long the reports thread sleeps without a wake-up before it looks at the
/// queue anyway: a safety net, never the way reports normally arrive.
const SAFETY_NET: Duration = Duration::from_secs(1);

/// Our producer: rdkafka's `BaseProducer` (everything but polling) and the
/// thread that serves its delivery reports.
pub struct Producer {
    base: Arc<BaseProducer<Counting>>,
    reports: Option<Reports>,
}

impl std::ops::Deref for Producer {
    type Target = BaseProducer<Counting>;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

/// Set by librdkafka's thread when the producer's queue gets an event; the
/// reports thread waits on it.
struct Signal {
    /// (an event arrived, the thread must stop)
    state: Mutex<(bool, bool)>,
    woken: Condvar,
    /// How long to wait without a wake-up (`SAFETY_NET`).
    net: Duration,
}

impl Signal {
    fn set(&self, stop: bool) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 = true;
        s.1 |= stop;
        self.woken.notify_one();
    }

    /// Wait for an event (or the safety net); true once the thread must stop.
    fn wait(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !s.0 {
            s = self.woken.wait_timeout(s, self.net).unwrap_or_else(PoisonError::into_inner).0;
        }
        s.0 = false;
        s.1
    }
}

/// Called by librdkafka (any of its threads) when an event is queued for the
/// producer: it must only wake the reports thread, never call librdkafka.
unsafe extern "C" fn event_queued(_: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Signal` that `Reports::start` leaked with
    // `Arc::into_raw`; it is released only after this callback is disabled.
    let signal = unsafe { &*(opaque as *const Signal) };
    signal.set(false);
}

/// At most this many events are served a wake-up before the thread waits again.
const MAX_POLLS_A_WAKE_UP: usize = 1 << 20;

/// The reports thread and what wakes it.
struct Reports {
    queue: *mut rdsys::rd_kafka_queue_t,
    signal: *const Signal,
    thread: Option<JoinHandle<()>>,
}

// SAFETY: the queue handle is librdkafka's (thread-safe) and the signal is
// shared through an Arc; both are released once, in `Drop`.
unsafe impl Send for Reports {}
unsafe impl Sync for Reports {}

impl Reports {
    fn start(producer: Arc<BaseProducer<Counting>>, net: Duration) -> std::io::Result<Self> {
        let signal = Signal { state: Mutex::new((false, false)), woken: Condvar::new(), net };
        let signal = Arc::into_raw(Arc::new(signal));
        let client = producer.client().native_ptr();
        // SAFETY: the client is alive (we hold the producer); the queue handle
        // is destroyed in Drop; `signal` stays alive until the callback is off.
        let queue = unsafe {
            let queue = rdsys::rd_kafka_queue_get_main(client);
            rdsys::rd_kafka_queue_cb_event_enable(queue, Some(event_queued), signal as *mut c_void);
            queue
        };
        let (events, wake) = (QueuePtr(queue), SignalPtr(signal));
        let thread = std::thread::Builder::new().name("rtds-reports".into()).spawn(move || {
            let (events, wake) = (events, wake);
            loop {
                // Serve what is queued, a poll an event, until the queue is
                // empty: librdkafka calls back only when an event lands in an
                // empty queue. (Bounded, in case an op were never taken: the
                // safety net comes back to it.)
                // SAFETY: the queue handle and the signal outlive this thread (Drop joins it first).
                for _ in 0..MAX_POLLS_A_WAKE_UP {
                    if unsafe { rdsys::rd_kafka_queue_length(events.0) } == 0 {
                        break;
                    }
                    producer.poll(Duration::ZERO);
                }
                if unsafe { &*wake.0 }.wait() {
                    break;
                }
            }
        });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                Self::release(queue, signal);
                return Err(e);
            }
        };
        Ok(Self { queue, signal, thread: Some(thread) })
    }

    fn release(queue: *mut rdsys::rd_kafka_queue_t, signal: *const Signal) {
        // SAFETY: called once, after which neither pointer is used: the
        // callback is off before the signal is freed.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(queue, None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(queue);
            drop(Arc::from_raw(signal));
        }
    }
}

struct QueuePtr(*mut rdsys::rd_kafka_queue_t);
struct SignalPtr(*const Signal);
// SAFETY: see `Reports`.
unsafe impl Send for QueuePtr {}
unsafe impl Send for SignalPtr {}

impl Drop for Reports {
    fn drop(&mut self) {
        // SAFETY: the signal is alive until `release` below.
        unsafe { &*self.signal }.set(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Self::release(self.queue, self.signal);
    }
}

impl Producer {
    /// Create the producer `config` describes, its reports served from now on.
    pub fn create(config: &ClientConfig, context: Counting) -> KafkaResult<Self> {
        Self::create_with(config, context, SAFETY_NET)
    }

    /// `create`, the reports thread looking at its queue unwoken every `net`.
    fn create_with(config: &ClientConfig, context: Counting, net: Duration) -> KafkaResult<Self> {
        let base = Arc::new(config.create_with_context::<_, BaseProducer<Counting>>(context)?);
        let reports = Reports::start(base.clone(), net)
            .map_err(|e| rdkafka::error::KafkaError::ClientCreation(format!("starting the reports thread: {e}")))?;
        Ok(Self { base, reports: Some(reports) })
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The thread first: it holds the other reference to the producer.
        drop(self.reports.take());
    }
}

/// The transaction calls of `crate::delivery` take any rdkafka producer.
impl rdkafka::producer::Producer<Counting> for Producer {
    fn client(&self) -> &Client<Counting> {
        self.base.client()
    }
    fn in_flight_count(&self) -> i32 {
        self.base.in_flight_count()
    }
    /// rdkafka's flush polls the reports queue in waits of up to 100 ms while
    /// records are in flight; the reports thread serves that queue, so each
    /// such wait lasted its whole 100 ms. This one looks every millisecond.
    fn flush<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        let deadline = match timeout.into() {
            Timeout::After(t) => Some(Instant::now() + t),
            Timeout::Never => None,
        };
        // SAFETY: the client is alive. With a zero timeout librdkafka wakes
        // its broker threads to send what lingers, serves any report already
        // queued (here, as the reports thread would), and says whether a
        // record is still in flight, without waiting.
        while unsafe { rdsys::rd_kafka_flush(self.base.client().native_ptr(), 0) }.is_error() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            std::thread::sleep(FLUSH_STEP);
        }
        Ok(())
    }
    fn purge(&self, flags: PurgeConfig) {
        self.base.purge(flags)
    }
    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.base.init_transactions(timeout)
    }
    fn begin_transaction(&self) -> KafkaResult<()> {
        self.base.begin_transaction()
    }
    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        cgm: &ConsumerGroupMetadata,
        timeout: T,
    ) -> KafkaResult<()> {
        self.base.send_offsets_to_transaction(offsets, cgm, timeout)
    }
    /// rdkafka flushes before the commit, and so waited 100 ms whenever the
    /// reports thread had served the batch's last report but librdkafka still
    /// counted its record in flight (1 transaction in 50 at 1,000 records/s:
    /// bench/README.md, "Transactions that waited 100 ms"). The caller has
    /// every report; the flush here waits out that moment in 1 ms steps.
    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        let timeout = timeout.into();
        self.flush(timeout)?;
        self.base.commit_transaction(timeout)
    }
    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.base.abort_transaction(timeout)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rdkafka::ClientConfig;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::BaseRecord;

    use super::{Counting, Producer};
    use crate::delivery::{BatchAck, Deliveries};

    /// Every report wakes the thread: with a safety net of an hour, a
    /// wake-up lost would leave a record's report unserved and the test waiting.
    /// No broker is needed: each record times out, and its (failed) report is
    /// queued like any other.
    #[test]
    fn each_report_wakes_the_reports_thread() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1").set("message.timeout.ms", "50");
        let deliveries = Arc::new(Deliveries::default());
        let producer = Producer::create_with(&config, Counting(deliveries.clone()), Duration::from_secs(3600)).unwrap();
        let mut sent = 0;
        for round in 1..=4 {
            for _ in 0..round {
                let ack = Arc::new(BatchAck::default());
                ack.sending();
                let record = BaseRecord::with_opaque_to("t", ack).payload(&b"x"[..]).key(&b"k"[..]);
                producer.send(record).map_err(|(e, _)| e).unwrap();
                sent += 1;
            }
            let since = Instant::now();
            while deliveries.failed() < sent {
                assert!(
                    since.elapsed() < Duration::from_secs(60),
                    "round {round}: {} of {sent} reports",
                    deliveries.failed()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert_eq!(deliveries.failed(), 10);
    }

    /// `flush` (the reports served by their own thread, not by it) returns
    /// once every record has its report, and says so when they are not in
    /// by its deadline.
    #[test]
    fn flush_waits_for_every_report_and_no_longer_than_asked() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1").set("message.timeout.ms", "300");
        let deliveries = Arc::new(Deliveries::default());
        let producer = Producer::create(&config, Counting(deliveries.clone())).unwrap();
        let ack = Arc::new(BatchAck::default());
        ack.sending();
        producer
            .send(BaseRecord::with_opaque_to("t", ack).payload(&b"x"[..]).key(&b"k"[..]))
            .map_err(|(e, _)| e)
            .unwrap();
        let early = rdkafka::producer::Producer::flush(&producer, Duration::ZERO);
        assert!(matches!(early, Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))), "{early:?}");
        assert_eq!(deliveries.failed(), 0);
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60)).unwrap();
        // Not `in_flight_count() == 0`: it also counts the queue's other
        // events, and a refused connection queues an error at any moment.
        assert_eq!(deliveries.failed(), 1);
    }
}
