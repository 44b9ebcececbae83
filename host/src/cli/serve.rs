//! `sluice serve`: configuration (flags > environment > config file >
//! defaults), the store, the runtime, the engine and the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::api::{self, auth::Tokens, ApiLimits, AppState};
use crate::engine::{Engine, EngineConfig};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::redis::{RedisOptions, RedisStore, CLUSTER_SCHEME, CLUSTER_TLS_SCHEME};
use crate::store::{embedded::EmbeddedStore, Store};

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The store: a directory for the embedded store, a redis:// URL, or a
    /// Redis Cluster: redis+cluster://host:port[,host:port…] (seed nodes).
    #[arg(long, env = "SLUICE_STORE")]
    pub store: Option<String>,
    /// Where compiled plugins are cached (default: the embedded store's
    /// directory, or ./sluice-data with Redis).
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The admin token (everything).
    #[arg(long, env = "SLUICE_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Ingest tokens (only POST events), comma-separated.
    #[arg(long = "ingest-token", env = "SLUICE_INGEST_TOKENS", value_delimiter = ',')]
    pub ingest_tokens: Option<Vec<String>>,
    /// Largest request body, bytes.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Largest plugin upload, bytes (default 64 MiB: a Python or JavaScript
    /// stage's component carries its runtime and weighs 12-20 MB).
    #[arg(long, env = "SLUICE_MAX_PLUGIN_BYTES")]
    pub max_plugin_bytes: Option<u64>,
    /// Request body bytes this process reads and handles at once, over all
    /// requests (default 256 MiB); beyond it requests are answered 503.
    #[arg(long, env = "SLUICE_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: Option<u64>,
    /// Live feeds (Server-Sent Events) this process serves at once (default 64).
    #[arg(long, env = "SLUICE_MAX_LIVE_FEEDS")]
    pub max_live_feeds: Option<usize>,
    /// Worker tasks per pipeline (default: the number of cores). 0 serves
    /// the API only: this process runs no workers, retries or closer (an
    /// ingest/admin node in front of worker nodes on the same Redis).
    #[arg(long, env = "SLUICE_WORKERS")]
    pub workers: Option<usize>,
    /// Take over entries a silent worker has held this long, ms.
    #[arg(long, env = "SLUICE_RECLAIM_IDLE_MS")]
    pub reclaim_idle_ms: Option<u64>,
    /// How often windows are closed and spike rules checked, ms (default 200).
    #[arg(long, env = "SLUICE_WINDOW_TICK_MS")]
    pub window_tick_ms: Option<u64>,
    /// Key prefix on Redis (several deployments can share one server).
    #[arg(long, env = "SLUICE_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Replicas each enqueue and each completion must reach on Redis
    /// (`WAIT`, up to 1 s) before Sluice answers 202 or acknowledges
    /// (default 0: as soon as the master has it). Fewer in time is a store
    /// error: 503 on ingest, a retried completion.
    #[arg(long, env = "SLUICE_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,
    /// A TOML file with any of the settings above (snake_case keys).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    store: Option<String>,
    data_dir: Option<PathBuf>,
    admin_token: Option<String>,
    ingest_tokens: Option<Vec<String>>,
    max_body_bytes: Option<u64>,
    max_plugin_bytes: Option<u64>,
    max_inflight_bytes: Option<u64>,
    max_live_feeds: Option<usize>,
    workers: Option<usize>,
    reclaim_idle_ms: Option<u64>,
    window_tick_ms: Option<u64>,
    redis_prefix: Option<String>,
    redis_wait_replicas: Option<u32>,
}

/// Settings after merging every source.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store: String,
    pub data_dir: PathBuf,
    pub tokens: Tokens,
    pub api: ApiLimits,
    pub engine: EngineConfig,
    pub redis_prefix: String,
    pub redis: RedisOptions,
}

fn is_redis(store: &str) -> bool {
    ["redis://", "rediss://", CLUSTER_SCHEME, CLUSTER_TLS_SCHEME].iter().any(|scheme| store.starts_with(scheme))
}

impl ServeArgs {
    pub fn settings(self) -> anyhow::Result<Settings> {
        let file: FileConfig = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))?
            }
            None => FileConfig::default(),
        };
        let store = self.store.or(file.store).unwrap_or_else(|| "./sluice-data".into());
        let data_dir = self.data_dir.or(file.data_dir).unwrap_or_else(|| if is_redis(&store) { "./sluice-data".into() } else { PathBuf::from(&store) });
        let mut engine = EngineConfig::default();
        if let Some(workers) = self.workers.or(file.workers) {
            if workers > 1024 {
                bail!("--workers must be at most 1024");
            }
            engine.workers = workers;
        }
        if let Some(ms) = self.reclaim_idle_ms.or(file.reclaim_idle_ms) {
            engine.reclaim_idle_ms = ms.max(100);
        }
        if let Some(ms) = self.window_tick_ms.or(file.window_tick_ms) {
            if !(10..=60_000).contains(&ms) {
                bail!("--window-tick-ms must be 10 to 60000");
            }
            engine.window_tick = std::time::Duration::from_millis(ms);
        }
        let defaults = ApiLimits::default();
        let api = ApiLimits {
            max_body_bytes: self.max_body_bytes.or(file.max_body_bytes).unwrap_or(defaults.max_body_bytes),
            max_plugin_bytes: self.max_plugin_bytes.or(file.max_plugin_bytes).unwrap_or(defaults.max_plugin_bytes),
            max_inflight_bytes: self.max_inflight_bytes.or(file.max_inflight_bytes).unwrap_or(defaults.max_inflight_bytes),
            max_live_feeds: self.max_live_feeds.or(file.max_live_feeds).unwrap_or(defaults.max_live_feeds),
        };
        if api.max_inflight_bytes < api.max_body_bytes.max(api.max_plugin_bytes) {
            bail!(
                "--max-inflight-bytes ({}) must be at least --max-body-bytes ({}) and --max-plugin-bytes ({}): a body of the largest size could never be read",
                api.max_inflight_bytes,
                api.max_body_bytes,
                api.max_plugin_bytes
            );
        }
        if api.max_live_feeds == 0 {
            bail!("--max-live-feeds must be at least 1");
        }
        let nonempty = |v: Vec<String>| v.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect::<Vec<_>>();
        Ok(Settings {
            listen: self.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:7878".parse().expect("valid default")),
            store,
            data_dir,
            tokens: Tokens {
                admin: nonempty(self.admin_token.or(file.admin_token).into_iter().collect()),
                ingest: nonempty(self.ingest_tokens.or(file.ingest_tokens).unwrap_or_default()),
            },
            api,
            engine,
            redis_prefix: self.redis_prefix.or(file.redis_prefix).unwrap_or_else(|| "sluice".into()),
            redis: RedisOptions { wait_replicas: self.redis_wait_replicas.or(file.redis_wait_replicas).unwrap_or(0) },
        })
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    if is_redis(&settings.store) {
        let mut wait = Duration::from_millis(200);
        for attempt in 1.. {
            match RedisStore::open(&settings.store, &settings.redis_prefix, settings.redis).await {
                Ok(store) => {
                    warn_if_too_few_replicas(&store, settings).await;
                    return Ok(Arc::new(store));
                }
                Err(e) if attempt < 15 => {
                    crate::internal_events::emit(crate::internal_events::StoreNotReady { store: &settings.store, error: &e.to_string() });
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => bail!("cannot reach Redis at {}: {e}", settings.store),
            }
        }
        unreachable!()
    } else {
        let dir = PathBuf::from(&settings.store);
        let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir)).await?;
        Ok(Arc::new(store.with_context(|| format!("cannot open the embedded store in {}", settings.store))?))
    }
}

/// Warns when `--redis-wait-replicas` asks for more replicas than some
/// master has (every step on it would be refused); not fatal: replicas may
/// be on their way.
async fn warn_if_too_few_replicas(store: &RedisStore, settings: &Settings) {
    let wanted = settings.redis.wait_replicas;
    if wanted == 0 {
        return;
    }
    if let Ok(fewest) = store.fewest_replicas().await {
        if fewest < wanted {
            crate::internal_events::emit(crate::internal_events::TooFewReplicas { store: &settings.store, wanted, fewest });
        }
    }
}

/// Refuses a store that may evict keys (as Sidekiq does: an evicted queue,
/// depth counter or catalog loses accepted events silently) and warns about
/// one that keeps nothing on disk.
async fn check_store(store: &dyn Store, name: &str) -> anyhow::Result<()> {
    let health = store.health().await.with_context(|| format!("reading the settings of the store {name}"))?;
    if health.evicting() {
        bail!(
            "refusing to start: Redis at {name} has maxmemory-policy `{}`, which lets Redis evict Sluice's queues, counters, \
             DLQs, windows or catalog under memory pressure and lose accepted events silently. Set maxmemory-policy to \
             noeviction (`redis-cli CONFIG SET maxmemory-policy noeviction`, and `maxmemory-policy noeviction` in redis.conf \
             so it survives a restart), then start again",
            health.eviction_policy.as_deref().unwrap_or_default()
        );
    }
    if !health.durable {
        crate::internal_events::emit(crate::internal_events::StoreNotDurable { store: name, persistence: &health.persistence });
    }
    Ok(())
}

pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    let settings = args.settings()?;
    if settings.tokens.open() && !settings.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} with no tokens configured: set --admin-token/--ingest-token (or SLUICE_ADMIN_TOKEN/SLUICE_INGEST_TOKENS), or listen on a loopback address",
            settings.listen
        );
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    rt.block_on(serve(settings))?;
    Ok(0)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    check_store(store.as_ref(), &settings.store).await?;
    let runtime = Arc::new(Runtime::new(RuntimeConfig { cache_dir: Some(settings.data_dir.join("compiled")), ..Default::default() })?);
    // The recorder first: the pipelines the engine installs at start
    // register their counters with it (installed later, they were lost).
    let prometheus = api::monitoring::prometheus_handle();
    let engine = Engine::start(store, runtime, settings.engine.clone()).await.context("starting the engine")?;
    let state = Arc::new(AppState::new(engine.clone(), prometheus, settings.api));
    let app = api::router(state, settings.tokens.clone());
    let listener = tokio::net::TcpListener::bind(settings.listen).await.with_context(|| format!("cannot listen on {}", settings.listen))?;
    let auth = if settings.tokens.open() { "open (loopback only)" } else { "bearer tokens" };
    println!("sluice listening on http://{} (store: {}, auth: {auth})", listener.local_addr()?, settings.store);
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    engine.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
