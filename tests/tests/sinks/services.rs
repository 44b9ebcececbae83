//! The real Postgres and NATS JetStream the sink tests deliver to (URLs
//! from `SLUICE_TEST_PG_URL` and `SLUICE_TEST_NATS_URL`; `scripts/test.sh`
//! makes sure both answer). Each test makes its own table and stream, named
//! after the test and a random suffix, so parallel runs never share one.

use std::time::Duration;

use futures::StreamExt;

/// Postgres for the tests (trust auth on 127.0.0.1: no password in the URL).
pub fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// NATS with JetStream for the tests.
pub fn nats_url() -> String {
    std::env::var("SLUICE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A name no other run uses: `<base>_<random>`.
pub fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{base}_{}_{nanos:x}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Runs SQL statements on the test database.
pub fn pg_execute(sql: &str) {
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await.expect("Postgres answers");
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    })
}

/// The first column of every row of `sql`, as text.
pub fn pg_column(sql: &str) -> Vec<String> {
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await.expect("Postgres answers");
        tokio::spawn(connection);
        let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(|row| row.get::<_, String>(0)).collect()
    })
}

/// Makes a JetStream stream named `name` on subject `subject` (with a
/// duplicate window, so `Nats-Msg-Id` de-duplicates).
pub fn nats_stream(name: &str, subject: &str) {
    runtime().block_on(async {
        let client = async_nats::connect(nats_url()).await.expect("NATS answers");
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![subject.to_string()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("the stream is made");
    })
}

/// Every message in stream `name`: its `Nats-Msg-Id`.
pub fn nats_message_ids(name: &str) -> Vec<String> {
    runtime().block_on(async {
        let client = async_nats::connect(nats_url()).await.expect("NATS answers");
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(name).await.expect("the stream exists");
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config { ack_policy: async_nats::jetstream::consumer::AckPolicy::None, ..Default::default() })
            .await
            .expect("a consumer");
        let mut ids = Vec::new();
        // Bounded: batches of 1000 until a fetch comes back empty.
        for _ in 0..1000 {
            let mut batch = consumer.fetch().max_messages(1000).expires(Duration::from_millis(300)).messages().await.expect("fetch");
            let mut got = 0;
            while let Some(Ok(message)) = batch.next().await {
                got += 1;
                let id = message.headers.as_ref().and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID)).map(|v| v.as_str().to_string());
                // The header, or (if a server dropped it) the payload's id, marked so the test sees which.
                let id = id.unwrap_or_else(|| {
                    let payload: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
                    format!("no-header:{}", payload["id"].as_str().unwrap_or_default())
                });
                ids.push(id);
            }
            if got == 0 {
                break;
            }
        }
        ids
    })
}

/// Deletes stream `name` (end of a test).
pub fn nats_delete_stream(name: &str) {
    runtime().block_on(async {
        if let Ok(client) = async_nats::connect(nats_url()).await {
            let _ = async_nats::jetstream::new(client).delete_stream(name).await;
        }
    })
}
