//! How a backend's events (a program started, a process ended, an exec denied) reach the
//! library's sink without ever making the sandbox wait for it: the reporter puts each event on
//! a bounded queue and never blocks; a delivery thread hands them to the sink, which may be slow
//! (a file on a busy disk, a pipe read slowly). When the queue is full the event is dropped and
//! counted, and the next delivery is preceded by an `events.dropped` record with the count, so
//! nothing is lost silently. A decision (an exec allowed or denied) never waits on the sink.

use ringfence_audit::EventBody;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where a run's events go; called from the backend's and the gateway's threads.
pub type EventSink = Arc<dyn Fn(EventBody) + Send + Sync>;

/// Events that may wait for the sink at once; beyond that they are counted and dropped.
pub const QUEUE_CAPACITY: usize = 8192;

/// The reporting end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Reporter {
    queue: SyncSender<EventBody>,
    dropped: Arc<AtomicU64>,
}

impl Reporter {
    /// Queues an event for the sink; when the queue is full it is counted as dropped instead.
    pub fn report(&self, event: EventBody) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The delivery thread. [`Delivery::finish`] waits until every queued event was delivered.
pub struct Delivery {
    thread: JoinHandle<()>,
}

impl Delivery {
    /// Starts delivering to `sink`; the returned reporter (and its clones) feed it.
    pub fn start(sink: EventSink, capacity: usize) -> std::io::Result<(Reporter, Delivery)> {
        let (queue, received) = sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("ringfence-events".into())
            .spawn(move || deliver(&received, &counter, sink.as_ref()))?;
        Ok((Reporter { queue, dropped }, Delivery { thread }))
    }

    /// Waits until the queue is empty and closed: call it once every reporter is dropped.
    pub fn finish(self) {
        let _ = self.thread.join();
    }
}

fn deliver(received: &Receiver<EventBody>, dropped: &AtomicU64, sink: &(dyn Fn(EventBody) + Send + Sync)) {
    let flush = || {
        let count = dropped.swap(0, Ordering::Relaxed);
        if count > 0 {
            sink(EventBody::EventsDropped { count });
        }
    };
    while let Ok(event) = received.recv() {
        flush();
        sink(event);
    }
    flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_slow_sink_drops_and_counts_but_never_blocks_the_reporter() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let (sink_seen, sink_gate) = (seen.clone(), gate.clone());
        let sink: EventSink = Arc::new(move |e| {
            drop(sink_gate.lock().unwrap());
            sink_seen.lock().unwrap().push(e);
        });
        let (reporter, delivery) = Delivery::start(sink, 4).unwrap();
        let started = std::time::Instant::now();
        for n in 0..100 {
            reporter.report(EventBody::PolicyDeny { rule: "exec".into(), detail: n.to_string() });
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        drop(held);
        drop(reporter);
        delivery.finish();
        let seen = seen.lock().unwrap();
        let delivered = seen.iter().filter(|e| matches!(e, EventBody::PolicyDeny { .. })).count() as u64;
        let dropped: u64 =
            seen.iter().map(|e| if let EventBody::EventsDropped { count } = e { *count } else { 0 }).sum();
        assert_eq!(delivered + dropped, 100, "{seen:?}");
        assert!(dropped > 0);
    }
}
