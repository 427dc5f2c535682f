//! A network namespace of the test's own, joined to this machine by a veth pair, and
//! a partition of it with nftables (root only: `.ci/run` installs iproute2 and
//! nftables and runs as root).

use std::io::Write;
use std::process::{Command, Stdio};

/// A network namespace joined to this machine by a veth pair: `host` is this side's
/// address, `inside` the namespace's. Removed when dropped.
pub struct Netns {
    pub name: String,
    pub host: String,
    pub inside: String,
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect(args[0]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// `net` is the first two octets of the pair's /24 (each test its own: tests may
    /// run at once), the third is taken from the process id.
    pub fn new(net: &str) -> Netns {
        let id = std::process::id() % 100_000;
        let (name, vh, vn) = (format!("sb-part-{id}"), format!("sbh{id}"), format!("sbn{id}"));
        let net = format!("{net}.{}", id % 250);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name: name.clone(),
            host: format!("{net}.1"),
            inside: format!("{net}.2"),
        };
        sh(&["ip", "link", "add", &vh, "type", "veth", "peer", "name", &vn]);
        sh(&["ip", "link", "set", &vn, "netns", &name]);
        sh(&["ip", "addr", "add", &format!("{}/24", ns.host), "dev", &vh]);
        sh(&["ip", "link", "set", &vh, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &name];
            all.extend_from_slice(args);
            sh(&all);
        };
        inside(&["ip", "addr", "add", &format!("{}/24", ns.inside), "dev", &vn]);
        inside(&["ip", "link", "set", &vn, "up"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Every packet in or out of the namespace is dropped, silently: no reset, no
    /// unreachable, as a partition looks to the nodes outside.
    pub fn partition(&self) {
        let rules = "table inet sbpart {\n\
            chain input { type filter hook input priority 0; policy drop; iif \"lo\" accept; }\n\
            chain output { type filter hook output priority 0; policy drop; oif \"lo\" accept; }\n\
            }\n";
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft (Debian package nftables)");
        nft.stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("rules");
        assert!(nft.wait().expect("nft").success(), "nft rules");
    }

    pub fn heal(&self) {
        sh(&[
            "ip", "netns", "exec", &self.name, "nft", "delete", "table", "inet", "sbpart",
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
