//! The `postgres` sink, exactly once: each batch's rows and the sink's
//! position are committed in one Postgres transaction. The position lives
//! in the table `sluice_sink_positions` (made if missing), keyed by
//! pipeline, sink and the epoch of the sink's record in the store (a
//! random token: two Sluice installations writing to one database, or a
//! pipeline deleted and made again, never share a row); a batch locks that row (`FOR UPDATE`) and goes in
//! only if the position is where the batch starts, so neither a crash nor
//! a second runner can insert a batch twice.
//!
//! Rows: events go through `json_populate_recordset(NULL::<table>, …)`, so
//! each column takes its table type (text, bigint, jsonb, …) from the
//! mapped event field. Window results go into the columns `window`,
//! `group` (jsonb), `start`, `end` (bigint ms) and `result` (jsonb),
//! upserted on (`window`, `group`, `start`): the table needs a unique
//! constraint on those three.

mod rows;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::spec::SinkSpec;
use super::{Batch, Delivery, KeptPosition, Progress, Sink};
use crate::domain::SinkPosition;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where every Postgres sink keeps its position (one row per pipeline and sink).
const POSITIONS: &str = "sluice_sink_positions";

/// A Postgres table (the URL may hold a password: it is never put in an
/// error or a log line).
pub struct PostgresSink {
    url: String,
    pipeline: String,
    sink: String,
    /// The statement that writes a batch's rows (`$1`: the rows as a JSON array).
    insert: String,
    /// Column → event field; `None` for window results.
    columns: Option<BTreeMap<String, String>>,
    client: Option<Client>,
    /// The record's epoch the position row must carry.
    epoch: String,
}

/// The columns an event sink writes when the spec maps none.
fn default_columns() -> BTreeMap<String, String> {
    ["id", "type", "source", "timestamp", "data"].iter().map(|c| (c.to_string(), c.to_string())).collect()
}

/// `"a"."b"` for `a.b`: names are checked as `[A-Za-z_][A-Za-z0-9_]*`.
fn quote_table(table: &str) -> String {
    table.split('.').map(|part| format!("\"{part}\"")).collect::<Vec<_>>().join(".")
}

impl PostgresSink {
    /// Reads the URL and builds the statements (connecting waits for first use).
    pub fn new(pipeline: &str, spec: &SinkSpec) -> Result<PostgresSink, String> {
        let table = quote_table(spec.table.as_deref().ok_or("a postgres sink needs `table`")?);
        let (insert, columns) = if spec.from == "output" {
            let columns = spec.columns.clone().unwrap_or_else(default_columns);
            let list = columns.keys().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
            (format!("INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{table}, $1::text::json)"), Some(columns))
        } else {
            (
                format!(
                    "INSERT INTO {table} (\"window\", \"group\", \"start\", \"end\", \"result\") \
                     SELECT x->>'window', (x->'group')::jsonb, (x->>'start')::bigint, (x->>'end')::bigint, (x->'result')::jsonb \
                     FROM json_array_elements($1::text::json) AS x \
                     ON CONFLICT (\"window\", \"group\", \"start\") DO UPDATE SET \"end\" = EXCLUDED.\"end\", \"result\" = EXCLUDED.\"result\""
                ),
                None,
            )
        };
        Ok(PostgresSink {
            url: spec.resolve_url()?,
            pipeline: pipeline.to_string(),
            sink: spec.name.clone(),
            insert,
            columns,
            client: None,
            epoch: String::new(),
        })
    }

    /// The connection, made (with the positions table) if there is none.
    async fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(&self.url, NoTls))
                .await
                .map_err(|_| "timed out connecting to Postgres".to_string())?
                .map_err(|e| format!("cannot connect to Postgres: {}", describe(&e)))?;
            tokio::spawn(async move {
                // Ends when the client is dropped or the server goes away.
                let _ = connection.await;
            });
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {POSITIONS} (pipeline text NOT NULL, sink text NOT NULL, epoch text NOT NULL, \
                     cursor text NOT NULL, seq bigint NOT NULL, replay text NOT NULL DEFAULT '', PRIMARY KEY (pipeline, sink, epoch))"
                ))
                .await
                .map_err(|e| format!("cannot make table {POSITIONS}: {}", describe(&e)))?;
            self.client = Some(client);
        }
        self.client.as_mut().ok_or_else(|| "no connection".to_string())
    }

    /// One batch in one transaction: lock the position row, check it, write
    /// the rows, move the position, commit.
    async fn write(&mut self, batch: &Batch, rows: String) -> Result<Delivery, tokio_postgres::Error> {
        let (pipeline, sink, epoch, insert) = (self.pipeline.clone(), self.sink.clone(), self.epoch.clone(), self.insert.clone());
        let client = match self.client().await {
            Ok(client) => client,
            Err(error) => return Ok(Delivery::Retry { error, after: None }),
        };
        let txn = client.transaction().await?;
        let row = txn
            .query_opt(
                &format!("SELECT cursor, seq, replay FROM {POSITIONS} WHERE pipeline = $1 AND sink = $2 AND epoch = $3 FOR UPDATE"),
                &[&pipeline, &sink, &epoch],
            )
            .await?;
        let Some(row) = row else { return Ok(Delivery::Moved) };
        let (cursor, seq, replay): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
        match &batch.progress {
            Progress::Source { from, to } => {
                if cursor != from.cursor || seq != from.seq as i64 {
                    return Ok(Delivery::Moved);
                }
                txn.execute(&insert, &[&rows]).await?;
                txn.execute(
                    &format!("UPDATE {POSITIONS} SET cursor = $3, seq = $4 WHERE pipeline = $1 AND sink = $2 AND epoch = $5"),
                    &[&pipeline, &sink, &to.cursor, &(to.seq as i64), &epoch],
                )
                .await?;
            }
            Progress::Replay { ids } => {
                let last = ids.last().cloned().unwrap_or_default();
                if !super::runner::id_after(&last, &replay) {
                    return Ok(Delivery::Delivered); // committed before a crash
                }
                txn.execute(&insert, &[&rows]).await?;
                txn.execute(&format!("UPDATE {POSITIONS} SET replay = $3 WHERE pipeline = $1 AND sink = $2 AND epoch = $4"), &[&pipeline, &sink, &last, &epoch])
                    .await?;
            }
        }
        txn.commit().await?;
        Ok(Delivery::Delivered)
    }
}

/// A Postgres error's message without the connection string.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Whether Postgres refused the batch for what it holds (bad data, a
/// missing table or column, a constraint): retrying cannot help.
fn refused(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else { return false };
    let class = &code.code()[..2];
    matches!(class, "22" | "23" | "42") && *code != SqlState::T_R_SERIALIZATION_FAILURE
}

#[async_trait]
impl Sink for PostgresSink {
    async fn kept_position(&mut self, epoch: &str, start: &KeptPosition) -> Result<Option<KeptPosition>, String> {
        self.epoch = epoch.to_string();
        let (pipeline, sink) = (self.pipeline.clone(), self.sink.clone());
        let client = self.client().await?;
        let seq = start.position.seq as i64;
        // A new epoch (a new sink record) starts where the store's record does.
        client
            .execute(
                &format!(
                    "INSERT INTO {POSITIONS} (pipeline, sink, epoch, cursor, seq, replay) VALUES ($1, $2, $3, $4, $5, '') ON CONFLICT DO NOTHING"
                ),
                &[&pipeline, &sink, &epoch, &start.position.cursor, &seq],
            )
            .await
            .map_err(|e| format!("cannot write the position to {POSITIONS}: {}", describe(&e)))?;
        let row = client
            .query_one(&format!("SELECT cursor, seq, replay FROM {POSITIONS} WHERE pipeline = $1 AND sink = $2 AND epoch = $3"), &[&pipeline, &sink, &epoch])
            .await
            .map_err(|e| format!("cannot read the position from {POSITIONS}: {}", describe(&e)))?;
        let seq: i64 = row.get(1);
        Ok(Some(KeptPosition { position: SinkPosition { cursor: row.get(0), seq: seq.max(0) as u64 }, replay: row.get(2) }))
    }

    async fn skipped(&mut self, batch: &Batch) -> Result<(), String> {
        let (pipeline, sink, epoch) = (self.pipeline.clone(), self.sink.clone(), self.epoch.clone());
        let client = self.client().await?;
        let moved = match &batch.progress {
            Progress::Source { from, to } => {
                client
                    .execute(
                        &format!(
                            "UPDATE {POSITIONS} SET cursor = $5, seq = $6 WHERE pipeline = $1 AND sink = $2 AND epoch = $7 AND cursor = $3 AND seq = $4"
                        ),
                        &[&pipeline, &sink, &from.cursor, &(from.seq as i64), &to.cursor, &(to.seq as i64), &epoch],
                    )
                    .await
            }
            Progress::Replay { ids } => {
                let last = ids.last().cloned().unwrap_or_default();
                client
                    .execute(&format!("UPDATE {POSITIONS} SET replay = $3 WHERE pipeline = $1 AND sink = $2 AND epoch = $4"), &[&pipeline, &sink, &last, &epoch])
                    .await
            }
        };
        moved.map(|_| ()).map_err(|e| format!("cannot move the position past a dead-lettered batch: {}", describe(&e)))
    }

    async fn deliver(&mut self, batch: &Batch) -> Delivery {
        let rows = match &self.columns {
            Some(columns) => rows::event_rows(&batch.items, columns),
            None => rows::window_rows(&batch.items),
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => return Delivery::Refused { error },
        };
        match self.write(batch, rows).await {
            Ok(outcome) => outcome,
            Err(e) if refused(&e) => Delivery::Refused { error: format!("Postgres refused the batch: {}", describe(&e)) },
            Err(e) => {
                if self.client.as_ref().is_some_and(|c| c.is_closed()) {
                    self.client = None;
                }
                Delivery::Retry { error: format!("Postgres: {}", describe(&e)), after: None }
            }
        }
    }
}
