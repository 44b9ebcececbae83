//! Connections to one Redis or to a Redis Cluster, behind one type, so every
//! capability file and every Lua script runs unchanged on both.
//!
//! Owns: parsing the store URL (`redis://…` or
//! `redis+cluster://host:port[,host:port…]`), making connections
//! ([`Target::connect`]), [`Conn`] (a `redis::aio::ConnectionLike` over a
//! multiplexed or a cluster connection), waiting for replicas after a
//! script (`WAIT`, in the same pipeline as the script so it reaches the
//! node that ran it), commands sent to every master (health) and commands
//! sent to the master of one key's slot (`SCAN`). May use: the `redis`
//! crate, `crc16`, `super::StoreError`.
//!
//! On a cluster the `redis` crate's client keeps the slot map, follows
//! `MOVED`/`ASK` and reconnects; `EVALSHA` is routed by its first key, so
//! each script runs on the master of its pipeline's (or the catalog's)
//! slot. Blocking reads get connections of their own ([`Target::connect`]
//! with `blocking`), as on a single Redis.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use futures::FutureExt as _;

use super::StoreError;

/// The scheme of a cluster store URL.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The same over TLS.
pub const CLUSTER_TLS_SCHEME: &str = "rediss+cluster://";

/// What the store connects to: one Redis, or a cluster (two clients: one
/// with a response timeout for ordinary commands, one without for blocking
/// reads, which the store bounds itself).
pub(super) enum Target {
    Single(Client),
    Cluster { client: ClusterClient, blocking: ClusterClient },
}

/// How many replicas a script's writes must reach before it counts as
/// done, and how long `WAIT` may take for it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Wait {
    pub replicas: u32,
    pub timeout_ms: u64,
}

/// A connection to one Redis or to a cluster. With a [`Wait`] set, every
/// script call (`EVALSHA`/`EVAL`) is sent as a pipeline `[script, WAIT n t]`
/// to the node the script is routed to, and answers an error (kind
/// `TryAgain`, so the store reports it as unavailable) when fewer than `n`
/// replicas acknowledged within `t` ms: the script's writes are on the
/// master, but not known to be on enough replicas.
#[derive(Clone)]
pub struct Conn {
    link: Link,
    wait: Option<Wait>,
}

#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Target {
    /// Parses a store URL: `redis://…`/`rediss://…`, or
    /// `redis+cluster://[user:pass@]host:port[,host:port…]` (seeds; the
    /// client learns the rest of the cluster from them).
    pub(super) fn open(url: &str, connect_timeout: Duration, response_timeout: Duration) -> Result<Target, StoreError> {
        let bad = |e: RedisError| StoreError::Internal(format!("bad Redis URL {url:?}: {e}"));
        let Some(seeds) = cluster_seeds(url)? else {
            return Client::open(url).map(Target::Single).map_err(bad);
        };
        let builder = |timeout: Option<Duration>| {
            let mut b = ClusterClientBuilder::new(seeds.clone())
                .connection_timeout(connect_timeout)
                // A request to a node that went away is retried a few times
                // (the slot map refreshed between), not for minutes.
                .retries(3)
                .min_retry_wait(50)
                .max_retry_wait(500);
            if let Some(t) = timeout {
                b = b.response_timeout(t);
            }
            b.build().map_err(bad)
        };
        Ok(Target::Cluster { client: builder(Some(response_timeout))?, blocking: builder(None)? })
    }

    /// Whether this is a cluster.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// A new connection: for ordinary commands (with `config`'s response
    /// timeout), or for blocking reads (`blocking`: none; the caller bounds
    /// the wait).
    pub(super) async fn connect(&self, config: &AsyncConnectionConfig, blocking: bool) -> RedisResult<Conn> {
        let link = match self {
            Target::Single(client) => Link::Single(client.get_multiplexed_async_connection_with_config(config).await?),
            Target::Cluster { client, blocking: blocking_client } => {
                let client = if blocking { blocking_client } else { client };
                Link::Cluster(client.get_async_connection().await?)
            }
        };
        Ok(Conn { link, wait: None })
    }
}

/// The seeds of a cluster URL as `redis://` URLs, `None` for any other URL.
fn cluster_seeds(url: &str) -> Result<Option<Vec<String>>, StoreError> {
    let (rest, scheme) = if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
        (rest, "redis://")
    } else if let Some(rest) = url.strip_prefix(CLUSTER_TLS_SCHEME) {
        (rest, "rediss://")
    } else {
        return Ok(None);
    };
    let rest = rest.trim_end_matches('/');
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let seeds: Vec<String> = hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(|h| format!("{scheme}{credentials}{h}")).collect();
    if seeds.is_empty() || hosts.split(',').any(|h| h.trim().is_empty() || h.contains('/')) {
        return Err(StoreError::Internal(format!(
            "bad Redis Cluster URL {url:?}: expected {CLUSTER_SCHEME}host:port[,host:port…] (one or more seed nodes, no path)"
        )));
    }
    Ok(Some(seeds))
}

impl Conn {
    /// The same connection, waiting for `wait` after each script call.
    pub(super) fn waiting(mut self, wait: Option<Wait>) -> Conn {
        self.wait = wait.filter(|w| w.replicas > 0);
        self
    }

    /// Runs `cmd` on every master (on one Redis: on it), answering each
    /// node's address and reply.
    pub async fn on_every_master(&mut self, cmd: &Cmd) -> RedisResult<Vec<(String, Value)>> {
        match &mut self.link {
            Link::Single(c) => Ok(vec![("redis".to_string(), c.req_packed_command(cmd).await?)]),
            Link::Cluster(c) => {
                let reply = c.route_command(cmd, RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None))).await?;
                match reply {
                    Value::Map(pairs) => pairs
                        .into_iter()
                        .map(|(node, value)| Ok((::redis::from_owned_redis_value::<String>(node)?, value.extract_error()?)))
                        .collect(),
                    other => Err(RedisError::from((ErrorKind::TypeError, "a reply per master expected", format!("{other:?}")))),
                }
            }
        }
    }

    /// Runs a keyless `cmd` (e.g. `SCAN`) on the master that serves `key`'s
    /// slot (on one Redis: on it).
    pub async fn on_master_of(&mut self, key: &str, cmd: &Cmd) -> RedisResult<Value> {
        match &mut self.link {
            Link::Single(c) => c.req_packed_command(cmd).await,
            Link::Cluster(c) => {
                let route = Route::new(key_slot(key.as_bytes()), SlotAddr::Master);
                c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))).await
            }
        }
    }

    async fn script_then_wait(&mut self, cmd: &Cmd, wait: Wait) -> RedisResult<Value> {
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd.clone()).cmd("WAIT").arg(wait.replicas).arg(wait.timeout_ms);
        let mut replies = self.link.req_packed_commands(&pipe, 0, 2).await?.into_iter();
        let (Some(reply), Some(acked)) = (replies.next(), replies.next()) else {
            return Err(RedisError::from((ErrorKind::TypeError, "two replies expected for [script, WAIT]")));
        };
        let reply = reply.extract_error()?;
        let acked: i64 = ::redis::from_owned_redis_value(acked.extract_error()?)?;
        if acked < i64::from(wait.replicas) {
            return Err(RedisError::from((
                ErrorKind::TryAgain,
                "not replicated",
                format!(
                    "the write is on the master but only {acked} of {} replicas acknowledged it within {} ms (WAIT)",
                    wait.replicas, wait.timeout_ms
                ),
            )));
        }
        Ok(reply)
    }
}

/// A connection to a store URL (one Redis or a cluster), for tools beside
/// the store: the load bench's output reader and its cleanup.
pub async fn connect_url(url: &str) -> Result<Conn, StoreError> {
    let timeout = Duration::from_secs(2);
    let target = Target::open(url, timeout, timeout)?;
    target
        .connect(&AsyncConnectionConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout), false)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to {url}: {e}")))
}

fn is_script_call(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(::redis::Arg::Simple(name)) => name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL"),
        _ => false,
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self.wait {
            Some(wait) if is_script_call(cmd) => self.script_then_wait(cmd, wait).boxed(),
            _ => self.link.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, cmd: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        self.link.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, cmd: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(c) => c.req_packed_commands(cmd, offset, count),
            Link::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the first
/// `{…}` with something inside) or of the whole key, modulo 16384.
pub(super) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| key[open + 1..].iter().position(|b| *b == b'}').filter(|len| *len > 0).map(|len| &key[open + 1..open + 1 + len]));
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % 16384
}

#[cfg(test)]
mod tests {
    use super::{cluster_seeds, key_slot};

    #[test]
    fn slots_follow_hash_tags() {
        // Values from Redis's CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{foo}bar"), 12182);
        assert_eq!(key_slot(b"sluice:{foo}:queue"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(key_slot(b"{}foo"), key_slot(b"{}foo"));
        assert_ne!(key_slot(b"{}foo"), key_slot(b"foo"));
    }

    #[test]
    fn cluster_urls() {
        assert_eq!(cluster_seeds("redis://127.0.0.1:6379").unwrap(), None);
        assert_eq!(
            cluster_seeds("redis+cluster://10.0.0.1:7000,10.0.0.2:7001").unwrap(),
            Some(vec!["redis://10.0.0.1:7000".to_string(), "redis://10.0.0.2:7001".to_string()])
        );
        assert_eq!(cluster_seeds("rediss+cluster://u:p@h:1,h:2/").unwrap(), Some(vec!["rediss://u:p@h:1".to_string(), "rediss://u:p@h:2".to_string()]));
        for bad in ["redis+cluster://", "redis+cluster://a:1,,b:2", "redis+cluster://a:1/0"] {
            assert!(cluster_seeds(bad).is_err(), "{bad}");
        }
    }
}
