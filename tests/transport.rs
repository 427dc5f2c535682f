//! The cluster transport between real processes: each node is a child process (this
//! test binary, run again as `child_node` with the node's settings in its environment)
//! holding a ractor_cluster node server and a gateway on a 127.0.0.1 port. ractor's
//! registries are global to a process, so nodes must be processes to be tested as nodes.
//!
//! The faults are the ones ractor_cluster alone does not survive: a peer paused with
//! `SIGSTOP` (its sockets stay open, it never answers), a peer killed and restarted, a
//! peer with the wrong cookie or without TLS.

mod netns;
mod pg;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netns::{is_root, Netns};
use pg::{free_port, Postgres, TempDir};

const PING: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(1500);

/// The child side: runs a node until its stdin closes (the parent died or dropped it),
/// printing `STATUS <json>` whenever a peer's state changes.
#[test]
fn child_node() {
    let Ok(node) = std::env::var("SB_NODE") else {
        return; // run as a test of its own: nothing to do
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run_child(node));
}

async fn run_child(node: String) {
    use switchboard::cluster::keeper::{Keeper, KeeperConfig};
    use switchboard::cluster::lease::Member;
    use switchboard::cluster::transport::{members_of, TlsFiles, Transport, TransportConfig};

    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let listen: std::net::SocketAddr = env("SB_LISTEN").parse().expect("SB_LISTEN");
    let mut config = TransportConfig::new(&node, listen, &env("SB_COOKIE"));
    config.ping_interval = PING;
    config.ping_timeout = PING_TIMEOUT;
    config.connect_timeout = PING_TIMEOUT;
    config.max_backoff = Duration::from_secs(1);
    if let Ok(dir) = std::env::var("SB_TLS_DIR") {
        let dir = PathBuf::from(dir);
        config.tls = Some(TlsFiles {
            cert: dir.join(format!("{node}.crt")),
            key: dir.join(format!("{node}.key")),
            ca: dir.join("ca.crt"),
        });
    }
    // Members from the membership table (a keeper of its own), or a fixed list.
    let mut keeper = None;
    let members = match std::env::var("SB_PG_URL") {
        Ok(url) => {
            // The keeper's `postgres` client is synchronous: started off the runtime.
            let config = KeeperConfig::new(&url, &node, &listen.to_string(), "127.0.0.1:1", Duration::from_secs(10));
            let k = tokio::task::spawn_blocking(move || Keeper::start(config))
                .await
                .expect("keeper thread")
                .expect("keeper");
            let m = members_of(k.ownership());
            keeper = Some(k);
            m
        }
        Err(_) => {
            let list = env("SB_PEERS")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|p| {
                    let (name, addr) = p.split_once('=').expect("name=addr");
                    Member {
                        name: name.into(),
                        cluster_addr: addr.into(),
                        http_addr: String::new(),
                        incarnation: 0,
                    }
                })
                .collect();
            tokio::sync::watch::channel(list).1
        }
    };
    // With SB_ENGINE, a routing engine too, its messages for the other node's actors
    // carried by the transport.
    let engine = match std::env::var("SB_ENGINE") {
        Ok(role) => {
            let toml = "[[skills]]\nid = \"general\"\n";
            let cfg = switchboard::config::Config::from_toml(toml, &BTreeMap::new()).expect("config");
            let router = switchboard::Router::start(cfg.engine, switchboard::time::Clock::system())
                .await
                .expect("router");
            let r = router.clone();
            config.inbound = Some(switchboard::cluster::transport::Inbound(Arc::new(move |msg| {
                r.deliver_crossing(msg)
            })));
            Some(Engine {
                router,
                role,
                acted: false,
                names: env("SB_PEERS")
                    .split(',')
                    .filter_map(|p| p.split_once('=').map(|(n, _)| n.to_string()))
                    .chain(std::iter::once(node.clone()))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                node: node.clone(),
            })
        }
        Err(_) => None,
    };
    let transport = match Transport::start(config, members).await {
        Ok(t) => t,
        Err(e) => {
            println!("FAILED {e:#}");
            return;
        }
    };
    let mut engine = engine;
    if let Some(e) = &engine {
        e.router.join_cluster(transport.outbound()).expect("join");
    }
    println!("STARTED");
    let mut last_engine = String::new();
    let (eof_tx, mut eof) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        let _ = eof_tx.send(());
    });
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = &mut eof => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let Ok(status) = transport.status().await else { continue };
        let now: BTreeMap<String, (String, u64)> = status
            .peers
            .iter()
            .map(|p| (p.name.clone(), (p.state.to_string(), p.timeouts)))
            .collect();
        let line = serde_json::to_string(&now).expect("json");
        if line != last {
            println!("STATUS {line}");
            last = line;
        }
        if let Some(e) = &mut engine {
            let all_up = now.len() + 1 >= e.names.len() && now.values().all(|(s, _)| s == "up");
            let line = e.step(all_up).await.to_string();
            if line != last_engine {
                println!("ENGINE {line}");
                last_engine = line;
            }
        }
    }
    transport.stop();
    if let Some(k) = keeper {
        let _ = tokio::task::spawn_blocking(move || k.shutdown()).await;
    }
}

/// A child's routing engine and its part in the test: `agent` (one agent of its own
/// shard, online on `general`) or `conversations:N` (N conversations of its own shards
/// opened on `general`), acted once every peer is up.
struct Engine {
    router: switchboard::Router,
    role: String,
    acted: bool,
    /// Every node's name, this one's included.
    names: Vec<String>,
    node: String,
}

impl Engine {
    /// `count` ids `prefix-i` that placement gives this node.
    fn own_ids(&self, prefix: &str, count: usize) -> Vec<String> {
        use switchboard::cluster::placement::{owner, shard_of};
        (0..)
            .map(|i| format!("{prefix}-{i}"))
            .filter(|id| owner(shard_of(id), &self.names).is_some_and(|n| *n == self.node))
            .take(count)
            .collect()
    }

    /// Acts once every peer is up; says what the engine holds now.
    async fn step(&mut self, all_up: bool) -> serde_json::Value {
        use switchboard::domain::agent::{AgentSpec, AgentStatus};
        use switchboard::ids::{AgentId, ConsumerId, ConversationId, SkillId};
        let general = SkillId::new("general").expect("id");
        let agent_id = AgentId::new(&self.own_ids("ag", 1)[0]).expect("id");
        let agent_id = || agent_id.clone();
        if all_up && !self.acted {
            self.acted = true;
            if self.role == "agent" {
                let spec = AgentSpec {
                    group: None,
                    skills: vec![general.clone()],
                    max_slots: 10,
                    max_open: None,
                };
                self.router.put_agent(agent_id(), spec).await.expect("agent");
                self.router
                    .set_agent_status(&agent_id(), AgentStatus::Online)
                    .await
                    .expect("online");
            } else if let Some(n) = self.role.strip_prefix("conversations:") {
                for (i, id) in self.own_ids("c", n.parse().expect("count")).into_iter().enumerate() {
                    let req = switchboard::router::OpenConversation::new(
                        ConsumerId::new(format!("u{i}")).expect("id"),
                        general.clone(),
                    )
                    .with_id(ConversationId::new(id).expect("id"));
                    self.router.open_conversation(req).await.expect("open");
                }
            }
        }
        let (out, delivered, refused) = self.router.crossings();
        let mut seen = serde_json::json!({ "acted": self.acted, "out": out, "in": delivered, "refused": refused });
        if self.role == "agent" && self.acted {
            seen["busy"] = serde_json::json!(self.router.agent(&agent_id()).expect("agent").busy().as_slots());
        }
        if self.role.starts_with("conversations:") {
            let n = self.role["conversations:".len()..].parse().expect("count");
            for id in self.own_ids("c", n) {
                let holder = self
                    .router
                    .conversation(&ConversationId::new(&id).expect("id"))
                    .ok()
                    .and_then(|c| c.agent_id)
                    .map(|a| a.to_string());
                seen["holders"][id] = serde_json::json!(holder);
            }
        }
        seen
    }
}

/// What the parent knows of a child: its last printed status.
type Seen = Arc<Mutex<BTreeMap<String, (String, u64)>>>;

struct Node {
    name: String,
    addr: String,
    child: Child,
    stdin: Option<ChildStdin>,
    seen: Seen,
    /// The last `ENGINE` line of a node with an engine.
    engine: Arc<Mutex<serde_json::Value>>,
}

#[derive(Clone, Default)]
struct Spec {
    cookie: String,
    peers: String,
    pg_url: Option<String>,
    tls_dir: Option<PathBuf>,
    /// A network namespace to run the node in.
    netns: Option<String>,
    /// The node's part when it runs an engine (see [`Engine`]).
    engine: Option<String>,
}

impl Node {
    fn start(name: &str, addr: &str, spec: &Spec) -> Node {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = match &spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["--exact", "child_node", "--nocapture", "--test-threads", "1"])
            .env("SB_NODE", name)
            .env("SB_LISTEN", addr)
            .env("SB_COOKIE", &spec.cookie)
            .env("SB_PEERS", &spec.peers)
            .env(
                "RUST_LOG",
                std::env::var("SB_CHILD_LOG").unwrap_or_else(|_| "error,switchboard=warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = &spec.pg_url {
            cmd.env("SB_PG_URL", url);
        }
        if let Some(dir) = &spec.tls_dir {
            cmd.env("SB_TLS_DIR", dir);
        }
        if let Some(role) = &spec.engine {
            cmd.env("SB_ENGINE", role);
        }
        let mut child = cmd.spawn().expect("spawn a node");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let seen: Seen = Arc::default();
        let engine = Arc::new(Mutex::new(serde_json::Value::Null));
        let (started_tx, started) = std::sync::mpsc::channel();
        let s = Arc::clone(&seen);
        let e = Arc::clone(&engine);
        let who = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints `test child_node ... ` before the test's own output.
                let line = line.strip_prefix("test child_node ... ").unwrap_or(&line).to_string();
                if let Some(json) = line.strip_prefix("STATUS ") {
                    *s.lock().expect("status lock") = serde_json::from_str(json).expect("status json");
                } else if let Some(json) = line.strip_prefix("ENGINE ") {
                    *e.lock().expect("engine lock") = serde_json::from_str(json).expect("engine json");
                } else if line == "STARTED" || line.starts_with("FAILED") {
                    let _ = started_tx.send(line);
                } else if !line.trim().is_empty() && !line.starts_with("running") && !line.starts_with("test ") {
                    eprintln!("[{who}] {line}");
                }
            }
        });
        let first = started.recv_timeout(Duration::from_secs(20)).expect("the node started");
        assert_eq!(first, "STARTED", "node {name}");
        Node {
            name: name.to_string(),
            addr: addr.to_string(),
            child,
            stdin,
            seen,
            engine,
        }
    }

    fn engine(&self) -> serde_json::Value {
        self.engine.lock().expect("engine lock").clone()
    }

    fn state_of(&self, peer: &str) -> Option<(String, u64)> {
        self.seen.lock().expect("status lock").get(peer).cloned()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"\n");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, within: Duration, ok: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if ok() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("not within {within:?}: {what}");
}

fn up(a: &Node, b: &Node) -> bool {
    a.state_of(&b.name).is_some_and(|(s, _)| s == "up") && b.state_of(&a.name).is_some_and(|(s, _)| s == "up")
}

fn all_up(nodes: &[&Node]) -> bool {
    nodes
        .iter()
        .enumerate()
        .all(|(i, a)| nodes[i + 1..].iter().all(|b| up(a, b)))
}

fn addrs(n: usize) -> Vec<String> {
    (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect()
}

fn peers(names: &[&str], addrs: &[String]) -> String {
    names
        .iter()
        .zip(addrs)
        .map(|(n, a)| format!("{n}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// For four ping timeouts, sampled every 50 ms: `outsider` is up with none of `others`,
/// as none of them is with it (it dials them again and again and is refused).
fn never_up_with_the_others(outsider: &Node, others: &[&Node]) {
    let until = Instant::now() + 4 * PING_TIMEOUT;
    while Instant::now() < until {
        for other in others {
            for (x, y) in [(*other, outsider), (outsider, *other)] {
                let s = x.state_of(&y.name);
                assert!(
                    s.as_ref().is_none_or(|(s, _)| s != "up"),
                    "{} sees {} as {s:?}",
                    x.name,
                    y.name
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_dial_the_members_table_and_ride_out_a_pause_and_a_kill() {
    let dir = TempDir::new("transport-members");
    let pg = Postgres::start(&dir.0);
    let spec = Spec {
        cookie: "sesame".into(),
        pg_url: Some(pg.url()),
        ..Spec::default()
    };
    let a = addrs(3);
    let n1 = Node::start("n1", &a[0], &spec);
    let n2 = Node::start("n2", &a[1], &spec);
    let n3 = Node::start("n3", &a[2], &spec);
    let took = wait_for("three nodes up with each other", Duration::from_secs(20), || {
        all_up(&[&n1, &n2, &n3])
    });
    eprintln!("three nodes up with each other after {took:?} (no peer list given)");

    // A paused node keeps its sockets open and answers nothing: the others must notice.
    n3.signal("-STOP");
    let took = wait_for("n3 declared down while paused", Duration::from_secs(10), || {
        [&n1, &n2]
            .iter()
            .all(|n| n.state_of("n3").is_some_and(|(s, t)| s != "up" && t >= 1))
    });
    eprintln!("paused n3 declared down after {took:?} (ping timeout {PING_TIMEOUT:?})");
    assert!(up(&n1, &n2), "n1 and n2 stay up with each other");
    std::thread::sleep(PING_TIMEOUT);
    n3.signal("-CONT");
    let took = wait_for("n3 back after SIGCONT", Duration::from_secs(20), || {
        all_up(&[&n1, &n2, &n3])
    });
    eprintln!("n3 up again {took:?} after SIGCONT");

    // A killed node, restarted on its address, is dialed again.
    let addr2 = n2.addr.clone();
    n2.kill9();
    wait_for("killed n2 declared down", Duration::from_secs(10), || {
        [&n1, &n3]
            .iter()
            .all(|n| n.state_of("n2").is_some_and(|(s, _)| s != "up"))
    });
    let n2 = Node::start("n2", &addr2, &spec);
    let took = wait_for("restarted n2 up with both", Duration::from_secs(20), || {
        all_up(&[&n1, &n2, &n3])
    });
    eprintln!("restarted n2 up with both after {took:?}");
}

#[test]
fn a_node_with_another_cookie_is_never_let_in() {
    let a = addrs(3);
    let names = ["n1", "n2", "n3"];
    let good = Spec {
        cookie: "sesame".into(),
        peers: peers(&names, &a),
        ..Spec::default()
    };
    let bad = Spec {
        cookie: "guess".into(),
        ..good.clone()
    };
    let n1 = Node::start("n1", &a[0], &good);
    let n2 = Node::start("n2", &a[1], &good);
    let n3 = Node::start("n3", &a[2], &bad);
    wait_for("n1 and n2 up", Duration::from_secs(20), || up(&n1, &n2));
    // n3 dials both (its name is the largest) again and again, and is refused each time.
    never_up_with_the_others(&n3, &[&n1, &n2]);
    assert!(up(&n1, &n2), "the good pair stays up");
}

/// A CA and one certificate per node (for 127.0.0.1), with the openssl command.
fn make_certs(dir: &Path, nodes: &[&str]) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A new P-256 key, unencrypted.
    const NEW_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &NEW_KEY,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=switchboard test CA",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("ext");
    for n in nodes {
        let (key, csr, crt) = (format!("{n}.key"), format!("{n}.csr"), format!("{n}.crt"));
        run(&[
            &["req"][..],
            &NEW_KEY,
            &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={n}")],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
    }
}

#[test]
fn tls_nodes_talk_and_a_plain_one_is_refused() {
    let dir = TempDir::new("transport-tls");
    make_certs(&dir.0, &["n1", "n2"]);
    let a = addrs(3);
    let names = ["n1", "n2", "n3"];
    let tls = Spec {
        cookie: "sesame".into(),
        peers: peers(&names, &a),
        tls_dir: Some(dir.0.clone()),
        ..Spec::default()
    };
    let plain = Spec {
        tls_dir: None,
        ..tls.clone()
    };
    let n1 = Node::start("n1", &a[0], &tls);
    let n2 = Node::start("n2", &a[1], &tls);
    let n3 = Node::start("n3", &a[2], &plain);
    let took = wait_for("n1 and n2 up over TLS", Duration::from_secs(20), || up(&n1, &n2));
    eprintln!("n1 and n2 up over mutual TLS after {took:?}");
    never_up_with_the_others(&n3, &[&n1, &n2]);
}

#[test]
fn the_cluster_port_is_bound_to_the_configured_address_only() {
    let addr = format!("127.0.0.1:{}", free_port());
    let spec = Spec {
        cookie: "sesame".into(),
        ..Spec::default()
    };
    let n1 = Node::start("n1", &addr, &spec);
    let port = addr.rsplit_once(':').expect("host:port").1;
    assert!(std::net::TcpStream::connect(&addr).is_ok(), "listening on {addr}");
    // 127.0.0.2 is this machine too (all of 127/8 is loopback), but not the address
    // configured: a listener on [::] or 0.0.0.0 would accept there.
    let other = format!("127.0.0.2:{port}");
    assert!(
        std::net::TcpStream::connect_timeout(&other.parse().expect("an address"), Duration::from_secs(2)).is_err(),
        "{other} must be refused"
    );
    drop(n1);
}

#[test]
fn a_partitioned_node_is_declared_down_and_rejoins_when_the_partition_heals() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs this test as root (ip netns, nft)"
        );
        eprintln!("skipped: network namespaces and nftables need root");
        return;
    }
    let ns = Netns::new("10.213");
    let a = [
        format!("{}:{}", ns.host, free_port()),
        format!("{}:{}", ns.host, free_port()),
        format!("{}:{}", ns.inside, free_port()),
    ];
    let spec = Spec {
        cookie: "sesame".into(),
        peers: peers(&["n1", "n2", "n3"], &a),
        ..Spec::default()
    };
    let inside = Spec {
        netns: Some(ns.name.clone()),
        ..spec.clone()
    };
    let n1 = Node::start("n1", &a[0], &spec);
    let n2 = Node::start("n2", &a[1], &spec);
    let n3 = Node::start("n3", &a[2], &inside);
    wait_for("three nodes up across the veth", Duration::from_secs(20), || {
        all_up(&[&n1, &n2, &n3])
    });

    ns.partition();
    let took = wait_for(
        "n3 declared down on both sides of the partition",
        Duration::from_secs(10),
        || {
            [&n1, &n2]
                .iter()
                .all(|n| n.state_of("n3").is_some_and(|(s, t)| s != "up" && t >= 1))
                && ["n1", "n2"]
                    .iter()
                    .all(|p| n3.state_of(p).is_some_and(|(s, t)| s != "up" && t >= 1))
        },
    );
    eprintln!("partitioned n3 declared down on both sides after {took:?} (ping timeout {PING_TIMEOUT:?})");
    assert!(up(&n1, &n2), "n1 and n2 stay up with each other");
    std::thread::sleep(PING_TIMEOUT);
    assert!(up(&n1, &n2), "n1 and n2 stay up with each other");

    ns.heal();
    let took = wait_for("n3 back after the partition healed", Duration::from_secs(20), || {
        all_up(&[&n1, &n2, &n3])
    });
    eprintln!("n3 up again {took:?} after the partition healed");
}

#[test]
fn the_engine_routes_a_conversation_of_one_process_to_an_agent_of_another() {
    let names = ["n1", "n2"];
    let a = addrs(2);
    let spec = |role: &str| Spec {
        cookie: "sesame".into(),
        peers: peers(&names, &a),
        engine: Some(role.to_string()),
        ..Spec::default()
    };
    // n1 holds three conversations (ids of its own shards), n2 one agent (of its own):
    // every offer, reservation, assignment and confirmation crosses between them.
    let n1 = Node::start("n1", &a[0], &spec("conversations:3"));
    let n2 = Node::start("n2", &a[1], &spec("agent"));
    let took = wait_for(
        "both conversations' node and agent's node route",
        Duration::from_secs(20),
        || {
            let (e1, e2) = (n1.engine(), n2.engine());
            let held = e1["holders"]
                .as_object()
                .is_some_and(|h| h.len() == 3 && h.values().all(|v| v.as_str().is_some_and(|a| a.starts_with("ag-"))));
            held && e2["busy"].as_f64() == Some(3.0)
        },
    );
    let (e1, e2) = (n1.engine(), n2.engine());
    eprintln!("3 conversations of n1 assigned to n2's agent after {took:?}: n1 {e1}, n2 {e2}");
    assert_eq!(e1["refused"], 0, "nothing node-local crossed");
    assert_eq!(e2["refused"], 0, "nothing node-local crossed");
    assert!(e1["out"].as_u64() > Some(0) && e2["out"].as_u64() > Some(0));
}
