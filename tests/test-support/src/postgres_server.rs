//! A PostgreSQL server of the system's own installation, started by a test in a folder of its own
//! on a loopback port, stopped the way a crash stops it, and started again on the same data.
//!
//! PostgreSQL refuses to run as root, so a test running as root starts it as the `postgres` user
//! (or `nobody`) and gives that user the folder. Without PostgreSQL installed a test skips with a
//! message, except under `CI` or `REQUIRE_POSTGRES`, where it fails.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TLS for the server: its certificate and key, and the authority whose client certificates it
/// accepts.
pub struct ServerTls {
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The authority of client certificates (PEM).
    pub client_ca: PathBuf,
}

/// A running server (stopped when dropped).
pub struct PostgresServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    settings: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

/// The newest installed PostgreSQL's programs, `PG_BIN` first; `None` (with a message) when there
/// are none and they are not required.
///
/// # Panics
/// When they are missing under `CI` or `REQUIRE_POSTGRES`.
pub fn postgres_bin() -> Option<PathBuf> {
    let from_env = std::env::var_os("PG_BIN").map(PathBuf::from);
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|dir| {
            dir.filter_map(|entry| entry.ok())
                .filter_map(|entry| {
                    let version: u32 = entry.file_name().to_str()?.parse().ok()?;
                    Some((version, entry.path().join("bin")))
                })
                .max()
                .map(|(_, bin)| bin)
        });
    let found = from_env
        .or(installed)
        .filter(|bin| bin.join("postgres").exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("REQUIRE_POSTGRES").is_none(),
            "PostgreSQL is not installed (apt-get install postgresql, or set PG_BIN)"
        );
        eprintln!("SKIPPED: PostgreSQL is not installed (apt-get install postgresql)");
    }
    found
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Client authentication that trusts every role on loopback: for tests of the schema and the roles'
/// rights rather than of credentials.
pub const TRUST_LOOPBACK: &str = "host all all 127.0.0.1/32 trust";

impl PostgresServer {
    /// A new cluster in `dir` (which the server's user is given), its superuser `postgres`
    /// trusted on loopback, `hba` appended to its client authentication rules, TLS when given;
    /// started and accepting connections. `None` when PostgreSQL is not installed (see
    /// [`postgres_bin`]).
    pub fn start(dir: &Path, hba: &str, tls: Option<ServerTls>) -> Option<Self> {
        let bin = postgres_bin()?;
        let user = server_user();
        let data = dir.join("data");
        let log = dir.join("server.log");
        std::fs::create_dir_all(dir).unwrap();
        give(dir, user);
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null());
        as_user(&mut initdb, user);
        assert!(initdb.status().unwrap().success(), "initdb failed");
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\nhost all postgres 127.0.0.1/32 trust\n{hba}\n"),
        )
        .unwrap();
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_string(),
            format!("unix_socket_directories={}", dir.display()),
            "fsync=off".into(),
        ];
        if let Some(tls) = tls {
            for (source, name) in [
                (&tls.cert, "server.crt"),
                (&tls.key, "server.key"),
                (&tls.client_ca, "client-ca.crt"),
            ] {
                let copy = data.join(name);
                std::fs::copy(source, &copy).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
                give(&copy, user);
            }
            settings.extend([
                "ssl=on".into(),
                "ssl_cert_file=server.crt".into(),
                "ssl_key_file=server.key".into(),
                "ssl_ca_file=client-ca.crt".into(),
            ]);
        }
        give(&data, user);
        let mut server = PostgresServer {
            bin,
            data,
            port: free_port(),
            user,
            settings,
            child: None,
            log,
        };
        server.restart();
        Some(server)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's url (plain text on loopback).
    pub fn superuser_url(&self) -> String {
        self.role_url("postgres")
    }

    /// A role's url (plain text on loopback).
    pub fn role_url(&self, role: &str) -> String {
        format!(
            "postgresql://{role}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Stops the server the way a crash would (immediate shutdown: no checkpoint, every
    /// connection cut).
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its data and port, and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.crash();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        give(&self.log, self.user);
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()]);
        for setting in &self.settings {
            command.args(["-c", setting]);
        }
        command.stdout(log.try_clone().unwrap()).stderr(log);
        as_user(&mut command, self.user);
        self.child = Some(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.crash();
    }
}

/// The user the server runs as when the test runs as root: `postgres` if it exists, else `nobody`.
fn server_user() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
        != 0
    {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    ["postgres", "nobody"].iter().find_map(|name| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == *name)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    })
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

fn give(path: &Path, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}
