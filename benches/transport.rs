//! What a message between two nodes costs: the cluster transport's round trip (a frame
//! to the peer's gateway and one back, over ractor_cluster on 127.0.0.1, peer in a
//! second process) next to its floors measured in the same run: a ractor `call` in
//! process, and a one-byte TCP echo between two threads over 127.0.0.1.
//! `cargo bench --bench transport`.
//!
//! The peer is this bench binary run again with `SB_BENCH_PEER` set.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{percentile, Echo, Ping};
use ractor::Actor;
use switchboard::cluster::lease::Member;
use switchboard::cluster::transport::{Transport, TransportConfig};

const SEQUENTIAL: usize = 20_000;
const IN_FLIGHT: usize = 64;
const PIPELINED_EACH: usize = 1_000;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn member(name: &str, addr: SocketAddr) -> Member {
    Member {
        name: name.into(),
        cluster_addr: addr.to_string(),
        http_addr: String::new(),
        incarnation: 0,
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn start(name: &str, me: SocketAddr, other: (&str, SocketAddr)) -> Transport {
    let config = TransportConfig::new(name, me, "bench");
    let members = tokio::sync::watch::channel(vec![member(name, me), member(other.0, other.1)]).1;
    Transport::start(config, members).await.expect("transport")
}

/// The peer process: serves until its stdin closes.
async fn peer(me: SocketAddr, other: SocketAddr) {
    let t = start("n2", me, ("n1", other)).await;
    println!("READY");
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    t.stop();
}

fn tcp_echo_rtts(n: usize) -> Vec<Duration> {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() {
            if s.write_all(&b).is_err() {
                break;
            }
        }
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let mut b = [7u8; 1];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            c.write_all(&b).expect("write");
            c.read_exact(&mut b).expect("read");
            t.elapsed()
        })
        .collect()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let (Ok(me), Ok(other)) = (std::env::var("SB_BENCH_PEER"), std::env::var("SB_BENCH_OTHER")) {
        rt.block_on(peer(me.parse().expect("addr"), other.parse().expect("addr")));
        return;
    }
    let (a1, a2) = (free_addr(), free_addr());
    let mut child = Command::new(std::env::current_exe().expect("bench binary"))
        .env("SB_BENCH_PEER", a2.to_string())
        .env("SB_BENCH_OTHER", a1.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("peer process");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("peer ready");
    assert_eq!(line.trim(), "READY", "the peer started");

    rt.block_on(async {
        let t = Arc::new(start("n1", a1, ("n2", a2)).await);
        let up = Instant::now();
        while t.ping("n2").await.expect("ping").is_none() {
            assert!(up.elapsed() < Duration::from_secs(20), "peer not up within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("peer up after {:?}; warming up", up.elapsed());
        for _ in 0..2_000 {
            t.ping("n2").await.expect("ping");
        }

        eprintln!("{SEQUENTIAL} sequential round trips");
        let mut rtts = Vec::with_capacity(SEQUENTIAL);
        for i in 0..SEQUENTIAL {
            rtts.push(t.ping("n2").await.expect("ping").expect("an answer"));
            if (i + 1) % 5_000 == 0 {
                eprintln!("  {} done", i + 1);
            }
        }
        let (p50, p99) = (percentile(&mut rtts, 0.5), percentile(&mut rtts, 0.99));

        eprintln!("{IN_FLIGHT} × {PIPELINED_EACH} round trips in flight at once");
        let start = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let t = Arc::clone(&t);
                tokio::spawn(async move {
                    let mut lost = 0;
                    for _ in 0..PIPELINED_EACH {
                        if t.ping("n2").await.expect("ping").is_none() {
                            lost += 1;
                        }
                    }
                    lost
                })
            })
            .collect();
        let mut lost = 0;
        for task in tasks {
            lost += task.await.expect("task");
        }
        let elapsed = start.elapsed();
        let per_s = (IN_FLIGHT * PIPELINED_EACH) as f64 / elapsed.as_secs_f64();

        let (echo, _) = Actor::spawn(None, Echo, ()).await.expect("echo");
        let mut calls = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            let s = Instant::now();
            ractor::call!(echo, Ping).expect("call");
            calls.push(s.elapsed());
        }
        echo.stop(None);
        let call_p50 = percentile(&mut calls, 0.5);
        let mut tcp = tcp_echo_rtts(SEQUENTIAL);
        let tcp_p50 = percentile(&mut tcp, 0.5);

        println!("transport_rtt_p50 {:.1} us", us(p50));
        println!("transport_rtt_p99 {:.1} us", us(p99));
        println!("transport_round_trips_per_s {per_s:.0} ({IN_FLIGHT} in flight, 2 frames each; {lost} unanswered)");
        println!("floor_ractor_call_p50 {:.1} us", us(call_p50));
        println!("floor_tcp_echo_p50 {:.1} us", us(tcp_p50));
        println!(
            "ratio_transport_to_tcp_echo {:.1} (transport_to_ractor_call {:.0})",
            us(p50) / us(tcp_p50),
            us(p50) / us(call_p50)
        );
        if let Ok(t) = Arc::try_unwrap(t) {
            t.stop();
        }
    });
    drop(child.stdin.take());
    let _ = child.wait();
}
