//! The cluster's record in a real PostgreSQL (started by the test: `initdb` + `pg_ctl`
//! on a 127.0.0.1 port): membership, shard leases and the fencing of writes. Every time
//! in these rules is the database's, so the tests wait on the wall clock for leases to
//! expire (a few hundred milliseconds).

mod pg;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pg::{Postgres, TempDir};
use switchboard::cluster::keeper::{Keeper, KeeperConfig, Ownership};
use switchboard::cluster::lease::{fence, Coordinator, Fenced, Lease};
use switchboard::cluster::placement::{owned_by, shard_of, SHARDS};
use switchboard::domain::agent::{Agent, AgentSpec};
use switchboard::domain::skill::RoutingPolicy;
use switchboard::ids::{AgentId, SkillId};
use switchboard::store::{Change, Durability, Fencing, Store, StoreConfig};
use switchboard::time::Timestamp;
use tokio::sync::watch;

fn all_shards() -> Vec<u16> {
    (0..SHARDS).collect()
}

#[test]
fn members_register_heartbeat_and_leave_and_a_silent_one_drops_out() {
    let dir = TempDir::new("cluster-members");
    let pg = Postgres::start(&dir.0);
    let mut a = Coordinator::connect(&pg.url(), "node-a").expect("a connects");
    let mut b = Coordinator::connect(&pg.url(), "node-b").expect("b connects");
    let ia = a.register("127.0.0.1:7001", "127.0.0.1:8001").expect("a registers");
    let ib = b.register("127.0.0.1:7002", "127.0.0.1:8002").expect("b registers");
    assert_eq!((ia, ib), (1, 1));
    let names = |c: &mut Coordinator, within| -> Vec<String> {
        c.members(within)
            .expect("members")
            .into_iter()
            .map(|m| m.name)
            .collect()
    };
    assert_eq!(names(&mut a, Duration::from_secs(5)), ["node-a", "node-b"]);
    let members = b.members(Duration::from_secs(5)).expect("members");
    assert_eq!(members[0].cluster_addr, "127.0.0.1:7001");
    assert_eq!(members[0].http_addr, "127.0.0.1:8001");

    // b goes silent; a keeps beating: past the window only a is live.
    thread::sleep(Duration::from_millis(1200));
    assert!(a.heartbeat(ia).expect("beat"));
    assert_eq!(names(&mut a, Duration::from_millis(1000)), ["node-a"]);
    // b beats again and is back.
    assert!(b.heartbeat(ib).expect("beat"));
    assert_eq!(names(&mut a, Duration::from_millis(1000)), ["node-a", "node-b"]);

    // A second process under b's name supersedes the first: the old one's heartbeat
    // fails, so it knows to stop.
    let mut b2 = Coordinator::connect(&pg.url(), "node-b").expect("b2 connects");
    let ib2 = b2.register("127.0.0.1:7003", "127.0.0.1:8003").expect("b2 registers");
    assert_eq!(ib2, 2);
    assert!(!b.heartbeat(ib).expect("beat"), "the superseded incarnation is told");
    assert!(b2.heartbeat(ib2).expect("beat"));

    // Leaving takes effect at once.
    b2.leave(ib2).expect("leave");
    assert_eq!(names(&mut a, Duration::from_secs(5)), ["node-a"]);
    assert!(!b2.heartbeat(ib2).expect("beat"), "a node that left does not beat");
}

/// A node's connections may be dropped on a tokio worker (its last handle going away
/// inside an async shutdown): the synchronous client must not block on a runtime there.
/// Before `PgClient`, this panicked ("Cannot start a runtime from within a runtime") and
/// a node stopping with SIGTERM exited with 101 in a rolling restart.
#[test]
fn a_postgres_connection_may_be_dropped_on_a_tokio_worker() {
    let dir = TempDir::new("cluster-drop");
    let pg = Postgres::start(&dir.0);
    let coordinator = Coordinator::connect(&pg.url(), "node-a").expect("connects");
    let store = Store::open(&StoreConfig {
        url: Some(pg.url()),
        ..StoreConfig::default()
    })
    .expect("store")
    .0;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        tokio::spawn(async move {
            drop(coordinator);
            drop(store);
        })
        .await
        .expect("dropped without a panic");
    });
}

#[test]
fn a_lease_has_one_owner_per_epoch_and_passes_on_only_after_expiry_or_release() {
    let dir = TempDir::new("cluster-leases");
    let pg = Postgres::start(&dir.0);
    let mut a = Coordinator::connect(&pg.url(), "node-a").expect("a connects");
    let mut b = Coordinator::connect(&pg.url(), "node-b").expect("b connects");
    let ttl = Duration::from_millis(2000);

    // a takes its rendezvous share of two members, then everything that is free.
    let mine = owned_by("node-a", &["node-a", "node-b"]);
    let granted = a.acquire(&mine, ttl).expect("acquire");
    assert_eq!(granted.iter().map(|l| l.shard).collect::<Vec<_>>(), mine);
    assert!(granted.iter().all(|l| l.epoch == 1), "first epoch");
    assert!(
        a.acquire(&mine, ttl).expect("again").is_empty(),
        "a held lease is not granted again"
    );
    let rest = a.acquire(&all_shards(), ttl).expect("the rest");
    assert_eq!(rest.len(), SHARDS as usize - mine.len());
    let held: Vec<Lease> = granted.iter().chain(&rest).copied().collect();

    // b can take nothing while a's leases are live, and a renews them all.
    assert!(b.acquire(&all_shards(), ttl).expect("b tries").is_empty());
    assert_eq!(a.renew(&held, ttl).expect("renew").len(), SHARDS as usize);

    // a releases one shard (a graceful handover): b takes it at once, under epoch 2.
    let handed = held[0];
    a.release(&[handed]).expect("release");
    let taken = b.acquire(&[handed.shard], ttl).expect("b takes the released shard");
    assert_eq!(
        taken,
        vec![Lease {
            shard: handed.shard,
            epoch: 2
        }]
    );
    assert!(
        !a.renew(&[handed], ttl).expect("renew").contains(&handed.shard),
        "a cannot renew what it released"
    );

    // a stops renewing (paused, partitioned) while b renews the shard it took: after
    // expiry b takes every other shard, each under a new epoch, and a's renewal finds
    // nothing left.
    let deadline = Instant::now() + ttl + Duration::from_millis(200);
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        assert_eq!(b.renew(&taken, ttl).expect("b renews"), [handed.shard]);
    }
    let others = b.acquire(&all_shards(), ttl).expect("b takes over");
    assert_eq!(others.len(), SHARDS as usize - 1, "all but the one b holds");
    assert!(others.iter().all(|l| l.epoch == 2), "{others:?}");
    assert!(a.renew(&held, ttl).expect("renew").is_empty(), "a has lost every lease");
    let rows = b.leases().expect("rows");
    assert!(rows
        .iter()
        .all(|r| r.owner.as_deref() == Some("node-b") && r.live && r.epoch == 2));
}

/// Creates a table standing for the store's rows, written under a fence.
fn rows_table(url: &str) -> postgres::Client {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("client");
    c.batch_execute("CREATE TABLE IF NOT EXISTS fenced_rows (id TEXT PRIMARY KEY, writer TEXT NOT NULL)")
        .expect("table");
    c
}

#[test]
fn a_write_under_a_lost_lease_is_refused_and_a_takeover_waits_for_a_write_in_progress() {
    let dir = TempDir::new("cluster-fence");
    let pg = Postgres::start(&dir.0);
    let url = pg.url();
    let mut a = Coordinator::connect(&url, "node-a").expect("a connects");
    let mut b = Coordinator::connect(&url, "node-b").expect("b connects");
    let ttl = Duration::from_millis(2000);
    let lease = a.acquire(&[7], ttl).expect("acquire")[0];
    let mut store_a = rows_table(&url);

    // A write under a live lease commits.
    let mut tx = store_a.transaction().expect("tx");
    fence(&mut tx, "node-a", &[lease])
        .expect("query")
        .expect("a holds shard 7");
    tx.execute("INSERT INTO fenced_rows VALUES ('r1', 'node-a')", &[])
        .expect("insert");
    tx.commit().expect("commit");

    // a's write transaction checks its lease just before expiry and is still writing
    // when the lease expires; b's takeover must wait until that write is done.
    let mut tx = store_a.transaction().expect("tx");
    thread::sleep(ttl - Duration::from_millis(800));
    fence(&mut tx, "node-a", &[lease]).expect("query").expect("still held");
    let (done_tx, done_rx) = mpsc::channel();
    let taker = thread::spawn(move || {
        // Starts once a's lease has expired.
        thread::sleep(Duration::from_millis(1200));
        let started = Instant::now();
        let taken = b.acquire(&[7], ttl).expect("b acquires");
        done_tx.send(Instant::now()).expect("send");
        (b, taken, started)
    });
    // (The takeover waits at most the session's lock timeout, 1 s: a's write ends
    // 400 ms after b starts. A writer stalled longer in its transaction is cut off by
    // the server: `idle_in_transaction_session_timeout`.)
    thread::sleep(Duration::from_millis(1600));
    tx.execute("INSERT INTO fenced_rows VALUES ('r2', 'node-a')", &[])
        .expect("insert");
    let committed_at = Instant::now();
    tx.commit().expect("the write that passed its fence commits");
    let (mut b, taken, started) = taker.join().expect("taker");
    let taken_at = done_rx.recv().expect("taken");
    assert!(
        taken_at >= committed_at,
        "the takeover waited for the write in progress ({:?} after it started)",
        taken_at - started
    );
    assert_eq!(taken, vec![Lease { shard: 7, epoch: 2 }]);

    // From now on a's writes are refused, whatever a believes; b's go through.
    let mut tx = store_a.transaction().expect("tx");
    let refused = fence(&mut tx, "node-a", &[lease]).expect("query");
    assert_eq!(
        refused,
        Err(Fenced {
            node: "node-a".into(),
            shards: vec![7]
        })
    );
    tx.rollback().expect("rollback");
    let mut store_b = rows_table(&url);
    let mut tx = store_b.transaction().expect("tx");
    fence(&mut tx, "node-b", &taken)
        .expect("query")
        .expect("b holds shard 7");
    tx.execute("INSERT INTO fenced_rows VALUES ('r3', 'node-b')", &[])
        .expect("insert");
    tx.commit().expect("commit");
    let rows: Vec<(String, String)> = store_b
        .query("SELECT id, writer FROM fenced_rows ORDER BY id", &[])
        .expect("rows")
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        [("r1", "node-a"), ("r2", "node-a"), ("r3", "node-b")].map(|(i, w)| (i.to_string(), w.to_string()))
    );
    // An old epoch stays refused even for the node that now owns the shard.
    let mut tx = store_b.transaction().expect("tx");
    assert!(fence(&mut tx, "node-b", &[lease]).expect("query").is_err());
    drop(b.leases());
}

/// Samples every keeper's published ownership until `until` holds or `within` passes,
/// checking at every sample that no shard is believed held by two nodes at once.
fn watch_keepers(
    keepers: &[(&str, &tokio::sync::watch::Receiver<Ownership>)],
    within: Duration,
    mut until: impl FnMut(&[(String, Vec<u16>)]) -> bool,
) -> Vec<(String, Vec<u16>)> {
    let deadline = Instant::now() + within;
    loop {
        let now = Instant::now();
        let served: Vec<(String, Vec<u16>)> = keepers
            .iter()
            .map(|(name, rx)| {
                let o = rx.borrow();
                let shards = (0..SHARDS).filter(|s| o.serves(*s, now).is_some()).collect();
                (name.to_string(), shards)
            })
            .collect();
        let mut seen = vec![None; SHARDS as usize];
        for (name, shards) in &served {
            for s in shards {
                if let Some(other) = seen[*s as usize].replace(name.clone()) {
                    panic!("shard {s} served by {other} and {name} at once");
                }
            }
        }
        if until(&served) {
            return served;
        }
        assert!(Instant::now() < deadline, "not reached within {within:?}: {served:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn covers_all(served: &[(String, Vec<u16>)], nodes: &[&str]) -> bool {
    let total: usize = served.iter().map(|(_, s)| s.len()).sum();
    // Every shard served, each member serving exactly its rendezvous share, and a node
    // that is not a member serving nothing.
    total == SHARDS as usize
        && served.iter().all(|(n, s)| {
            if nodes.contains(&n.as_str()) {
                *s == owned_by(n, nodes)
            } else {
                s.is_empty()
            }
        })
}

/// A lease keeper for `name`, its cluster port `port` (HTTP on `port + 1000`).
fn start_keeper(pg: &Postgres, name: &str, port: u16, ttl: Duration) -> Keeper {
    Keeper::start(KeeperConfig::new(
        &pg.url(),
        name,
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", port + 1000),
        ttl,
    ))
    .expect("keeper starts")
}

#[test]
fn keepers_share_the_shards_take_over_a_dead_node_after_expiry_and_a_leaving_one_at_once() {
    let dir = TempDir::new("cluster-keepers");
    let pg = Postgres::start(&dir.0);
    let ttl = Duration::from_millis(1500);
    let keeper = |name: &str, port: u16| start_keeper(&pg, name, port, ttl);
    let (a, b, c) = (keeper("node-a", 7001), keeper("node-b", 7002), keeper("node-c", 7003));
    let (ra, rb, rc) = (a.ownership(), b.ownership(), c.ownership());
    let all = [("node-a", &ra), ("node-b", &rb), ("node-c", &rc)];

    // Three live members: each serves exactly its rendezvous share.
    watch_keepers(&all, Duration::from_secs(10), |s| {
        covers_all(s, &["node-a", "node-b", "node-c"])
    });

    // c dies (no handover): its shards are unserved until its leases expire, then a
    // and b serve everything, split as rendezvous says for two members.
    let died = Instant::now();
    c.abandon().expect("c stops");
    watch_keepers(&all, Duration::from_secs(10), |s| covers_all(s, &["node-a", "node-b"]));
    let failover = died.elapsed();
    assert!(
        failover >= ttl / 2,
        "taken over only after the leases ran out ({failover:?})"
    );

    // b leaves cleanly: its leases are released as it stops (not left to expire), and a
    // takes them at its next round.
    b.shutdown().expect("b hands over");
    let mut look = Coordinator::connect(&pg.url(), "observer").expect("observer");
    let rows = look.leases().expect("rows");
    assert!(
        rows.iter().all(|r| r.owner.as_deref() != Some("node-b")),
        "b released every lease: {rows:?}"
    );
    watch_keepers(&all, Duration::from_secs(10), |s| covers_all(s, &["node-a"]));

    // A new member joins: it gets its share, a gives that up, nothing is served twice.
    let d = keeper("node-d", 7004);
    let rd = d.ownership();
    let all = [("node-a", &ra), ("node-d", &rd)];
    watch_keepers(&all, Duration::from_secs(10), |s| covers_all(s, &["node-a", "node-d"]));
    d.shutdown().expect("d");
    a.shutdown().expect("a");
}

#[test]
fn keepers_ride_out_a_restart_of_postgresql_and_never_serve_a_shard_twice() {
    let dir = TempDir::new("cluster-pg-restart");
    let pg = Postgres::start(&dir.0);
    let ttl = Duration::from_millis(1500);
    let keeper = |name: &str, port: u16| start_keeper(&pg, name, port, ttl);
    let (a, b) = (keeper("node-a", 7101), keeper("node-b", 7102));
    let (ra, rb) = (a.ownership(), b.ownership());
    let nodes = ["node-a", "node-b"];
    watch_keepers(&[("node-a", &ra), ("node-b", &rb)], Duration::from_secs(10), |s| {
        covers_all(s, &nodes)
    });

    // The database is down for longer than a lease: the keepers stop serving when their
    // belief runs out (nothing can be fenced meanwhile), then connect again and take
    // their shares back. Watched throughout for double service.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ra2, rb2) = (ra.clone(), rb.clone());
    let watcher = thread::spawn(move || {
        let mut saw_nothing_served = false;
        watch_keepers(&[("node-a", &ra2), ("node-b", &rb2)], Duration::from_secs(60), |s| {
            saw_nothing_served |= s.iter().all(|(_, shards)| shards.is_empty());
            stop_rx.try_recv().is_ok()
        });
        saw_nothing_served
    });
    pg.restart(ttl * 2);
    let back = Instant::now();
    watch_keepers(&[("node-a", &ra), ("node-b", &rb)], Duration::from_secs(20), |s| {
        covers_all(s, &nodes)
    });
    stop_tx.send(()).expect("stop the watcher");
    assert!(
        watcher.join().expect("no shard served twice"),
        "while the database was down past the leases, nothing was served"
    );
    eprintln!("serving again {:?} after the database came back", back.elapsed());
    a.shutdown().expect("a");
    b.shutdown().expect("b");
}

/// An agent, as a small change the store's writer fences (skills and consumer records
/// are not fenced: every node writes the same skills, and a consumer's record is
/// advisory).
fn agent_change(id: &str) -> Change {
    let spec = AgentSpec {
        group: None,
        skills: vec![SkillId::new("general").expect("skill id")],
        max_slots: 1,
        max_open: None,
    };
    let agent = Agent::new(
        AgentId::new(id).expect("agent id"),
        spec,
        Timestamp::from_millis(0),
        &RoutingPolicy::default(),
    );
    Change::Agent(Box::new(agent))
}

/// An agent id whose row falls in a shard `keep` accepts.
fn agent_id_where(keep: impl Fn(u16) -> bool) -> String {
    (0..)
        .map(|i| format!("agent-{i}"))
        .find(|id| keep(shard_of(id)))
        .expect("some id")
}

fn stored_agents(url: &str) -> Vec<String> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("client");
    c.query("SELECT id FROM agents ORDER BY id", &[])
        .expect("agents")
        .into_iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn the_store_writes_only_under_held_leases_and_refuses_a_lost_shard_s_changes() {
    // The `postgres` client is synchronous (it runs a runtime of its own): only the
    // waits for the writer run on this one.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = TempDir::new("cluster-store-fence");
    let pg = Postgres::start(&dir.0);
    let url = pg.url();
    let ttl = Duration::from_millis(1500);
    let config = StoreConfig {
        url: Some(url.clone()),
        ..StoreConfig::default()
    };
    let fenced_by = |node: &str, ownership: &watch::Receiver<Ownership>| {
        Store::open_fenced(
            &config,
            Fencing {
                node: node.to_string(),
                ownership: ownership.clone(),
            },
        )
        .expect("store opens")
    };
    let a = start_keeper(&pg, "node-a", 7201, ttl);
    let ra = a.ownership();
    watch_keepers(&[("node-a", &ra)], Duration::from_secs(10), |s| {
        covers_all(s, &["node-a"])
    });
    let store_a = fenced_by("node-a", &ra);
    rt.block_on(store_a.committed(store_a.write(agent_change("s1"))))
        .expect("a holds every shard");

    // a stops renewing (a paused or cut-off node would too); b takes every shard once
    // a's leases have expired.
    a.abandon().expect("a stops");
    let b = start_keeper(&pg, "node-b", 7202, ttl);
    let rb = b.ownership();
    watch_keepers(&[("node-a", &ra), ("node-b", &rb)], Duration::from_secs(10), |s| {
        covers_all(s, &["node-b"])
    });

    // a's belief has run out: its writes are refused before any transaction.
    let t = store_a.write(agent_change("s2"));
    let refused = rt.block_on(store_a.committed(t));
    assert_eq!(
        refused,
        Err(Fenced {
            node: "node-a".into(),
            shards: vec![t.shard]
        })
    );

    // A node that still believes in its old leases (paused between its check and its
    // write): the database refuses the stale epochs inside the transaction.
    let believes = Ownership {
        leases: ra.borrow().leases.clone(),
        valid_until: Some(Instant::now() + Duration::from_secs(3600)),
        members: Vec::new(),
        owners: Default::default(),
    };
    assert_eq!(believes.leases.len(), usize::from(SHARDS), "a's old leases");
    let (_keep, stale) = watch::channel(believes);
    let store_stale = fenced_by("node-a", &stale);
    let t = store_stale.write(agent_change("s3"));
    assert!(
        rt.block_on(store_stale.committed(t)).is_err(),
        "stale epochs are refused"
    );
    assert_eq!(store_stale.metrics.rows_fenced.get(), 1);

    // One group with a shard held and one lost: the first commits, the second is
    // refused (b believes shard `lost` is still its own under an old epoch).
    let lost = shard_of("lost-shard");
    let mut mixed = rb.borrow().clone();
    mixed.leases.get_mut(&lost).expect("b holds it").epoch -= 1;
    let (_keep, mixed) = watch::channel(mixed);
    let store_b = fenced_by("node-b", &mixed);
    let (held_id, lost_id) = (
        agent_id_where(|s| s != lost && s != shard_of("s1")),
        agent_id_where(|s| s == lost),
    );
    let (t_held, t_lost) = (
        store_b.write(agent_change(&held_id)),
        store_b.write(agent_change(&lost_id)),
    );
    assert_eq!(rt.block_on(store_b.committed(t_held)), Ok(()));
    assert!(
        rt.block_on(store_b.committed(t_lost)).is_err(),
        "the lost shard's row is refused"
    );

    // Only what was written under a held lease is in the store, each row with its
    // shard: a node taking a shard reads that shard's rows alone.
    assert_eq!(stored_agents(&url), vec![held_id.clone(), "s1".to_string()]);
    let mut backend = switchboard::store::open(&url, Durability::Commit).expect("open");
    let read = backend.load_shards(&[shard_of(&held_id)]).expect("load a shard");
    assert_eq!(
        read.agents.iter().map(|s| s.id.to_string()).collect::<Vec<_>>(),
        vec![held_id]
    );
    b.shutdown().expect("b");
}

#[test]
fn a_version_1_postgres_store_is_migrated_and_a_shard_s_rows_are_read_alone() {
    let dir = TempDir::new("cluster-migrate");
    let pg = Postgres::start(&dir.0);
    let url = pg.url();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("client");
    // The tables as version 1 wrote them (no shard columns), with rows.
    c.batch_execute(
        "CREATE TABLE switchboard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); \
         INSERT INTO switchboard_meta VALUES ('schema_version', '1'); \
         CREATE TABLE skills (id TEXT PRIMARY KEY, record TEXT NOT NULL); \
         CREATE TABLE agents (id TEXT PRIMARY KEY, status TEXT NOT NULL, record TEXT NOT NULL); \
         CREATE TABLE conversations (id TEXT PRIMARY KEY, skill TEXT NOT NULL, state TEXT NOT NULL, \
         agent_id TEXT, consumer_id TEXT NOT NULL, record TEXT NOT NULL); \
         CREATE TABLE consumers (id TEXT PRIMARY KEY, record TEXT NOT NULL);",
    )
    .expect("v1 schema");
    let ids: Vec<String> = (0..40).map(|i| format!("agent-{i}")).collect();
    for id in &ids {
        let Change::Agent(agent) = agent_change(id) else {
            unreachable!()
        };
        c.execute(
            "INSERT INTO agents (id, status, record) VALUES ($1, 'offline', $2)",
            &[id, &serde_json::to_string(&*agent).expect("json")],
        )
        .expect("v1 row");
    }

    let mut store = switchboard::store::open(&url, Durability::Commit).expect("migrated at open");
    assert_eq!(store.load().expect("load").agents.len(), ids.len(), "every row kept");
    let version: String = c
        .query_one("SELECT value FROM switchboard_meta WHERE key = 'schema_version'", &[])
        .expect("version")
        .get(0);
    assert_eq!(version, switchboard::store::SCHEMA_VERSION);
    for row in c.query("SELECT id, shard FROM agents", &[]).expect("rows") {
        let (id, shard): (String, Option<i32>) = (row.get(0), row.get(1));
        assert_eq!(shard, Some(i32::from(shard_of(&id))), "{id}");
    }
    let wanted = [shard_of("agent-3"), shard_of("agent-17")];
    let mut read: Vec<String> = store
        .load_shards(&wanted)
        .expect("load shards")
        .agents
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    read.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .filter(|id| wanted.contains(&shard_of(id)))
        .cloned()
        .collect();
    expected.sort();
    assert!(expected.len() >= 2 && expected.len() < ids.len(), "{expected:?}");
    assert_eq!(read, expected);
}
