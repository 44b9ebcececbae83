//! The `nats` sink: one JetStream message per event on the spec's subject,
//! with `Nats-Msg-Id` = the event id (a window result: a digest of the
//! record), so the server's duplicate window drops a retried one. A batch
//! is published in one go and delivered once every publish is
//! acknowledged; a missing acknowledgement (timeout, no stream for the
//! subject, a lost connection) retries the batch. At least once.

use std::time::Duration;

use async_nats::jetstream::{self, context::Publish};
use async_trait::async_trait;
use bytes::Bytes;

use super::spec::SinkSpec;
use super::{Batch, Delivery, Sink};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A JetStream subject.
pub struct NatsSink {
    url: String,
    subject: String,
    context: Option<jetstream::Context>,
}

impl NatsSink {
    /// Reads the URL and subject (connecting waits for the first batch).
    pub fn new(spec: &SinkSpec) -> Result<NatsSink, String> {
        let subject = spec.subject.clone().ok_or("a nats sink needs `subject`")?;
        Ok(NatsSink { url: spec.resolve_url()?, subject, context: None })
    }

    async fn context(&mut self) -> Result<jetstream::Context, String> {
        if let Some(context) = &self.context {
            return Ok(context.clone());
        }
        let options = async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT);
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(self.url.as_str()))
            .await
            .map_err(|_| "timed out connecting to NATS".to_string())?
            .map_err(|e| format!("cannot connect to NATS: {}", e.kind()))?;
        let context = jetstream::new(client);
        self.context = Some(context.clone());
        Ok(context)
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn deliver(&mut self, batch: &Batch) -> Delivery {
        let context = match self.context().await {
            Ok(context) => context,
            Err(error) => return Delivery::Retry { error, after: None },
        };
        let mut acks = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let mut payload = Vec::with_capacity(256);
            item.write_json(&mut payload);
            let publish = Publish::build().payload(Bytes::from(payload)).message_id(item.id());
            match context.send_publish(self.subject.clone(), publish).await {
                Ok(ack) => acks.push(ack),
                Err(e) => return Delivery::Retry { error: format!("publishing on {:?}: {e}", self.subject), after: None },
            }
        }
        for ack in acks {
            if let Err(e) = ack.await {
                return Delivery::Retry { error: format!("no acknowledgement on {:?}: {e}", self.subject), after: None };
            }
        }
        Delivery::Delivered
    }
}
