//! The JetStream acknowledgements of the batches in flight on one
//! connection. Every message of batch `n` carries the reply subject
//! `<inbox>.<n>` (one subject per batch, so the server routes all of its
//! acknowledgements through one cached match); one task reads the inbox's
//! subscription and counts each batch's acknowledgements, settling the
//! batch once all came, or at the first refusal.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::{Message, Subscriber};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::sinks::Delivery;

/// A batch waiting for its acknowledgements.
struct Waiting {
    /// Acknowledgements still to come.
    left: usize,
    /// Told the outcome once settled.
    settle: oneshot::Sender<Result<(), String>>,
}

#[derive(Default)]
struct Book {
    /// The batches in flight, by number.
    waiting: HashMap<u64, Waiting>,
    /// Why the subscription ended, once it did (the connection is unusable).
    closed: Option<String>,
}

/// The batches of one connection waiting for acknowledgements (shared by
/// the sink and the task reading the inbox).
#[derive(Clone, Default)]
pub struct AckBook {
    book: Arc<Mutex<Book>>,
}

/// One batch's wait: settles to the delivery's outcome; dropping it (the
/// runner gave the batch up) forgets the batch.
pub struct PendingAcks {
    book: AckBook,
    batch: u64,
    total: usize,
    deadline: Instant,
    settled: oneshot::Receiver<Result<(), String>>,
}

impl AckBook {
    /// Starts counting `total` acknowledgements for batch `batch`, due by `deadline`.
    pub fn expect(&self, batch: u64, total: usize, deadline: Instant) -> PendingAcks {
        let (settle, settled) = oneshot::channel();
        let mut book = self.book.lock();
        match &book.closed {
            Some(why) => {
                let _ = settle.send(Err(why.clone()));
            }
            None if total == 0 => {
                let _ = settle.send(Ok(()));
            }
            None => {
                book.waiting.insert(batch, Waiting { left: total, settle });
            }
        }
        PendingAcks { book: self.clone(), batch, total, deadline, settled }
    }

    /// Whether the subscription ended (the connection must be made again).
    pub fn is_closed(&self) -> bool {
        self.book.lock().closed.is_some()
    }

    /// Reads the inbox's acknowledgements until the subscription ends, then
    /// fails every batch still waiting.
    pub async fn read(self, mut acks: Subscriber, subject: String) {
        while let Some(ack) = acks.next().await {
            self.take(&ack, &subject);
        }
        let mut book = self.book.lock();
        let why = "the connection to NATS closed before every acknowledgement came".to_string();
        for (_, waiting) in book.waiting.drain() {
            let _ = waiting.settle.send(Err(why.clone()));
        }
        book.closed = Some(why);
    }

    /// Counts one acknowledgement (on `<inbox>.<batch>`); a refusal settles
    /// its batch as failed. `subject` is where the batch was published (for errors).
    fn take(&self, ack: &Message, subject: &str) {
        let Some(batch) = ack.subject.as_str().rsplit('.').next().and_then(|n| n.parse::<u64>().ok()) else { return };
        let refusal = if let Some(status) = ack.status {
            Some(format!("JetStream answered status {status} on {subject:?} (no stream for the subject?)"))
        } else if memchr::memmem::find(&ack.payload, b"\"error\"").is_some() {
            Some(format!("JetStream refused a message on {subject:?}: {}", String::from_utf8_lossy(&ack.payload)))
        } else {
            None
        };
        let mut book = self.book.lock();
        // Not waiting: a batch already settled (refused) or given up.
        let Some(waiting) = book.waiting.get_mut(&batch) else { return };
        waiting.left = waiting.left.saturating_sub(1);
        if refusal.is_none() && waiting.left > 0 {
            return;
        }
        if let Some(waiting) = book.waiting.remove(&batch) {
            let _ = waiting.settle.send(refusal.map_or(Ok(()), Err));
        }
    }
}

impl PendingAcks {
    /// The batch's outcome: delivered once every message was acknowledged;
    /// a refusal, a closed connection or the deadline retry it.
    pub async fn outcome(mut self) -> Delivery {
        let error = match tokio::time::timeout_at(self.deadline, &mut self.settled).await {
            Ok(Ok(Ok(()))) => return Delivery::Delivered,
            Ok(Ok(Err(error))) => error,
            Ok(Err(_)) => "the acknowledgement reader stopped".to_string(),
            Err(_) => {
                let left = self.book.book.lock().waiting.get(&self.batch).map_or(self.total, |w| w.left);
                format!("{left} of {} messages not acknowledged in time", self.total)
            }
        };
        Delivery::Retry { error, after: None }
    }
}

impl Drop for PendingAcks {
    fn drop(&mut self) {
        self.book.book.lock().waiting.remove(&self.batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::{Subject, StatusCode};
    use bytes::Bytes;
    use std::time::Duration;

    fn ack(subject: &str, payload: &str, status: Option<StatusCode>) -> Message {
        Message { subject: Subject::from(subject), reply: None, payload: Bytes::from(payload.to_string()), headers: None, status, description: None, length: 0 }
    }

    #[tokio::test]
    async fn settles_each_batch_on_its_own_acknowledgements() {
        let book = AckBook::default();
        let soon = Instant::now() + Duration::from_secs(5);
        let (one, two) = (book.expect(1, 2, soon), book.expect(2, 1, soon));
        book.take(&ack("_INBOX.x.1", r#"{"stream":"S","seq":1}"#, None), "s");
        book.take(&ack("_INBOX.x.2", r#"{"stream":"S","seq":2}"#, None), "s");
        book.take(&ack("_INBOX.x.1", r#"{"stream":"S","seq":3,"duplicate":true}"#, None), "s");
        assert_eq!(one.outcome().await, Delivery::Delivered);
        assert_eq!(two.outcome().await, Delivery::Delivered);

        let refused = book.expect(3, 2, soon);
        book.take(&ack("_INBOX.x.3", r#"{"error":{"code":503,"description":"no space"}}"#, None), "s");
        assert!(matches!(refused.outcome().await, Delivery::Retry { error, .. } if error.contains("no space")));
        let no_stream = book.expect(4, 1, soon);
        book.take(&ack("_INBOX.x.4", "", Some(StatusCode::NO_RESPONDERS)), "s");
        assert!(matches!(no_stream.outcome().await, Delivery::Retry { error, .. } if error.contains("no stream")));

        let late = book.expect(5, 3, Instant::now() + Duration::from_millis(50));
        book.take(&ack("_INBOX.x.5", r#"{"stream":"S","seq":9}"#, None), "s");
        assert!(matches!(late.outcome().await, Delivery::Retry { error, .. } if error.contains("2 of 3 messages")));
        assert!(book.book.lock().waiting.is_empty(), "settled and dropped batches are forgotten");
    }
}
