//! The `nats` sink: one JetStream message per event on the spec's subject,
//! with `Nats-Msg-Id` = the event id (a window result: a digest of the
//! record), so the server's duplicate window drops a retried one. A batch
//! is published in one go, each message with its own reply subject under
//! one inbox the sink subscribes to for the batch (`<inbox>.<index>`), and
//! delivered once JetStream acknowledged every message (one subscription
//! per batch instead of a request, a timer and a channel per message). A
//! missing or failed acknowledgement (timeout, no stream for the subject, a
//! lost connection) retries the batch. At least once.

use std::time::Duration;

use async_nats::{Client, HeaderMap, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::spec::SinkSpec;
use super::{Batch, Delivery, Sink};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a batch's acknowledgements may take in all.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A JetStream subject.
pub struct NatsSink {
    url: String,
    subject: Subject,
    client: Option<Client>,
}

impl NatsSink {
    /// Reads the URL and subject (connecting waits for the first batch).
    pub fn new(spec: &SinkSpec) -> Result<NatsSink, String> {
        let subject = spec.subject.clone().ok_or("a nats sink needs `subject`")?;
        Ok(NatsSink { url: spec.resolve_url()?, subject: Subject::from(subject), client: None })
    }

    async fn client(&mut self) -> Result<Client, String> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let options = async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT);
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(self.url.as_str()))
            .await
            .map_err(|_| "timed out connecting to NATS".to_string())?
            .map_err(|e| format!("cannot connect to NATS: {}", e.kind()))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Publishes the batch and waits for every acknowledgement.
    async fn publish(&self, client: &Client, batch: &Batch) -> Result<(), String> {
        let inbox = client.new_inbox();
        let mut acks = client.subscribe(format!("{inbox}.*")).await.map_err(|e| format!("subscribing to the acknowledgements: {e}"))?;
        for (i, item) in batch.items.iter().enumerate() {
            let mut payload = Vec::with_capacity(256);
            item.write_json(&mut payload);
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, item.id().as_str());
            client
                .publish_with_reply_and_headers(self.subject.clone(), format!("{inbox}.{i}"), headers, Bytes::from(payload))
                .await
                .map_err(|e| format!("publishing on {:?}: {e}", self.subject.as_str()))?;
        }
        let mut acked = vec![false; batch.items.len()];
        let mut left = batch.items.len();
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        while left > 0 {
            let ack = match tokio::time::timeout_at(deadline, acks.next()).await {
                Ok(Some(ack)) => ack,
                Ok(None) => return Err("the connection closed before every acknowledgement came".into()),
                Err(_) => return Err(format!("{left} of {} messages not acknowledged within {ACK_TIMEOUT:?}", batch.items.len())),
            };
            if let Some(status) = ack.status {
                return Err(format!("JetStream answered status {status} on {:?} (no stream for the subject?)", self.subject.as_str()));
            }
            if memchr::memmem::find(&ack.payload, b"\"error\"").is_some() {
                return Err(format!("JetStream refused a message: {}", String::from_utf8_lossy(&ack.payload)));
            }
            let index = ack.subject.as_str().rsplit('.').next().and_then(|i| i.parse::<usize>().ok());
            if let Some(seen) = index.and_then(|i| acked.get_mut(i)) {
                if !*seen {
                    *seen = true;
                    left -= 1;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn deliver(&mut self, batch: &Batch) -> Delivery {
        let client = match self.client().await {
            Ok(client) => client,
            Err(error) => return Delivery::Retry { error, after: None },
        };
        match self.publish(&client, batch).await {
            Ok(()) => Delivery::Delivered,
            Err(error) => Delivery::Retry { error, after: None },
        }
    }
}
