//! How a backend's events (a program started, a process ended, an exec denied) reach the
//! library's sink without ever making the sandbox wait for it: the reporter puts each event on
//! a bounded queue and never blocks; a delivery thread hands them to the sink, which may be slow
//! (a file on a busy disk, a pipe read slowly). When the queue is full the event is dropped and
//! counted, and the next delivery is preceded by an `events.dropped` record with the count, so
//! nothing is lost silently. A decision (an exec allowed or denied) never waits on the sink.

use ringfence_audit::EventBody;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Where a run's events go; called from the backend's and the gateway's threads.
pub type EventSink = Arc<dyn Fn(EventBody) + Send + Sync>;

/// Events that may wait for the sink at once; beyond that they are counted and dropped.
pub const QUEUE_CAPACITY: usize = 8192;

/// The queue between the reporters and the delivery thread. It grows as events wait (a
/// channel with this capacity would allocate and touch every slot at the launch).
struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct State {
    events: VecDeque<EventBody>,
    dropped: u64,
    /// Live reporters: the delivery ends once there are none and the queue is empty.
    reporters: usize,
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reporting end: cheap to clone, never blocks (beyond a short lock).
pub struct Reporter {
    queue: Arc<Queue>,
}

impl Reporter {
    /// Queues an event for the sink; when the queue is full it is counted as dropped instead.
    pub fn report(&self, event: EventBody) {
        let mut state = self.queue.state();
        if state.events.len() < self.queue.capacity {
            state.events.push_back(event);
        } else {
            state.dropped += 1;
        }
        drop(state);
        self.queue.ready.notify_one();
    }
}

impl Clone for Reporter {
    fn clone(&self) -> Reporter {
        self.queue.state().reporters += 1;
        Reporter { queue: self.queue.clone() }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.queue.state().reporters -= 1;
        self.queue.ready.notify_one();
    }
}

/// The delivery thread. [`Delivery::finish`] waits until every queued event was delivered.
pub struct Delivery {
    thread: JoinHandle<()>,
}

impl Delivery {
    /// Starts delivering to `sink`; the returned reporter (and its clones) feed it.
    pub fn start(sink: EventSink, capacity: usize) -> std::io::Result<(Reporter, Delivery)> {
        let state = State { reporters: 1, ..State::default() };
        let queue = Arc::new(Queue { state: Mutex::new(state), ready: Condvar::new(), capacity });
        let delivered = queue.clone();
        let thread = std::thread::Builder::new()
            .name("ringfence-events".into())
            .spawn(move || deliver(&delivered, sink.as_ref()))?;
        Ok((Reporter { queue }, Delivery { thread }))
    }

    /// Waits until the queue is empty and every reporter is gone: call it once every reporter
    /// is dropped.
    pub fn finish(self) {
        let _ = self.thread.join();
    }
}

/// What the delivery thread takes from the queue at once: the drops counted before the
/// next event (which must be told first), and that event; None when it is over.
fn next(queue: &Queue) -> Option<(u64, Option<EventBody>)> {
    let mut state = queue.state();
    loop {
        let dropped = std::mem::take(&mut state.dropped);
        let event = state.events.pop_front();
        if dropped > 0 || event.is_some() {
            return Some((dropped, event));
        }
        if state.reporters == 0 {
            return None;
        }
        state = queue.ready.wait(state).unwrap_or_else(|p| p.into_inner());
    }
}

fn deliver(queue: &Queue, sink: &(dyn Fn(EventBody) + Send + Sync)) {
    while let Some((dropped, event)) = next(queue) {
        if dropped > 0 {
            sink(EventBody::EventsDropped { count: dropped });
        }
        if let Some(event) = event {
            sink(event);
        }
    }
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

    /// Delivery ends once every clone of the reporter is gone, after delivering all they sent,
    /// in order.
    #[test]
    fn delivery_ends_with_the_last_reporter_and_loses_nothing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let sink: EventSink = Arc::new(move |e| sink_seen.lock().unwrap().push(e));
        let (reporter, delivery) = Delivery::start(sink, 64).unwrap();
        let clones: Vec<Reporter> = (0..3).map(|_| reporter.clone()).collect();
        drop(reporter);
        let threads: Vec<_> = clones
            .into_iter()
            .enumerate()
            .map(|(n, r)| {
                std::thread::spawn(move || {
                    for k in 0..10 {
                        r.report(EventBody::PolicyDeny { rule: n.to_string(), detail: k.to_string() });
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        delivery.finish();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 30, "{seen:?}");
        for n in 0..3 {
            let details: Vec<String> = seen
                .iter()
                .filter_map(|e| match e {
                    EventBody::PolicyDeny { rule, detail } if *rule == n.to_string() => Some(detail.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(details, (0..10).map(|k| k.to_string()).collect::<Vec<_>>());
        }
    }
}
