//! The transport between nodes: one ractor_cluster [`NodeServer`] per node, and one
//! gateway actor per node that carries versioned frames, encoded with bincode, to the
//! other nodes' gateways.
//!
//! Why a gateway instead of remote actors everywhere: ractor_cluster advertises every
//! actor whose message type is serializable to every peer and spawns a stand-in for
//! each. The engine's actors are many and short-lived (a conversation is activated and
//! passivated all day); advertising them would cost more than the messages. So actors
//! stay local, and only `gw:<node>` is known across nodes.
//!
//! What ractor_cluster does not do, and this module does:
//! - **Failure detection.** Its own pings are never timed out, and a peer that stops
//!   answering (a `SIGSTOP`, a partition that drops packets) keeps its session open
//!   forever. The gateway pings every peer's gateway each `ping_interval`; a peer not
//!   heard from for `ping_timeout` is declared down and its sessions are stopped.
//! - **Reconnection.** It never dials again. The gateway dials the members it reads
//!   from the membership table, with a timeout and a growing backoff. Of two nodes, the
//!   one with the larger name dials, so a pair never holds two sessions (ractor_cluster
//!   would close one of them anyway, after both were set up).
//! - **Binding.** It listens on `[::]` unless told; the node server is given the
//!   configured address.
//!
//! A frame is `version (u16, little-endian) ++ bincode(Frame)`: a node refuses (and
//! counts) a frame of a version it does not know instead of misreading it. Wire types
//! use no `#[serde(flatten)]` or `skip_serializing_if`, which bincode cannot round-trip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::concurrency::JoinHandle;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{IncomingEncryptionMode, NodeServer, NodeServerMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::keeper::Ownership;
use super::lease::Member;
use super::placement::weight;
use crate::actors::remote::{Crossing, Remote};

/// The version of [`Frame`] this build writes and reads.
/// 2: `ToAgent::Confirmed` carries the conversation's skill. 3: an agent's room carries
/// its busy weight and slots (`AgentRoom`, for the choice by utilization). 4: an agent
/// is told since when the consumer waits for its answer (`Holding`), and an unassignment
/// carries its reason and the wait it was asked for (automatic unassignment); an agent's
/// room says whether it is away (`fallback_when_away`). 5: an agent's room comes with
/// its group (`group_routing`). 6: a frame may carry a batch of bodies ([`Body::Batch`]).
pub const WIRE_VERSION: u16 = 6;

/// The one serialized variant of the gateway's messages, as ractor_cluster names it.
const FRAME_VARIANT: &str = "switchboard.frame";

/// What one node tells another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The sending node's name.
    pub from: String,
    pub body: Body,
}

/// A frame's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
    },
    /// A message for one of the receiving node's actors.
    Engine(Crossing),
    /// A note from the sender's cluster layer ([`Note`]).
    Note(Note),
    /// What one node had for another by the time its link's flush ran, in the order it
    /// was sent ([`send_frame`]): never nested, never empty.
    Batch(Vec<Body>),
}

/// What one node's cluster layer tells the others' (not the engine's actors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Note {
    /// The sender now serves these shards, under these lease epochs: route their
    /// messages to it, and re-tell it what its new actors must know (queue entries,
    /// agents' room, held conversations).
    Adopted(Vec<(u16, i64)>),
    /// An event about an agent of the receiver's shards, for its event streams: the
    /// event's JSON (events use serde attributes that bincode cannot round-trip).
    Event(String),
}

/// Why a received frame was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {0} bytes is too short to hold a version")]
    Short(usize),
    #[error("a frame of wire version {0} (this node reads {WIRE_VERSION})")]
    Version(u16),
    #[error("a frame that does not decode: {0}")]
    Decode(String),
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = WIRE_VERSION.to_le_bytes().to_vec();
        bincode::serde::encode_into_std_write(self, &mut out, bincode::config::standard())
            .expect("a frame always encodes into memory");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let (version, rest) = match bytes {
            [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
            _ => return Err(FrameError::Short(bytes.len())),
        };
        if version != WIRE_VERSION {
            return Err(FrameError::Version(version));
        }
        let (frame, used) = bincode::serde::decode_from_slice(rest, bincode::config::standard())
            .map_err(|e| FrameError::Decode(e.to_string()))?;
        if used != rest.len() {
            return Err(FrameError::Decode(format!("{} bytes left over", rest.len() - used)));
        }
        Ok(frame)
    }
}

/// TLS for the cluster port: every node has a certificate signed by the cluster's CA,
/// presents it, and accepts only peers that present one too (mutual TLS).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

/// How a node's transport runs.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub node: String,
    /// The address the cluster port binds, and only that one.
    pub listen: SocketAddr,
    /// The magic cookie: peers with another cookie are refused.
    pub cookie: String,
    pub tls: Option<TlsFiles>,
    pub ping_interval: Duration,
    /// A peer not heard from for this long is down: its sessions are stopped.
    pub ping_timeout: Duration,
    /// How long a dial may take, from the TCP connect to the peer's first answer.
    pub connect_timeout: Duration,
    /// The longest wait between two dials of a peer that does not answer.
    pub max_backoff: Duration,
    /// Where messages for this node's actors go (the engine's
    /// [`Router::deliver_crossing`](crate::Router::deliver_crossing)); without it they
    /// are refused and counted.
    pub inbound: Option<Inbound>,
    /// Where [`Note`]s from other nodes go, with the sender's name; without it they are
    /// refused and counted.
    pub notes: Option<Notes>,
    /// Told a peer's name when its link comes up (the first frame heard from it after
    /// a start or a silence): what this node sent it while the link was down was lost.
    pub linked: Option<Linked>,
}

/// The receiver of link-up news: the peer's name.
#[derive(Clone)]
pub struct Linked(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Linked")
    }
}

/// The receiver of the cluster layer's notes from other nodes.
#[derive(Clone)]
pub struct Notes(pub Arc<NoteFn>);

/// What takes a note: the sender's name and the note.
pub type NoteFn = dyn Fn(&str, Note) + Send + Sync;

impl std::fmt::Debug for Notes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notes")
    }
}

/// The receiver of the engine's messages from other nodes.
#[derive(Clone)]
pub struct Inbound(pub Arc<dyn Fn(Crossing) + Send + Sync>);

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbound")
    }
}

impl TransportConfig {
    pub fn new(node: &str, listen: SocketAddr, cookie: &str) -> TransportConfig {
        TransportConfig {
            node: node.to_string(),
            listen,
            cookie: cookie.to_string(),
            tls: None,
            ping_interval: Duration::from_millis(500),
            ping_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            max_backoff: Duration::from_secs(5),
            inbound: None,
            notes: None,
            linked: None,
        }
    }
}

/// How a peer looks from this node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub addr: String,
    /// `up` (heard from within the ping timeout), `connecting` or `down`.
    pub state: &'static str,
    /// The last ping's round trip.
    pub rtt_ms: Option<f64>,
    /// Times the peer was declared down after a silence.
    pub timeouts: u64,
    pub frames_in: u64,
}

/// What this node's transport has seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TransportStatus {
    pub peers: Vec<PeerStatus>,
    /// Frames refused (unknown version, not decodable), since start.
    pub frames_refused: u64,
}

/// The gateway's messages. Only [`GatewayMsg::Frame`] crosses nodes; the others are
/// local and cannot be serialized (sending one to a remote gateway fails).
pub enum GatewayMsg {
    /// An encoded [`Frame`] from another node.
    Frame(Vec<u8>),
    Tick,
    Members(Vec<Member>),
    Dialed {
        peer: String,
        attempt: u64,
        result: Result<(), String>,
    },
    Status(RpcReplyPort<TransportStatus>),
    /// Pings `peer` now; answered with the round trip, or `None` if the peer is not
    /// reachable or does not answer within the ping timeout.
    PingPeer {
        peer: String,
        reply: RpcReplyPort<Option<Duration>>,
    },
}

impl std::fmt::Debug for GatewayMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayMsg::Frame(b) => write!(f, "Frame({} bytes)", b.len()),
            GatewayMsg::Tick => write!(f, "Tick"),
            GatewayMsg::Members(m) => write!(f, "Members({})", m.len()),
            GatewayMsg::Dialed { peer, attempt, result } => write!(f, "Dialed({peer}, {attempt}, {result:?})"),
            GatewayMsg::Status(_) => write!(f, "Status"),
            GatewayMsg::PingPeer { peer, .. } => write!(f, "PingPeer({peer})"),
        }
    }
}

impl ractor::Message for GatewayMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            GatewayMsg::Frame(args) => Ok(SerializedMessage::Cast {
                variant: FRAME_VARIANT.to_string(),
                args,
                metadata: None,
            }),
            _ => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match message {
            SerializedMessage::Cast { variant, args, .. } if variant == FRAME_VARIANT => Ok(GatewayMsg::Frame(args)),
            _ => Err(BoxedDowncastErr),
        }
    }
}

/// The name of a node's gateway.
pub fn gateway_name(node: &str) -> String {
    format!("gw:{node}")
}

/// The process group every gateway joins. ractor_cluster copies process groups to its
/// peers (its stand-ins for remote actors are not in the name registry): a peer's
/// gateway is the member of this group named after it.
const GATEWAYS: &str = "switchboard.gateways";

/// The gateway of `node` as this process reaches it (a stand-in for a remote one).
fn gateway_of(node: &str) -> Option<ractor::ActorCell> {
    let name = gateway_name(node);
    ractor::pg::get_members(&GATEWAYS.to_string())
        .into_iter()
        .find(|c| c.get_name().as_deref() == Some(name.as_str()) && c.get_status() == ractor::ActorStatus::Running)
}

/// A node's running transport.
pub struct Transport {
    server: ActorRef<NodeServerMessage>,
    gateway: ActorRef<GatewayMsg>,
    follower: tokio::task::JoinHandle<()>,
    node: String,
    members: watch::Receiver<Vec<Member>>,
}

/// The engine's way out to other nodes over the transport: a shard belongs to the
/// member that rendezvous hashing gives it among the live members (this node
/// included), as the lease keepers place them; a message is one frame to that node's
/// gateway.
#[derive(Debug)]
pub struct Outbound {
    node: String,
    members: watch::Receiver<Vec<Member>>,
}

impl Remote for Outbound {
    fn elsewhere(&self, shard: u16) -> Option<String> {
        let members = self.members.borrow();
        let me = std::iter::once(self.node.as_str());
        let owner = members
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| *n != self.node)
            .chain(me)
            .max_by_key(|n| (weight(n, shard), *n))?;
        (owner != self.node).then(|| owner.to_string())
    }

    fn send(&self, node: &str, msg: Crossing) {
        send_frame(&self.node, node, Body::Engine(msg));
    }
}

/// What one node of this process has for another, not yet flushed.
#[derive(Default)]
struct Outbox {
    /// The peer's gateway as last found (looked up again once it stops running).
    gateway: Option<ractor::ActorCell>,
    bodies: Vec<Body>,
    /// A flush is spawned and has not run yet.
    flushing: bool,
    /// Frames sent on this link since start.
    sent: u64,
}

/// Every link's outbox in this process, by (from, to) node.
static OUTBOXES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<(String, String), Outbox>>> =
    std::sync::LazyLock::new(Default::default);

/// Frames this process's node `node` has sent to other nodes' gateways, since start.
pub fn frames_sent(node: &str) -> u64 {
    OUTBOXES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|((from, _), _)| from == node)
        .map(|(_, outbox)| outbox.sent)
        .sum()
}

/// Sends `body` from this process's node `from` to `to`'s gateway; false if there is no
/// link to it (the body is dropped: a lost message, which the engine reconciles).
///
/// Bodies are gathered per link: the first one into an empty outbox spawns its flush,
/// and whatever joins it before the flush runs (the other messages of an actor's turn,
/// of the turns run meanwhile) leaves in the same frame, one write on the link instead
/// of one each. Order per link is kept: a flush takes and sends under the outboxes'
/// lock.
pub fn send_frame(from: &str, to: &str, body: Body) -> bool {
    let mut boxes = OUTBOXES.lock().unwrap_or_else(|p| p.into_inner());
    let key = (from.to_string(), to.to_string());
    let outbox = boxes.entry(key.clone()).or_default();
    let running = |c: &ractor::ActorCell| c.get_status() == ractor::ActorStatus::Running;
    if !outbox.gateway.as_ref().is_some_and(running) {
        outbox.gateway = gateway_of(to);
        if outbox.gateway.is_none() {
            tracing::debug!(node = to, "no link to the node: message dropped");
            return false;
        }
    }
    outbox.bodies.push(body);
    if outbox.flushing {
        return true;
    }
    outbox.flushing = true;
    drop(boxes);
    // The flush runs when the guard drops: in the task once it is polled, or at once
    // if the task is dropped unpolled (a runtime shutting down), or here outside a
    // runtime. Never with the lock held: a drop inside `spawn` would take it again.
    let guard = Flush(key);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move { drop(guard) });
    }
    true
}

/// Bodies per frame at most: a burst (a node re-telling a peer about every agent it
/// took) leaves as several frames, far below ractor_cluster's 16 MiB frame limit.
const BATCH: usize = 128;

/// Flushes its link when dropped.
struct Flush((String, String));

impl Drop for Flush {
    /// Sends what the link has gathered, in frames of at most [`BATCH`] bodies.
    fn drop(&mut self) {
        let (from, _) = &self.0;
        let mut boxes = OUTBOXES.lock().unwrap_or_else(|p| p.into_inner());
        let Some(outbox) = boxes.get_mut(&self.0) else { return };
        outbox.flushing = false;
        // Bodies are only pushed once a gateway is found.
        let Some(gateway) = &outbox.gateway else { return };
        let mut bodies = std::mem::take(&mut outbox.bodies).into_iter().peekable();
        while bodies.peek().is_some() {
            let mut chunk: Vec<Body> = bodies.by_ref().take(BATCH).collect();
            let body = match chunk.len() {
                1 => chunk.pop().expect("one body"),
                _ => Body::Batch(chunk),
            };
            let frame = Frame {
                from: from.clone(),
                body,
            };
            match gateway.send_message(GatewayMsg::Frame(frame.encode())) {
                Ok(()) => outbox.sent += 1,
                Err(e) => tracing::debug!("cluster frame not sent: {e}"),
            }
        }
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds the cluster port, starts the gateway, and dials the members as
    /// `members` names them (this node among them or not).
    pub async fn start(
        config: TransportConfig,
        mut members: watch::Receiver<Vec<Member>>,
    ) -> anyhow::Result<Transport> {
        let tls = match &config.tls {
            Some(files) => Some(Tls::load(files)?),
            None => None,
        };
        let encryption = match &tls {
            Some(t) => IncomingEncryptionMode::Tls(t.acceptor.clone()),
            None => IncomingEncryptionMode::Raw,
        };
        let node_server = NodeServer::new(
            config.listen.port(),
            config.cookie.clone(),
            config.node.clone(),
            config.listen.ip().to_string(),
            Some(encryption),
            Some(ractor_cluster::node::NodeConnectionMode::Isolated),
        )
        .with_listen_addr(config.listen.ip());
        let (server, _) = Actor::spawn(None, node_server, ())
            .await
            .with_context(|| format!("starting the cluster transport on {}", config.listen))?;
        let args = Gateway {
            config: config.clone(),
            server: server.clone(),
            tls: tls.map(|t| t.connector),
        };
        let (gateway, _) = match Actor::spawn(Some(gateway_name(&config.node)), args, ()).await {
            Ok(g) => g,
            Err(e) => {
                server.stop(None);
                return Err(e).context("starting the cluster gateway");
            }
        };
        let g = gateway.clone();
        let (node, watched) = (config.node.clone(), members.clone());
        let follower = tokio::spawn(async move {
            loop {
                let now = members.borrow_and_update().clone();
                if g.cast(GatewayMsg::Members(now)).is_err() || members.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Transport {
            server,
            gateway,
            follower,
            node,
            members: watched,
        })
    }

    /// The engine's way out to the other nodes ([`Router::join_cluster`](crate::Router::join_cluster)).
    pub fn outbound(&self) -> Arc<dyn Remote> {
        Arc::new(Outbound {
            node: self.node.clone(),
            members: self.members.clone(),
        })
    }

    pub async fn status(&self) -> anyhow::Result<TransportStatus> {
        self.status_handle().status().await
    }

    /// A handle that asks the gateway for its status (without borrowing the transport).
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(self.gateway.clone())
    }

    /// One round trip to `peer`'s gateway and back (a frame each way), or `None` if
    /// the peer is not reachable or does not answer within the ping timeout.
    pub async fn ping(&self, peer: &str) -> anyhow::Result<Option<Duration>> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.gateway.cast(GatewayMsg::PingPeer {
            peer: peer.to_string(),
            reply: tx.into(),
        })?;
        Ok(rx.await?)
    }

    /// Stops the gateway and the node server (its sessions close with it).
    pub fn stop(self) {
        self.follower.abort();
        self.gateway.stop(None);
        self.server.stop(None);
    }
}

/// Asks a gateway for its [`TransportStatus`].
#[derive(Clone, Debug)]
pub struct StatusHandle(ActorRef<GatewayMsg>);

impl StatusHandle {
    pub async fn status(&self) -> anyhow::Result<TransportStatus> {
        Ok(ractor::call_t!(self.0, GatewayMsg::Status, 2_000)?)
    }
}

/// The members a keeper reads, as they change: what a transport dials.
pub fn members_of(mut ownership: watch::Receiver<Ownership>) -> watch::Receiver<Vec<Member>> {
    let (tx, rx) = watch::channel(ownership.borrow().members.clone());
    tokio::spawn(async move {
        while ownership.changed().await.is_ok() {
            let members = ownership.borrow_and_update().members.clone();
            tx.send_if_modified(|now| {
                let changed = *now != members;
                *now = members;
                changed
            });
        }
    });
    rx
}

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
}

impl Tls {
    fn load(files: &TlsFiles) -> anyhow::Result<Tls> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|i| i.collect())
            .with_context(|| format!("reading the cluster certificate {}", files.cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .with_context(|| format!("reading the cluster key {}", files.key.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&files.ca)
            .with_context(|| format!("reading the cluster CA {}", files.ca.display()))?
        {
            let ca = ca.with_context(|| format!("reading the cluster CA {}", files.ca.display()))?;
            roots
                .add(ca)
                .with_context(|| format!("the cluster CA {}", files.ca.display()))?;
        }
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::clone(&roots))
            .build()
            .context("the cluster CA cannot verify clients")?;
        let server = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .with_context(|| format!("the cluster certificate {}", files.cert.display()))?;
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .with_context(|| format!("the cluster certificate {}", files.cert.display()))?;
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }
}

struct Gateway {
    config: TransportConfig,
    server: ActorRef<NodeServerMessage>,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// A peer's link as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    /// Nothing open; dial at `next` (if this node is the dialer).
    Down { next: Instant },
    /// A dial (attempt number) started at `since`, not yet heard from.
    Dialing { since: Instant, attempt: u64 },
    /// Heard from at `last`.
    Up { last: Instant },
}

struct Peer {
    addr: String,
    link: Link,
    backoff: Duration,
    ping: Option<(u64, Instant)>,
    rtt: Option<Duration>,
    timeouts: u64,
    frames_in: u64,
}

impl Peer {
    /// Nothing open: the next dial waits the backoff, and the one after twice as long.
    fn back_off(&mut self, now: Instant, max: Duration) {
        self.link = Link::Down {
            next: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(max);
    }
}

struct GatewayState {
    peers: BTreeMap<String, Peer>,
    seq: u64,
    attempts: u64,
    refused: u64,
    /// Pings asked for by [`Transport::ping`], by sequence number.
    asked: std::collections::HashMap<u64, (Instant, RpcReplyPort<Option<Duration>>)>,
    ticker: Option<JoinHandle<()>>,
}

impl Gateway {
    /// Of two nodes, the one with the larger name dials.
    fn dials(&self, peer: &str) -> bool {
        self.config.node.as_str() > peer
    }

    /// Pings and pongs go through the link's outbox too, behind what was sent before.
    fn send(&self, peer: &str, body: Body) -> bool {
        send_frame(&self.config.node, peer, body)
    }

    /// Stops every session with `peer` (by name, or by address for a dial not yet
    /// authenticated): its stand-ins go with it, and the next dial starts clean.
    async fn drop_sessions(&self, peer: &str, addr: &str) {
        let Ok(sessions) = ractor::call_t!(self.server, NodeServerMessage::GetSessions, 2_000) else {
            return;
        };
        for s in sessions.values() {
            // ractor_cluster names a node `name@host`.
            let named = s
                .peer_name
                .as_ref()
                .is_some_and(|n| n.name.split('@').next() == Some(peer));
            if named || (!s.is_server && s.peer_addr == addr) {
                s.actor.stop(Some(format!("peer {peer} silent")));
            }
        }
    }

    fn dial(&self, myself: &ActorRef<GatewayMsg>, peer: &str, addr: &str, attempt: u64) {
        let server = self.server.clone();
        let tls = self.tls.clone();
        let (peer, addr) = (peer.to_string(), addr.to_string());
        let me = myself.clone();
        let timeout = self.config.connect_timeout;
        tokio::spawn(async move {
            let connect = async {
                match tls {
                    None => ractor_cluster::client_connect(&server, addr.as_str())
                        .await
                        .map_err(|e| e.to_string()),
                    Some(tls) => {
                        let host = addr.parse::<SocketAddr>().map_err(|e| format!("{addr}: {e}"))?;
                        let name = ServerName::IpAddress(host.ip().into());
                        ractor_cluster::client_connect_enc(&server, addr.as_str(), tls, name)
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            };
            let result = match tokio::time::timeout(timeout, connect).await {
                Ok(r) => r,
                Err(_) => Err(format!("no connection within {timeout:?}")),
            };
            let _ = me.cast(GatewayMsg::Dialed { peer, attempt, result });
        });
    }

    async fn tick(&self, myself: &ActorRef<GatewayMsg>, st: &mut GatewayState) {
        let now = Instant::now();
        let timeout = self.config.ping_timeout;
        let expired: Vec<u64> = st
            .asked
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) > timeout)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            if let Some((_, reply)) = st.asked.remove(&seq) {
                let _ = reply.send(None);
            }
        }
        let names: Vec<String> = st.peers.keys().cloned().collect();
        for name in names {
            let reachable = gateway_of(&name).is_some();
            let dials = self.dials(&name);
            let Some(p) = st.peers.get_mut(&name) else { continue };
            let silent = match p.link {
                Link::Up { last } => now.duration_since(last) > self.config.ping_timeout,
                Link::Dialing { since, .. } => now.duration_since(since) > self.config.connect_timeout,
                Link::Down { .. } => false,
            };
            if silent {
                if matches!(p.link, Link::Up { .. }) {
                    p.timeouts += 1;
                    tracing::warn!(peer = %name, "cluster peer silent for {:?}: its sessions are stopped", self.config.ping_timeout);
                }
                p.back_off(now, self.config.max_backoff);
                p.ping = None;
                let addr = p.addr.clone();
                self.drop_sessions(&name, &addr).await;
                continue;
            }
            if reachable {
                if matches!(p.link, Link::Down { .. }) {
                    // The peer dialed this node: give it the connect time to answer.
                    p.link = Link::Dialing { since: now, attempt: 0 };
                }
                st.seq += 1;
                p.ping = Some((st.seq, now));
                let seq = st.seq;
                self.send(&name, Body::Ping { seq });
            } else if let Link::Down { next } = p.link {
                if dials && now >= next {
                    st.attempts += 1;
                    p.link = Link::Dialing {
                        since: now,
                        attempt: st.attempts,
                    };
                    let addr = p.addr.clone();
                    self.dial(myself, &name, &addr, st.attempts);
                }
            }
        }
    }

    fn received(&self, st: &mut GatewayState, bytes: &[u8]) {
        let frame = match Frame::decode(bytes) {
            Ok(f) => {
                tracing::trace!(from = %f.from, "cluster frame {:?}", f.body);
                f
            }
            Err(e) => {
                st.refused += 1;
                if st.refused == 1 {
                    tracing::warn!("cluster frame refused: {e} (further ones are only counted)");
                }
                return;
            }
        };
        let now = Instant::now();
        if let Some(p) = st.peers.get_mut(&frame.from) {
            p.frames_in += 1;
            if !matches!(p.link, Link::Up { .. }) {
                tracing::info!(peer = %frame.from, "cluster peer up");
                p.backoff = self.config.ping_interval;
                if let Some(linked) = &self.config.linked {
                    (linked.0)(&frame.from);
                }
            }
            p.link = Link::Up { last: now };
        }
        match frame.body {
            Body::Batch(bodies) => {
                for body in bodies {
                    self.body(st, &frame.from, body, now);
                }
            }
            body => self.body(st, &frame.from, body, now),
        }
    }

    /// One body of a frame from `from`, received at `now`.
    fn body(&self, st: &mut GatewayState, from: &str, body: Body, now: Instant) {
        match body {
            Body::Ping { seq } => {
                self.send(from, Body::Pong { seq });
            }
            Body::Pong { seq } => {
                if let Some((at, reply)) = st.asked.remove(&seq) {
                    let _ = reply.send(Some(now.duration_since(at)));
                }
                if let Some(p) = st.peers.get_mut(from) {
                    if let Some((sent_seq, at)) = p.ping {
                        if sent_seq == seq {
                            p.rtt = Some(now.duration_since(at));
                        }
                    }
                }
            }
            Body::Engine(msg) => match &self.config.inbound {
                Some(inbound) => (inbound.0)(msg),
                None => st.refused += 1,
            },
            Body::Note(note) => match &self.config.notes {
                Some(notes) => (notes.0)(from, note),
                None => st.refused += 1,
            },
            // Never sent nested: refused like a frame that does not decode.
            Body::Batch(_) => st.refused += 1,
        }
    }
}

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<GatewayMsg>, _: ()) -> Result<GatewayState, ActorProcessingErr> {
        ractor::pg::join(GATEWAYS.to_string(), vec![myself.get_cell()]);
        let ticker = myself.send_interval(self.config.ping_interval, || GatewayMsg::Tick);
        Ok(GatewayState {
            peers: BTreeMap::new(),
            seq: 0,
            attempts: 0,
            refused: 0,
            asked: std::collections::HashMap::new(),
            ticker: Some(ticker),
        })
    }

    async fn post_stop(&self, _: ActorRef<GatewayMsg>, st: &mut GatewayState) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        st: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GatewayMsg::Frame(bytes) => self.received(st, &bytes),
            GatewayMsg::Tick => self.tick(&myself, st).await,
            GatewayMsg::Members(members) => {
                let now = Instant::now();
                let wanted: BTreeMap<String, String> = members
                    .into_iter()
                    .filter(|m| m.name != self.config.node)
                    .map(|m| (m.name, m.cluster_addr))
                    .collect();
                st.peers.retain(|name, _| wanted.contains_key(name));
                for (name, addr) in wanted {
                    let p = st.peers.entry(name).or_insert_with(|| Peer {
                        addr: addr.clone(),
                        link: Link::Down { next: now },
                        backoff: self.config.ping_interval,
                        ping: None,
                        rtt: None,
                        timeouts: 0,
                        frames_in: 0,
                    });
                    // A restarted peer may listen elsewhere: the next dial goes there.
                    p.addr = addr;
                }
            }
            GatewayMsg::Dialed { peer, attempt, result } => {
                if let Err(e) = result {
                    if let Some(p) = st.peers.get_mut(&peer) {
                        if matches!(p.link, Link::Dialing { attempt: a, .. } if a == attempt) {
                            tracing::debug!(%peer, "cluster dial failed: {e}");
                            p.back_off(Instant::now(), self.config.max_backoff);
                        }
                    }
                }
            }
            GatewayMsg::PingPeer { peer, reply } => {
                st.seq += 1;
                let seq = st.seq;
                if self.send(&peer, Body::Ping { seq }) {
                    st.asked.insert(seq, (Instant::now(), reply));
                } else {
                    let _ = reply.send(None);
                }
            }
            GatewayMsg::Status(reply) => {
                let peers = st
                    .peers
                    .iter()
                    .map(|(name, p)| PeerStatus {
                        name: name.clone(),
                        addr: p.addr.clone(),
                        state: match p.link {
                            Link::Up { .. } => "up",
                            Link::Dialing { .. } => "connecting",
                            Link::Down { .. } => "down",
                        },
                        rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1e3),
                        timeouts: p.timeouts,
                        frames_in: p.frames_in,
                    })
                    .collect();
                let _ = reply.send(TransportStatus {
                    peers,
                    frames_refused: st.refused,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_their_version_first() {
        for body in [
            Body::Ping { seq: 7 },
            Body::Pong { seq: u64::MAX },
            Body::Note(Note::Adopted(vec![(0, 1), (255, i64::MAX)])),
            Body::Note(Note::Event(r#"{"type":"assigned"}"#.into())),
            Body::Batch(vec![
                Body::Ping { seq: 1 },
                Body::Note(Note::Adopted(vec![(3, 4)])),
                Body::Pong { seq: 2 },
            ]),
        ] {
            let f = Frame {
                from: "node-a".into(),
                body,
            };
            let bytes = f.encode();
            assert_eq!(&bytes[..2], &WIRE_VERSION.to_le_bytes());
            assert_eq!(Frame::decode(&bytes), Ok(f));
        }
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused_not_misread() {
        let mut bytes = Frame {
            from: "a".into(),
            body: Body::Ping { seq: 1 },
        }
        .encode();
        assert_eq!(Frame::decode(&bytes[..1]), Err(FrameError::Short(1)));
        bytes.push(0);
        assert!(matches!(Frame::decode(&bytes), Err(FrameError::Decode(_))));
        let next = WIRE_VERSION + 1;
        bytes[..2].copy_from_slice(&next.to_le_bytes());
        assert_eq!(Frame::decode(&bytes), Err(FrameError::Version(next)));
        let mut garbage = WIRE_VERSION.to_le_bytes().to_vec();
        garbage.extend([0xff, 0xff]);
        assert!(matches!(Frame::decode(&garbage), Err(FrameError::Decode(_))));
    }

    /// Stands in for a peer's gateway: hands over every frame it gets.
    struct Collector(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

    impl Actor for Collector {
        type Msg = GatewayMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, myself: ActorRef<GatewayMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            ractor::pg::join(GATEWAYS.to_string(), vec![myself.get_cell()]);
            Ok(())
        }

        async fn handle(&self, _: ActorRef<GatewayMsg>, msg: GatewayMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
            if let GatewayMsg::Frame(bytes) = msg {
                let _ = self.0.send(bytes);
            }
            Ok(())
        }
    }

    /// One thread: the flush runs only once the test awaits, after the whole burst. The
    /// paused clock's sleeps return once every task is idle.
    #[tokio::test(start_paused = true)]
    async fn a_burst_leaves_in_frames_of_at_most_a_batch_in_the_order_sent() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (peer, handle) = Actor::spawn(Some(gateway_name("burst-to")), Collector(tx), ())
            .await
            .expect("spawn");
        let next = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>| {
            let bytes = rx.try_recv().ok()?;
            let frame = Frame::decode(&bytes).expect("a frame decodes");
            assert_eq!(frame.from, "burst-from");
            Some(frame.body)
        };
        // Running once its task has been polled.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let burst = 2 * BATCH as u64 + 44;
        for seq in 0..burst {
            assert!(send_frame("burst-from", "burst-to", Body::Ping { seq }));
        }
        assert!(
            !send_frame("burst-from", "nobody", Body::Ping { seq: 0 }),
            "no link, dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut seqs = Vec::new();
        let mut sizes = Vec::new();
        while let Some(body) = next(&mut rx) {
            let Body::Batch(bodies) = body else {
                panic!("a burst leaves in batches: {body:?}")
            };
            sizes.push(bodies.len());
            for b in bodies {
                let Body::Ping { seq } = b else { panic!("{b:?}") };
                seqs.push(seq);
            }
        }
        assert_eq!(seqs, (0..burst).collect::<Vec<_>>(), "every body, in order");
        assert_eq!(sizes, [BATCH, BATCH, 44]);
        assert_eq!(frames_sent("burst-from"), 3);
        // A lone body leaves as itself.
        assert!(send_frame("burst-from", "burst-to", Body::Ping { seq: burst }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(next(&mut rx), Some(Body::Ping { seq: burst }));
        assert_eq!(frames_sent("burst-from"), 4);
        peer.stop(None);
        handle.await.expect("stopped");
    }

    #[test]
    fn only_frames_cross_nodes() {
        use ractor::Message;
        let m = GatewayMsg::Frame(vec![1, 2, 3])
            .serialize()
            .expect("a frame serializes");
        assert!(matches!(GatewayMsg::deserialize(m), Ok(GatewayMsg::Frame(b)) if b == [1, 2, 3]));
        assert!(GatewayMsg::Tick.serialize().is_err());
        let other = SerializedMessage::Cast {
            variant: "something.else".into(),
            args: vec![],
            metadata: None,
        };
        assert!(GatewayMsg::deserialize(other).is_err());
    }
}
