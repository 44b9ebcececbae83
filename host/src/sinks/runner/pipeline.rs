//! Several batches in flight, for kinds that take them
//! ([`Sink::in_flight`](crate::sinks::Sink::in_flight) > 1): the runner
//! hands the next batches over while the first wait for their
//! acknowledgements, and records them strictly in order, each only once
//! settled, so the position never passes an unsettled batch. The first
//! batch that does not settle as delivered is retried on its own, as
//! without pipelining; the batches sent after it are dropped and read
//! again after it (at least once: the destination may have some of them
//! already, which its de-duplication by id absorbs, and a retried batch
//! can land after later ones).

use std::collections::VecDeque;

use tokio::sync::watch;

use super::{read_source, Runner, Stop};
use crate::internal_events::{emit, StoreFailed};
use crate::sinks::{Batch, Confirmation, Delivery, Progress};

/// A batch handed over and what settles it.
type InFlight = (Batch, Confirmation);

impl Runner {
    /// Delivers until stopped or the lease is lost, with up to the sink's
    /// `in_flight` batches out at once. Replays go one at a time.
    pub(super) async fn pipelined_loop(&mut self, stop: &mut watch::Receiver<bool>) -> Stop {
        let depth = self.sink.in_flight();
        let mut flight: VecDeque<InFlight> = VecDeque::with_capacity(depth);
        loop {
            if *stop.borrow() {
                return Stop::Stopped;
            }
            if !self.renew().await {
                return Stop::LostLease;
            }
            if flight.is_empty() {
                // Nothing out: the first batch as without pipelining (replays first; a partial batch waits `batch_ms`).
                let batch = match self.next_batch_or_pause(stop).await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => continue,
                    Err(why) => return why,
                };
                if matches!(batch.progress, Progress::Replay { .. }) {
                    let outcome = match self.deliver_with_retries(&batch, stop).await {
                        Ok(outcome) => outcome,
                        Err(why) => return why,
                    };
                    if let Some(why) = self.record_outcome(batch, outcome, stop).await {
                        return why;
                    }
                    continue;
                }
                let settles = self.sink.send(&batch).await;
                flight.push_back((batch, settles));
            }
            self.fill(&mut flight, depth).await;
            let Some((batch, settles)) = flight.pop_front() else { continue };
            let outcome = tokio::select! {
                outcome = settles => outcome,
                _ = stop.changed() => return Stop::Stopped,
            };
            let outcome = match outcome {
                Delivery::Delivered => outcome,
                failed => {
                    // The batches sent after this one are read and sent again once it is settled.
                    flight.clear();
                    match self.retry(&batch, failed, stop).await {
                        Ok(outcome) => outcome,
                        Err(why) => return why,
                    }
                }
            };
            if let Some(why) = self.record_outcome(batch, outcome, stop).await {
                return why;
            }
        }
    }

    /// Hands over the source's batches after the last one in flight until
    /// `depth` are out or the source has no more: a partial batch goes at
    /// once (the batches in flight were the wait).
    async fn fill(&mut self, flight: &mut VecDeque<InFlight>, depth: usize) {
        while flight.len() < depth {
            let Some(Progress::Source { to: from, .. }) = flight.back().map(|(batch, _)| &batch.progress) else { return };
            let from = from.clone();
            let (items, to) = match read_source(self.ctx.store.as_ref(), &self.ctx.pipeline, &self.ctx.spec, &from).await {
                Ok((items, to)) if !items.is_empty() => (items, to),
                Ok(_) => return,
                Err(e) => {
                    emit(StoreFailed { operation: "sink_read", pipeline: &self.ctx.pipeline, error: &e });
                    return;
                }
            };
            let batch = Batch::from_source(&self.ctx.pipeline, &self.ctx.spec.name, items, from, to);
            let settles = self.sink.send(&batch).await;
            flight.push_back((batch, settles));
        }
    }
}
