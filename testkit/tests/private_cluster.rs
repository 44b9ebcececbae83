//! The test cluster itself: it forms with 3 masters that each have a replica
//! in sync, serves keys through a cluster client, and a killed master's
//! replica takes its slot over.

use sluice_testkit::PrivateCluster;

#[test]
fn forms_serves_and_fails_over() {
    let mut cluster = PrivateCluster::start();
    assert_eq!(cluster.seeds().len(), 6);
    assert!(cluster.store_url().starts_with("redis+cluster://127.0.0.1:"));
    let client = redis::cluster::ClusterClient::new(cluster.node_urls()).expect("cluster client");
    let mut conn = client.get_connection().expect("cluster connection");
    // Keys in different slots land on different masters, and read back.
    for i in 0..20 {
        let _: () = redis::cmd("SET").arg(format!("k{i}")).arg(i).query(&mut conn).expect("SET");
    }
    // Replication is asynchronous: only writes the replicas have are sure
    // to survive the failover.
    cluster.wait_replicas_caught_up();
    let slot = cluster.slot_of("{pipe}:queue");
    assert_eq!(slot, cluster.slot_of("{pipe}:other"), "a hash tag pins keys to one slot");
    let before = cluster.master_port_of_slot(slot);
    let failover = cluster.kill_master_of("{pipe}:queue");
    assert_eq!((failover.slot, failover.killed), (slot, before));
    assert_ne!(failover.promoted, failover.killed);
    assert_eq!(cluster.master_port_of_slot(slot), failover.promoted);
    assert_eq!(cluster.node_urls().len(), 5);
    // The values written before survive on the replicas that took over.
    let mut conn = client.get_connection().expect("cluster connection after the failover");
    for i in 0..20 {
        let v: i64 = redis::cmd("GET").arg(format!("k{i}")).query(&mut conn).expect("GET after failover");
        assert_eq!(v, i);
    }
    // The killed node comes back as the replica of the one that took over.
    cluster.restart_killed(&failover);
    assert_eq!(cluster.node_urls().len(), 6);
    assert_eq!(cluster.master_port_of_slot(slot), failover.promoted);
    assert!(!cluster.master_ports().contains(&failover.killed));
}
