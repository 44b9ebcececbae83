//! Helpers specific to the host's own integration tests (`mod common;`): a
//! `sluice::store::redis::RedisStore` under a fresh key prefix (on one Redis
//! or on the test binary's Redis Cluster), and the `conformance!` macro that
//! runs a generic store test on every backend.
//! Finding a Redis, key prefixes and cleanup come from `sluice-testkit`,
//! shared with the black-box tests in the top-level `tests/` member.

#![allow(dead_code)]

use sluice_testkit::{delete_keys_with_prefix, redis_url, unique_prefix, PrivateCluster};

/// A Redis store under a fresh key prefix: (store, url, prefix).
pub async fn redis_store(name: &str) -> (sluice::store::redis::RedisStore, String, String) {
    let url = redis_url().await;
    let prefix = unique_prefix(name);
    let store = sluice::store::redis::RedisStore::connect(&url, &prefix).await.expect("connect to Redis");
    (store, url, prefix)
}

/// A Redis Cluster store under a fresh key prefix, on the cluster this test
/// binary shares (3 masters, 3 replicas, started on first use): (store,
/// prefix).
pub async fn cluster_store(name: &str) -> (sluice::store::redis::RedisStore, String) {
    let prefix = unique_prefix(name);
    let store = sluice::store::redis::RedisStore::connect(&cluster_url().await, &prefix).await.expect("connect to the Redis Cluster");
    assert!(store.is_cluster());
    (store, prefix)
}

/// The store URL of the cluster this test binary shares (started on first
/// use).
pub async fn cluster_url() -> String {
    tokio::task::spawn_blocking(|| PrivateCluster::shared().store_url()).await.unwrap()
}

/// Deletes what a test left under its prefix on the shared cluster.
pub async fn cleanup_cluster(prefix: String) {
    tokio::task::spawn_blocking(move || PrivateCluster::shared().delete_keys_with_prefix(&prefix)).await.unwrap();
}

/// Deletes what a test left under its prefix.
pub async fn cleanup_redis(url: String, prefix: String) {
    tokio::task::spawn_blocking(move || delete_keys_with_prefix(&url, &prefix)).await.unwrap();
}

/// For each generic `async fn name<S: Store>(s: &S)` listed, a
/// `redis_backend::name` test (real Redis, own prefix, cleaned up), a
/// `cluster_backend::name` test (the shared Redis Cluster, own prefix,
/// cleaned up) and an `embedded_backend::name` test (own temp directory).
/// Needs `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, url, prefix) = crate::common::redis_store(stringify!($name)).await;
                    super::$name(&store).await;
                    drop(store);
                    crate::common::cleanup_redis(url, prefix).await;
                }
            )*
        }
        mod cluster_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, prefix) = crate::common::cluster_store(stringify!($name)).await;
                    super::$name(&store).await;
                    drop(store);
                    crate::common::cleanup_cluster(prefix).await;
                }
            )*
        }
        mod embedded_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = sluice::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
                    super::$name(&store).await;
                }
            )*
        }
    };
}

/// Limits bounding the depth only.
pub fn depth(max_depth: u64) -> sluice::domain::QueueLimits {
    sluice::domain::QueueLimits { max_depth, max_bytes: u64::MAX }
}

/// The counters, checking that queued bytes are there exactly when queued
/// events are (each event takes bytes), then with `queue_bytes` zeroed so
/// they compare with counters built without it.
pub async fn counts<S: sluice::store::Store>(s: &S, pipeline: &str) -> sluice::domain::Counters {
    let c = s.counters(pipeline).await.unwrap();
    assert_eq!(c.queue_bytes == 0, c.queue_depth == 0, "queued bytes {} with depth {}", c.queue_bytes, c.queue_depth);
    sluice::domain::Counters { queue_bytes: 0, ..c }
}
