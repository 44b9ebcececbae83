//! The `nats` sink: one JetStream message per event on the spec's subject,
//! with `Nats-Msg-Id` = the event id (a window result: a digest of the
//! record), so the server's duplicate window drops a retried one. A batch
//! is published in one go, every message with the batch's reply subject
//! under the connection's inbox, and is delivered once JetStream
//! acknowledged every message ([`acks`]). Up to [`IN_FLIGHT`] batches are
//! out at once (the runner publishes the next while the first wait for
//! their acknowledgements, and still moves the position in order). A
//! missing or failed acknowledgement (timeout, no stream for the subject, a
//! lost connection) retries the batch. At least once.

mod acks;

use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::{Client, HeaderMap, Subject};
use async_trait::async_trait;
use bytes::Bytes;

use super::spec::SinkSpec;
use super::{Batch, Confirmation, Delivery, Sink};
use acks::{AckBook, PendingAcks};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a batch's acknowledgements may take in all, from its publishing.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches published and not yet acknowledged, at most: enough to keep
/// JetStream busy while the runner records one batch and reads the next.
pub const IN_FLIGHT: usize = 4;

/// One connection: the client, the inbox its acknowledgements come to and
/// the task counting them (stopped with the connection).
struct Connection {
    client: Client,
    inbox: String,
    acks: AckBook,
    /// The number of the last batch published (its reply subject's last token).
    batches: u64,
    reader: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Connects and subscribes to a fresh inbox for the acknowledgements of
    /// batches published on `subject`.
    async fn open(url: &str, subject: &Subject) -> Result<Connection, String> {
        let options = async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT);
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(url))
            .await
            .map_err(|_| "timed out connecting to NATS".to_string())?
            .map_err(|e| format!("cannot connect to NATS: {}", e.kind()))?;
        let inbox = client.new_inbox();
        let subscription = client.subscribe(format!("{inbox}.*")).await.map_err(|e| format!("subscribing to the acknowledgements: {e}"))?;
        let acks = AckBook::default();
        let reader = tokio::spawn(acks.clone().read(subscription, subject.to_string()));
        Ok(Connection { client, inbox, acks, batches: 0, reader })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A JetStream subject.
pub struct NatsSink {
    url: String,
    subject: Subject,
    connection: Option<Connection>,
}

impl NatsSink {
    /// Reads the URL and subject (connecting waits for the first batch).
    pub fn new(spec: &SinkSpec) -> Result<NatsSink, String> {
        let subject = spec.subject.clone().ok_or("a nats sink needs `subject`")?;
        Ok(NatsSink { url: spec.resolve_url()?, subject: Subject::from(subject), connection: None })
    }

    /// The connection, made (again) if there is none or its acknowledgement
    /// subscription ended.
    async fn connection(&mut self) -> Result<&mut Connection, String> {
        let connection = match self.connection.take().filter(|c| !c.acks.is_closed()) {
            Some(connection) => connection,
            None => Connection::open(&self.url, &self.subject).await?,
        };
        Ok(self.connection.insert(connection))
    }

    /// Publishes every message of the batch, in order, and answers the wait
    /// for their acknowledgements.
    async fn publish(&mut self, batch: &Batch) -> Result<PendingAcks, String> {
        let subject = self.subject.clone();
        let connection = self.connection().await?;
        connection.batches += 1;
        let reply = Subject::from(format!("{}.{}", connection.inbox, connection.batches));
        let pending = connection.acks.expect(connection.batches, batch.items.len(), tokio::time::Instant::now() + ACK_TIMEOUT);
        // Every payload in one buffer; each message takes its slice.
        let mut text = Vec::with_capacity(batch.items.len() * 256);
        let mut ends = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            item.write_json(&mut text);
            ends.push(text.len());
        }
        let text = Bytes::from(text);
        let mut start = 0;
        for (item, end) in batch.items.iter().zip(ends) {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, item.id().as_str());
            connection
                .client
                .publish_with_reply_and_headers(subject.clone(), reply.clone(), headers, text.slice(start..end))
                .await
                .map_err(|e| format!("publishing on {:?}: {e}", subject.as_str()))?;
            start = end;
        }
        Ok(pending)
    }
}

#[async_trait]
impl Sink for NatsSink {
    fn in_flight(&self) -> usize {
        IN_FLIGHT
    }

    async fn deliver(&mut self, batch: &Batch) -> Delivery {
        self.send(batch).await.await
    }

    async fn send(&mut self, batch: &Batch) -> Confirmation {
        match self.publish(batch).await {
            Ok(pending) => Box::pin(pending.outcome()),
            Err(error) => Box::pin(std::future::ready(Delivery::Retry { error, after: None })),
        }
    }
}
