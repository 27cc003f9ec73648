//! A throwaway `redis-server` for tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child process on a free port, without persistence,
/// killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one and waits until it answers. Panics with a clear message
    /// if `redis-server` is not installed. The port is picked free, then
    /// given to the child: if something else took it in between, another
    /// port is tried.
    pub fn start() -> Self {
        for _ in 0..20 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            if let Some(server) = Self::try_start_on(port) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 20 free ports");
    }

    /// Starts one on `port` (to restart a server a client knows).
    pub fn start_on(port: u16) -> Self {
        Self::try_start_on(port)
            .unwrap_or_else(|| panic!("redis-server could not listen on port {port}: taken"))
    }

    /// A child on `port` once it answers there; `None` when the port
    /// belongs to another process (the child exits, or another server
    /// answers).
    fn try_start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `redis-server` ({e}): the lb-redis tests need it on PATH; \
                     install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: \
                     `brew install redis`); CI installs it"
                )
            });
        let mut server = RedisServer { child, port };
        // Up to 10 s, without reading a clock.
        for _ in 0..500 {
            if let Ok(Some(_)) = server.child.try_wait() {
                return None; // it could not listen: the port is taken
            }
            if let Some(info) = info(port, "server") {
                // Ours, or a server that held the port before ours could bind it.
                let ours = field(&info, "process_id") == Some(u64::from(server.child.id()));
                return ours.then_some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not answer within 10 s");
    }

    /// Starts one that speaks only TLS, with a fresh self-signed
    /// certificate for `127.0.0.1` written under `dir`; clients need no
    /// certificate of their own.
    pub fn start_tls(dir: &std::path::Path) -> Self {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
        std::fs::create_dir_all(dir).expect("a directory for the certificate");
        let (cert, pem_key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, key.cert.pem()).expect("write the certificate");
        std::fs::write(&pem_key, key.signing_key.serialize_pem()).expect("write the key");
        for _ in 0..20 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&pem_key)
                .args(["--tls-auth-clients", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on PATH (with TLS support, as Debian builds it)");
            for _ in 0..500 {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return RedisServer { child, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server with TLS did not start on any of 20 free ports");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// How many scripts (`EVALSHA`) the server on `port` has run: a
/// fire-and-forget update (a script) has landed once this count moves.
pub fn scripts_run(port: u16) -> u64 {
    let stats = info(port, "commandstats").expect("redis-server answers INFO");
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The reply to `INFO section` of the server on `port`, if one answers.
fn info(port: u16, section: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("INFO {section}\r\n").as_bytes())
        .ok()?;
    // A bulk string: `$<length>\r\n<text>\r\n`.
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        let (len, rest) = text.strip_prefix('$')?.split_once("\r\n")?;
        let len: usize = len.parse().ok()?;
        if rest.len() >= len {
            return Some(rest[..len].to_owned());
        }
    }
}

/// The number after `name:` on a line of `text`.
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
