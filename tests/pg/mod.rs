//! Test support shared by the tests that need a real PostgreSQL or a scratch directory:
//! a temporary directory, a free 127.0.0.1 port, and a PostgreSQL server of the test's
//! own.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SWITCHBOARD_KEEP_TEST_DIRS").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A PostgreSQL server of the test's own: `initdb` into a temporary directory and
/// `pg_ctl start` on a 127.0.0.1 port, as the `postgres` user when run as root
/// (`initdb` refuses root). Stopped when dropped.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    as_postgres: bool,
    /// `listen_addresses`: 127.0.0.1, and another address of this machine if asked.
    listen: String,
}

impl Postgres {
    fn bindir() -> Option<PathBuf> {
        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.join("initdb").exists());
        from_pg_config.or_else(|| {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect();
            dirs.sort();
            dirs.pop()
        })
    }

    pub fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn start(root: &Path) -> Postgres {
        Postgres::start_also_on(root, None)
    }

    /// As [`Postgres::start`], also listening on `also` (an address of this machine,
    /// e.g. a veth to a test's network namespace), open to its /24.
    pub fn start_also_on(root: &Path, also: Option<&str>) -> Postgres {
        let bin = Postgres::bindir().expect("PostgreSQL server binaries (initdb): .ci/run installs postgresql");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let data = root.join("pg");
        std::fs::create_dir_all(&data).expect("pg dir");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "chown to postgres");
        }
        let pg = Postgres {
            bin,
            data,
            port: free_port(),
            as_postgres,
            listen: also.map_or("127.0.0.1".to_string(), |a| format!("127.0.0.1,{a}")),
        };
        let out = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "switchboard", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&pg.data)
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        if let Some(a) = also {
            let net = a.rsplit_once('.').map_or(a, |(n, _)| n);
            let hba = pg.data.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            text.push_str(&format!("host all all {net}.0/24 trust\n"));
            std::fs::write(&hba, text).expect("pg_hba.conf");
        }
        pg.launch();
        pg
    }

    /// Starts the server on its data directory (again).
    fn launch(&self) {
        let options = format!(
            "-c listen_addresses={} -p {} -k {} -c fsync=on",
            self.listen,
            self.port,
            self.data.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-l"])
            .arg(self.data.join("server.log"))
            .args(["-o", &options, "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server as a crash would (`-m immediate`: no shutdown checkpoint, every
    /// connection cut) and starts it again after `down`.
    pub fn restart(&self, down: std::time::Duration) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(down);
        self.launch();
    }

    pub fn url(&self) -> String {
        self.url_on("127.0.0.1")
    }

    /// The URL through one of the addresses it listens on.
    pub fn url_on(&self, addr: &str) -> String {
        format!("postgres://switchboard@{addr}:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
