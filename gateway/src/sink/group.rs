//! The sink thread and its group commit: connections hand batches to a [`SinkHandle`]; the
//! thread takes every batch waiting, writes them all to every [`RecordSink`], commits once,
//! and only then answers each batch. Under load many connections share one commit, and the
//! channel is bounded, so a slow sink slows reads instead of letting memory grow.

use std::io;
use std::sync::mpsc as std_mpsc;
use std::thread;

use tokio::sync::{mpsc, oneshot};
use trackgate_codecs::Record;

/// A destination for records. Implement this to send records to your own store.
pub trait RecordSink: Send + 'static {
    /// Writes records (buffering is fine: nothing is acknowledged until `commit`).
    fn write(&mut self, records: &[Record]) -> io::Result<()>;
    /// Makes everything written so far durable by this sink's policy. Returns when done.
    fn commit(&mut self) -> io::Result<()>;
}

/// The sink is gone (its thread failed or shut down); nothing more can be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkClosed(pub String);

impl std::fmt::Display for SinkClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sink unavailable: {}", self.0)
    }
}

impl std::error::Error for SinkClosed {}

type Answer = Result<(), SinkClosed>;

/// Answers for one runtime, handed over in one message.
type Answers = Vec<(oneshot::Sender<Answer>, Answer)>;

struct Batch {
    records: Vec<Record>,
    done: oneshot::Sender<Answer>,
    relay: Option<mpsc::UnboundedSender<Answers>>,
}

/// The connections' side of the sink. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SinkHandle {
    /// To the sink thread: the batches of one submit, or of every submit a runtime's
    /// forwarder collected in one turn.
    tx: mpsc::Sender<Vec<Batch>>,
    /// Where the sink thread sends this handle's answers, if not straight to each waiter.
    relay: Option<mpsc::UnboundedSender<Answers>>,
    /// This handle's runtime's forwarder, if submits go through one.
    outbox: Option<mpsc::UnboundedSender<Batch>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("records", &self.records.len()).finish()
    }
}

impl SinkHandle {
    /// Hands `records` to the sink and waits until they are committed. Only after `Ok` may
    /// the frames they came from be acknowledged to the device.
    pub async fn submit(&self, records: Vec<Record>) -> Result<(), SinkClosed> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let batch = Batch { records, done, relay: self.relay.clone() };
        match &self.outbox {
            Some(outbox) => outbox.send(batch).map_err(|_| SinkClosed("sink forwarder has stopped".into()))?,
            None => self.tx.send(vec![batch]).await.map_err(|_| SinkClosed("sink thread has stopped".into()))?,
        }
        wait.await.map_err(|_| SinkClosed("sink thread dropped the batch".into()))?
    }

    /// Resolves once the sink thread has stopped taking records: a sink failed (the thread
    /// stops at the first error, since nothing after it could be acknowledged honestly), or
    /// every other handle is gone and the thread has finished.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }

    /// A handle that goes to the sink thread and back through two tasks on the calling
    /// thread's tokio runtime, so that the two threads wake each other once per turn of the
    /// runtime instead of once per submit:
    /// - a forwarder: submits hand their batch to it, and it sends every batch submitted
    ///   since its last turn to the sink thread in one message (the connections that became
    ///   ready together, e.g. a burst of logins, reach the sink thread with one wake-up and
    ///   are committed together);
    /// - a relay: the sink thread sends each commit's answers for this runtime in one
    ///   message, and the relay hands them out (waking a task from another thread costs the
    ///   runtime a system call each time).
    ///
    /// Neither adds a wait: a woken task runs in the same turn, after the tasks already
    /// ready. Back-pressure is the sink queue's, felt by the forwarder; the batches held
    /// meanwhile are one per waiting connection at most, since a submit waits for its
    /// commit. Must be called inside a tokio runtime; the tasks end when the last handle
    /// made here (and the last batch sent through it) is gone.
    pub fn answered_on_this_runtime(&self) -> SinkHandle {
        let (relay, mut answers) = mpsc::unbounded_channel::<Answers>();
        tokio::spawn(async move {
            while let Some(list) = answers.recv().await {
                for (done, answer) in list {
                    let _ = done.send(answer);
                }
            }
        });
        let (outbox, mut inbox) = mpsc::unbounded_channel::<Batch>();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut group = Vec::new();
            while inbox.recv_many(&mut group, usize::MAX).await > 0 {
                // The sink thread stopped: the batches are dropped with their answer
                // senders, so their waiters hear that nothing was committed.
                if tx.send(std::mem::take(&mut group)).await.is_err() {
                    break;
                }
            }
        });
        SinkHandle { tx: self.tx.clone(), relay: Some(relay), outbox: Some(outbox) }
    }
}

/// Sends a commit's answers: one message per relaying runtime, the rest directly.
fn answer_all(group: &mut Vec<Batch>, answer: &Answer) {
    let mut relayed: Vec<(mpsc::UnboundedSender<Answers>, Answers)> = Vec::new();
    for b in group.drain(..) {
        match b.relay {
            None => {
                let _ = b.done.send(answer.clone());
            }
            Some(relay) => match relayed.iter_mut().find(|(r, _)| r.same_channel(&relay)) {
                Some((_, list)) => list.push((b.done, answer.clone())),
                None => relayed.push((relay, vec![(b.done, answer.clone())])),
            },
        }
    }
    for (relay, list) in relayed {
        // The relaying task is gone (its runtime stopped): answer directly instead.
        if let Err(mpsc::error::SendError(list)) = relay.send(list) {
            for (done, answer) in list {
                let _ = done.send(answer);
            }
        }
    }
}

/// The running sink thread. Dropping every [`SinkHandle`] lets it drain and stop;
/// [`SinkThread::join`] waits for that.
#[derive(Debug)]
pub struct SinkThread {
    thread: thread::JoinHandle<io::Result<()>>,
}

impl SinkThread {
    /// Waits until every handle is dropped and the last batch is committed.
    pub fn join(self) -> io::Result<()> {
        self.thread.join().unwrap_or_else(|_| Err(io::Error::other("sink thread panicked")))
    }
}

/// Starts `sinks` on a thread of their own. `queue` bounds the messages waiting (back-pressure):
/// a direct submit's batch, or a runtime's batches of one turn.
pub fn start(mut sinks: Vec<Box<dyn RecordSink>>, queue: usize) -> io::Result<(SinkHandle, SinkThread)> {
    let (tx, mut rx) = mpsc::channel::<Vec<Batch>>(queue.max(1));
    // Ready signal so callers know the thread runs before they accept devices.
    let (ready_tx, ready_rx) = std_mpsc::channel::<()>();
    let thread = thread::Builder::new().name("trackgate-sink".into()).spawn(move || -> io::Result<()> {
        let _ = ready_tx.send(());
        let mut group: Vec<Batch> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            group.extend(first);
            // Group commit: take everything already waiting, write it all, commit once.
            while let Ok(more) = rx.try_recv() {
                group.extend(more);
            }
            let result = (|| {
                for sink in &mut sinks {
                    for b in &group {
                        sink.write(&b.records)?;
                    }
                    sink.commit()?;
                }
                Ok::<(), io::Error>(())
            })();
            let answer = result.as_ref().map(|_| ()).map_err(|e| SinkClosed(e.to_string()));
            answer_all(&mut group, &answer);
            // A sink that cannot write stops taking records: nothing after this point
            // could be acknowledged honestly.
            result?;
        }
        Ok(())
    })?;
    let _ = ready_rx.recv();
    Ok((SinkHandle { tx, relay: None, outbox: None }, SinkThread { thread }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use trackgate_codecs::{Kind, Protocol};

    /// Records what was committed, to check that submit returns only after commit.
    #[derive(Default, Clone)]
    struct Probe {
        written: Arc<Mutex<Vec<String>>>,
        committed: Arc<Mutex<usize>>,
        commits: Arc<Mutex<usize>>,
        fail: bool,
    }

    impl RecordSink for Probe {
        fn write(&mut self, records: &[Record]) -> io::Result<()> {
            self.written.lock().unwrap().extend(records.iter().map(|r| r.message_type.to_string()));
            Ok(())
        }
        fn commit(&mut self) -> io::Result<()> {
            if self.fail {
                return Err(io::Error::other("disk full"));
            }
            *self.committed.lock().unwrap() = self.written.lock().unwrap().len();
            *self.commits.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn rec(t: &'static str) -> Record {
        Record::new(Protocol::Nmea, Kind::Position, t)
    }

    #[test]
    fn submit_returns_after_the_records_are_committed() {
        let probe = Probe::default();
        let (handle, thread) = start(vec![Box::new(probe.clone())], 4).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            for t in ["RMC", "GGA", "GLL"] {
                handle.submit(vec![rec(t)]).await.unwrap();
                assert_eq!(*probe.committed.lock().unwrap(), probe.written.lock().unwrap().len());
            }
        });
        drop(handle);
        thread.join().unwrap();
        assert_eq!(*probe.written.lock().unwrap(), ["RMC", "GGA", "GLL"]);
    }

    #[test]
    fn a_failing_sink_refuses_instead_of_acknowledging() {
        let probe = Probe { fail: true, ..Probe::default() };
        let (handle, thread) = start(vec![Box::new(probe)], 4).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let e = handle.submit(vec![rec("RMC")]).await.unwrap_err();
            assert!(e.to_string().contains("disk full"), "{e}");
            assert!(handle.submit(vec![rec("GGA")]).await.is_err());
        });
        drop(handle);
        assert!(thread.join().is_err());
    }

    /// Answers relayed through a runtime's task (one message per commit) reach every
    /// waiter, only after the commit, and a failing sink's refusal travels the same way.
    /// Submits made in one turn of the runtime reach the sink thread as one message.
    #[test]
    fn answers_relayed_on_a_runtime_reach_every_waiter_after_the_commit() {
        let probe = Probe::default();
        let (handle, thread) = start(vec![Box::new(probe.clone())], 64).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let relayed = handle.answered_on_this_runtime();
            let mut waiters = tokio::task::JoinSet::new();
            for i in 0..200 {
                let h = relayed.clone();
                let probe = probe.clone();
                waiters.spawn(async move {
                    let label = format!("m{i}");
                    h.submit(vec![Record::new(Protocol::Nmea, Kind::Position, label.clone())]).await.unwrap();
                    // Answered only once this very record is committed.
                    let at = probe.written.lock().unwrap().iter().position(|t| *t == label).unwrap();
                    assert!(*probe.committed.lock().unwrap() > at, "{label} answered before its commit");
                });
            }
            while let Some(r) = waiters.join_next().await {
                r.unwrap();
            }
        });
        drop(handle);
        drop(rt);
        thread.join().unwrap();
        assert_eq!(*probe.committed.lock().unwrap(), 200);
        // The 200 tasks ran in one turn, before the forwarder (which they woke) ran once.
        assert_eq!(*probe.commits.lock().unwrap(), 1, "one message, one commit");

        let (handle, thread) = start(vec![Box::new(Probe { fail: true, ..Probe::default() })], 4).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let e = handle.answered_on_this_runtime().submit(vec![rec("RMC")]).await.unwrap_err();
            assert!(e.to_string().contains("disk full"), "{e}");
        });
        drop(handle);
        drop(rt);
        assert!(thread.join().is_err());
    }
}
