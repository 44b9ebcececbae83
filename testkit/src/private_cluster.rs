//! [`PrivateCluster`]: a Redis Cluster of a test's own (3 masters, 3
//! replicas), the one way tests get a cluster.
//!
//! Owns: starting six `redis-server`s in cluster mode on free ports, joining
//! them with `redis-cli --cluster create … --cluster-replicas 1`, waiting
//! until every node says `cluster_state:ok` and every master has its replica
//! in sync, killing the master of a key's slot (and saying which replica took
//! over), and stopping everything when dropped (each server has the same
//! watchdog as [`crate::PrivateRedis`], so a crashed test leaves nothing
//! behind). May use: the standard library, `tempfile`, `redis` (sync), the
//! crate root and `private_redis`'s watchdog.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::private_redis::watchdog;

/// Masters, and one replica each.
const MASTERS: usize = 3;
/// How long a node may go unanswered before the others fail it over: short,
/// so a failover test waits ~2 s, not Redis's default 15 s.
const NODE_TIMEOUT_MS: u64 = 1000;
/// How long the cluster may take to form (or to fail over).
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster of 3 masters and 3 replicas on 127.0.0.1, memory only
/// (`--save "" --appendonly no`), node timeout 1 s. Dropping it stops every
/// node.
pub struct PrivateCluster {
    nodes: Vec<Node>,
    /// Where the nodes keep `nodes-<port>.conf`.
    _dir: TempDir,
}

struct Node {
    port: u16,
    /// The cluster bus port (`--cluster-port`).
    bus_port: u16,
    server: Option<Child>,
    watchdog: Option<Child>,
}

/// What [`PrivateCluster::kill_master_of`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failover {
    /// The slot of the key asked about.
    pub slot: u16,
    /// The port of the master killed with SIGKILL.
    pub killed: u16,
    /// The port of its replica, which serves the slot once it took over.
    pub promoted: u16,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    master: bool,
    failed: bool,
    /// The master's id, for a replica.
    replica_of: Option<String>,
    slots: Vec<(u16, u16)>,
}

impl PrivateCluster {
    /// Starts a fresh cluster and waits until it serves every slot.
    pub fn start() -> PrivateCluster {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a directory for a private Redis Cluster: {e}"));
        let ports = free_ports(MASTERS * 4);
        let mut cluster = PrivateCluster { nodes: Vec::new(), _dir: dir };
        for pair in ports.chunks(2) {
            let node = cluster.launch(pair[0], pair[1]);
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            wait_until(FORM_TIMEOUT, &format!("cluster node on port {} answers PING", node.port), || {
                crate::answers_ping(&node_url(node.port))
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `redis-cli --cluster create` ({e}); install redis-tools (redis-cli)"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy();
        cluster
    }

    /// One cluster for the whole test binary, for tests that only need a
    /// cluster nobody else kills nodes of (each test uses its own key
    /// prefix). Never dropped: the watchdogs stop its nodes once the test
    /// process is gone.
    pub fn shared() -> &'static PrivateCluster {
        static CLUSTER: OnceLock<PrivateCluster> = OnceLock::new();
        CLUSTER.get_or_init(PrivateCluster::start)
    }

    /// `host:port` of every node (the seeds a cluster client starts from).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect()
    }

    /// The store URL for Sluice: `redis+cluster://h:p,h:p,…`.
    pub fn store_url(&self) -> String {
        format!("redis+cluster://{}", self.seeds().join(","))
    }

    /// The `redis://` URL of every node still running.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.server.is_some()).map(|n| node_url(n.port)).collect()
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`, asked of a running node).
    pub fn slot_of(&self, key: &str) -> u16 {
        self.query_any(|c| redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query::<u16>(c))
    }

    /// The port of the master serving `slot` now.
    pub fn master_port_of_slot(&self, slot: u16) -> u16 {
        let nodes = self.topology();
        nodes
            .iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes:?}"))
    }

    /// The ports of the masters serving slots now.
    pub fn master_ports(&self) -> Vec<u16> {
        self.topology().into_iter().filter(|n| n.master && !n.failed && !n.slots.is_empty()).map(|n| n.port).collect()
    }

    /// The port of a replica of the master serving `slot` now.
    pub fn replica_port_of_slot(&self, slot: u16) -> u16 {
        let nodes = self.topology();
        let master = nodes
            .iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes:?}"));
        nodes
            .iter()
            .find(|n| n.replica_of.as_deref() == Some(master.id.as_str()) && !n.failed)
            .unwrap_or_else(|| panic!("the master of slot {slot} has no replica: {nodes:?}"))
            .port
    }

    /// Blocks the node on `port` for `millis` (`DEBUG SLEEP`): on a replica,
    /// it stops taking its master's writes meanwhile, so `WAIT` on the
    /// master cannot count it. Returns when the node wakes.
    pub fn debug_sleep(&self, port: u16, millis: u64) {
        let slept = crate::connect(&node_url(port)).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_millis(millis + 5000)))?;
            redis::cmd("DEBUG").arg("SLEEP").arg(millis as f64 / 1000.0).query::<String>(&mut c)
        });
        assert!(slept.as_deref() == Ok("OK"), "DEBUG SLEEP on cluster node {port}: {slept:?}");
    }

    /// `CONFIG SET name value` on the node on `port` (e.g. to give one
    /// master another persistence or eviction setting).
    pub fn config_set(&self, port: u16, name: &str, value: &str) {
        let set = crate::connect(&node_url(port)).and_then(|mut c| redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query::<String>(&mut c));
        assert!(set.as_deref() == Ok("OK"), "CONFIG SET {name} {value} on cluster node {port}: {set:?}");
    }

    /// Waits until every master's replicas have acknowledged everything the
    /// master has written (`INFO replication`: each replica's `offset` has
    /// reached `master_repl_offset`), so a failover after it loses nothing.
    /// Replication is asynchronous: without this, writes made just before a
    /// master dies may be gone on the replica that takes over.
    pub fn wait_replicas_caught_up(&self) {
        for port in self.master_ports() {
            wait_until(FORM_TIMEOUT, &format!("the replicas of the master on port {port} catch up"), || {
                let info = crate::connect(&node_url(port)).and_then(|mut c| redis::cmd("INFO").arg("replication").query::<String>(&mut c));
                info.ok().is_some_and(|info| replicas_caught_up(&info))
            });
        }
    }

    /// SIGKILLs the master of `key`'s slot, then waits until its replica has
    /// taken the slot over and every running node says `cluster_state:ok`.
    pub fn kill_master_of(&mut self, key: &str) -> Failover {
        let slot = self.slot_of(key);
        let nodes = self.topology();
        let master = nodes
            .iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes:?}"))
            .clone();
        let replica = nodes
            .iter()
            .find(|n| n.replica_of.as_deref() == Some(master.id.as_str()) && !n.failed)
            .unwrap_or_else(|| panic!("master on port {} has no replica to take over: {nodes:?}", master.port))
            .port;
        let node = self.nodes.iter_mut().find(|n| n.port == master.port).expect("the master is one of ours");
        node.stop();
        wait_until(FORM_TIMEOUT, &format!("replica on port {replica} takes over slot {slot}"), || {
            self.master_port_of_slot_now(slot) == Some(replica)
        });
        self.wait_state_ok();
        Failover { slot, killed: master.port, promoted: replica }
    }

    /// Starts the node a [`PrivateCluster::kill_master_of`] killed again on
    /// its ports, with its cluster config: it rejoins as a replica of the
    /// node that took over (and syncs from it, memory only as it is). Waits
    /// until every master has a replica in sync again.
    pub fn restart_killed(&mut self, failover: &Failover) {
        let node = self.nodes.iter().find(|n| n.port == failover.killed).expect("the killed node is one of ours");
        assert!(node.server.is_none(), "node {} is still running", failover.killed);
        let restarted = self.launch(node.port, node.bus_port);
        let slot = self.nodes.iter_mut().find(|n| n.port == failover.killed).expect("found above");
        *slot = restarted;
        wait_until(FORM_TIMEOUT, &format!("restarted node {} answers PING", failover.killed), || {
            crate::answers_ping(&node_url(failover.killed))
        });
        self.wait_healthy();
    }

    /// Deletes every key starting with `prefix` on every master (see
    /// [`delete_cluster_keys_with_prefix`]).
    pub fn delete_keys_with_prefix(&self, prefix: &str) {
        delete_cluster_keys_with_prefix(&self.node_urls(), prefix);
    }

    fn master_port_of_slot_now(&self, slot: u16) -> Option<u16> {
        let mut conn = crate::connect(&self.node_urls().into_iter().next()?).ok()?;
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
        parse_nodes(&text).into_iter().find(|n| n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))).map(|n| n.port)
    }

    /// Waits until every node says `cluster_state:ok` and knows all six,
    /// and every master has a replica in sync (so `WAIT 1` can succeed).
    fn wait_healthy(&self) {
        self.wait_state_ok();
        wait_until(FORM_TIMEOUT, "every node knows all six", || {
            self.node_urls().iter().all(|url| info_field(url, &["CLUSTER", "INFO"], "cluster_known_nodes").as_deref() == Some("6"))
        });
        wait_until(FORM_TIMEOUT, "every master has its replica in sync", || {
            let nodes = self.topology();
            let masters: Vec<&NodeLine> = nodes.iter().filter(|n| n.master).collect();
            masters.len() == MASTERS
                && masters.iter().all(|m| {
                    let url = node_url(m.port);
                    crate::connect(&url)
                        .and_then(|mut c| redis::cmd("INFO").arg("replication").query::<String>(&mut c))
                        .is_ok_and(|text| text.lines().any(|l| l.starts_with("slave0:") && l.contains("state=online")))
                })
        });
    }

    fn wait_state_ok(&self) {
        wait_until(FORM_TIMEOUT, "every node says cluster_state:ok", || {
            self.node_urls().iter().all(|url| info_field(url, &["CLUSTER", "INFO"], "cluster_state").as_deref() == Some("ok"))
        });
    }

    /// `CLUSTER NODES` as one running node sees it.
    fn topology(&self) -> Vec<NodeLine> {
        let text: String = self.query_any(|c| redis::cmd("CLUSTER").arg("NODES").query(c));
        parse_nodes(&text)
    }

    fn query_any<T>(&self, f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>) -> T {
        let mut last = None;
        for url in self.node_urls() {
            match crate::connect(&url).and_then(|mut c| f(&mut c)) {
                Ok(value) => return value,
                Err(e) => last = Some(e),
            }
        }
        panic!("no node of the private Redis Cluster answered: {last:?}")
    }

    fn launch(&self, port: u16, bus_port: u16) -> Node {
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--cluster-port", &bus_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf"), "--dir"])
            .arg(self._dir.path())
            .args(["--save", "", "--appendonly", "no", "--enable-debug-command", "local"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("no Redis for the cluster tests: cannot start `redis-server` ({e}). Install it (`apt-get install redis-server`)"));
        let watchdog = watchdog(server.id());
        Node { port, bus_port, server: Some(server), watchdog: Some(watchdog) }
    }
}

impl Node {
    fn stop(&mut self) {
        for child in [self.server.take(), self.watchdog.take()].into_iter().flatten() {
            let mut child = child;
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

/// Deletes every key starting with `prefix` on every master of the cluster
/// `seeds` (`redis://` URLs of some of its nodes) belong to. Best effort,
/// one key per `UNLINK`: keys of different slots cannot share a command on
/// a cluster.
pub(crate) fn delete_cluster_keys_with_prefix(seeds: &[String], prefix: &str) {
    let Some(text) = seeds.iter().find_map(|url| {
        crate::connect(url).and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c)).ok()
    }) else {
        return;
    };
    for node in parse_nodes(&text).iter().filter(|n| n.master && !n.failed) {
        let Ok(mut conn) = crate::connect(&node_url(node.port)) else { continue };
        let pattern = format!("{prefix}*");
        let mut cursor: u64 = 0;
        for _ in 0..100_000 {
            let page: redis::RedisResult<(u64, Vec<Vec<u8>>)> =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query(&mut conn);
            let Ok((next, keys)) = page else { break };
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("UNLINK").arg(key).ignore();
            }
            if !keys.is_empty() && pipe.query::<()>(&mut conn).is_err() {
                break;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

/// Whether `INFO replication` of a master shows at least one replica and
/// every replica at the master's offset.
fn replicas_caught_up(info: &str) -> bool {
    let field = |line: &str, name: &str| line.split(',').find_map(|kv| kv.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
    let Some(master) = info.lines().find_map(|l| l.strip_prefix("master_repl_offset:")).and_then(|v| v.trim().parse::<u64>().ok()) else {
        return false;
    };
    let replicas: Vec<Option<u64>> =
        info.lines().filter(|l| l.starts_with("slave") && l.contains(":ip=")).map(|l| field(l.split_once(':').map_or("", |(_, r)| r), "offset=")).collect();
    !replicas.is_empty() && replicas.iter().all(|offset| offset.is_some_and(|o| o >= master))
}

fn node_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// `n` distinct free ports (held open together so none repeats).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("no free port for a private Redis Cluster: {e}")))
        .collect();
    listeners.iter().map(|l| l.local_addr().expect("a bound listener has an address").port()).collect()
}

/// One `name:value` field of a `CLUSTER INFO`-style reply.
fn info_field(url: &str, command: &[&str], name: &str) -> Option<String> {
    let mut conn = crate::connect(url).ok()?;
    let mut cmd = redis::cmd(command[0]);
    for arg in &command[1..] {
        cmd.arg(*arg);
    }
    let text: String = cmd.query(&mut conn).ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "private Redis Cluster: timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <master|-> <ping>
/// <pong> <epoch> <link> <slot ranges…>`.
fn parse_nodes(text: &str) -> Vec<NodeLine> {
    let mut nodes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            continue;
        }
        let port = fields[1].split('@').next().and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
        let Some(port) = port else { continue };
        let flags: Vec<&str> = fields[2].split(',').collect();
        let slots = fields[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|v| (v, v)),
            })
            .collect();
        nodes.push(NodeLine {
            id: fields[0].to_string(),
            port,
            master: flags.contains(&"master"),
            failed: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
            replica_of: (fields[3] != "-").then(|| fields[3].to_string()),
            slots,
        });
    }
    nodes.sort_by_key(|n| n.port);
    nodes
}

#[cfg(test)]
mod tests {
    use super::{parse_nodes, replicas_caught_up};

    #[test]
    fn replicas_catch_up_only_at_the_masters_offset() {
        let info = |replica: u64| format!("# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=7001,state=online,offset={replica},lag=0\r\nmaster_repl_offset:500\r\n");
        assert!(replicas_caught_up(&info(500)));
        assert!(!replicas_caught_up(&info(499)));
        assert!(!replicas_caught_up("role:master\r\nconnected_slaves:0\r\nmaster_repl_offset:500\r\n"), "no replica is not caught up");
    }

    #[test]
    fn parses_cluster_nodes() {
        let text = "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7004@17004 slave a1 0 1 1 connected\n\
                    c3 127.0.0.1:7002@17002 master,fail - 0 0 2 disconnected 5461 5462-10922\n";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert_eq!((nodes[0].port, nodes[0].master, nodes[0].failed), (7001, true, false));
        assert_eq!(nodes[0].slots, vec![(0, 5460)]);
        assert_eq!((nodes[1].port, nodes[1].failed, nodes[1].slots.clone()), (7002, true, vec![(5461, 5461), (5462, 10922)]));
        assert_eq!(nodes[2].replica_of.as_deref(), Some("a1"));
    }
}
