//! A throwaway Postgres cluster for one test: `initdb` into a temporary folder, `pg_ctl start` with
//! its unix socket in that folder (no TCP listener, so parallel tests never collide), stopped when
//! the guard is dropped — also when the test panics. As root (CI), the server runs as the `postgres`
//! user, which owns the folder. A machine without the server binaries fails the test with a message
//! saying what to install: the Postgres tests are part of the proof and must not skip silently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    run_as: Option<String>,
}

fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "the Postgres tests need a PostgreSQL server (initdb, pg_ctl): install Debian's \
             `postgresql` package (`.ci/run` does), or put `pg_config` on the PATH"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgCluster {
    /// Creates and starts a cluster; panics with the server's own output when it cannot.
    pub fn start() -> PgCluster {
        let bindir = bindir();
        let dir = tempfile::Builder::new()
            .prefix("coach-pg-")
            .tempdir()
            .expect("a temporary folder for the cluster");
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let ids = Command::new("id")
                .args(["-u", user])
                .output()
                .expect("id -u postgres");
            let uid: u32 = String::from_utf8_lossy(&ids.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|_| {
                    panic!("running as root, the Postgres tests need the `{user}` user (Debian's postgresql package creates it)")
                });
            std::os::unix::fs::chown(dir.path(), Some(uid), None)
                .expect("hand the cluster folder to the postgres user");
        }
        let cluster = PgCluster {
            dir,
            bindir,
            port: free_port(),
            run_as,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let options = format!(
            "-k {} -p {} -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            cluster.dir.path().display(),
            cluster.port
        );
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                cluster.dir.path().join("server.log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bindir.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "{tool} failed: {}\n{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The socket folder and port, for tools (`psql -h … -p …`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `name` on this cluster.
    pub fn url_of(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost/{name}?host={}&port={}",
            self.dir.path().display(),
            self.port
        )
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let socket = self.dir.path().to_str().unwrap().to_owned();
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", &socket, "-p", &port, "-U", "postgres", name],
        );
        self.url_of(name)
    }
}

impl PgCluster {
    /// Stops the server now (fast shutdown: sessions are ended); the folder goes with the guard.
    pub fn stop(&self) {
        self.pg_ctl_stop("fast");
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let data = self.data_dir();
        let exe = self.bindir.join("pg_ctl");
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let _ = cmd
            .args(["-D", data.to_str().unwrap_or(""), "-m", mode, "-w", "stop"])
            .output();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate: the data dies with the folder, so nothing needs to be flushed.
        self.pg_ctl_stop("immediate");
    }
}
