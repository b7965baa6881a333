use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use rekey_testkit::{free_port, DbKind, TestDb};

/// One installation: a database and a data directory, driven through the binary.
pub struct Install {
    pub db: TestDb,
    pub data_dir: tempfile::TempDir,
    pub extra_env: Vec<(String, String)>,
}

impl Install {
    pub async fn new(kind: DbKind) -> Self {
        Self {
            db: TestDb::new(kind),
            data_dir: tempfile::tempdir().unwrap(),
            extra_env: Vec::new(),
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REKEY_DATABASE_URL", self.db.url())
            .env("REKEY_DATA_DIR", self.data_dir.path())
            .env("REKEY_ARGON2__MEMORY_KIB", "256")
            .env("REKEY_ARGON2__ITERATIONS", "1")
            // Secrets must stay out of logs even at the most verbose level.
            .env("RUST_LOG", "trace,h2=info,hyper=info")
            .current_dir(self.data_dir.path());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn set_env(&mut self, key: &str, value: impl Into<String>) {
        self.extra_env.push((key.to_owned(), value.into()));
    }

    /// Runs a CLI command; panics with its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.command().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "rekey {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    pub fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8(self.run(args).stdout)
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn serve(&self) -> Server {
        self.serve_on(free_port())
    }

    /// Serves on `port`; links in messages point at this server unless the test configured
    /// `REKEY_PUBLIC_URL` itself.
    pub fn serve_on(&self, port: u16) -> Server {
        self.serve_at("127.0.0.1", port)
    }

    /// Serves on `ip:port` (e.g. `0.0.0.0`, every address); the test talks to it on loopback.
    pub fn serve_at(&self, ip: &str, port: u16) -> Server {
        let log = self.data_dir.path().join(format!("serve-{port}.log"));
        let mut command = self.command();
        if !self.extra_env.iter().any(|(k, _)| k == "REKEY_PUBLIC_URL") {
            command.env("REKEY_PUBLIC_URL", format!("http://127.0.0.1:{port}"));
        }
        let child = command
            .arg("serve")
            .env("REKEY_LISTEN", format!("{ip}:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_healthy();
        server
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    /// `rekey tenant add` → the tenant id.
    pub fn add_tenant(&self, name: &str, cname: &str) -> String {
        self.stdout(&["tenant", "add", "--name", name, "--cname", cname])
    }

    /// `rekey user add --tenant T --email E`, then `extra` (`--password`, names, …) → the
    /// user id.
    pub fn add_user(&self, tenant: &str, email: &str, extra: &[&str]) -> String {
        let mut args = vec!["user", "add", "--tenant", tenant, "--email", email];
        args.extend_from_slice(extra);
        self.stdout(&args)
    }

    /// A new tenant-admin token of `tenant`.
    pub fn admin_token(&self, tenant: &str) -> String {
        self.stdout(&[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            tenant,
        ])
    }

    /// Email through the plain SMTP server on `port`, with delivery timings short enough for
    /// tests; a later [`Self::set_env`] of the same key wins.
    pub fn with_smtp(&mut self, port: u16) {
        for (k, v) in [
            ("REKEY_SMTP__HOST", "127.0.0.1".to_owned()),
            ("REKEY_SMTP__PORT", port.to_string()),
            ("REKEY_SMTP__TLS", "none".to_owned()),
            ("REKEY_SMTP__FROM", "rekey@example.test".to_owned()),
            ("REKEY_SMTP__FROM_NAME", "Example Corp".to_owned()),
            ("REKEY_OUTBOX__POLL_MS", "50".to_owned()),
            ("REKEY_OUTBOX__BACKOFF_MS", "100".to_owned()),
            ("REKEY_OUTBOX__LEASE_MS", "1500".to_owned()),
            ("REKEY_UNAUTH_DEADLINE_MS", "100".to_owned()),
            ("REKEY_LIMITS__MESSAGES_PER_USER_PER_HOUR", "50".to_owned()),
        ] {
            self.set_env(k, v);
        }
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = self.base.trim_start_matches("http://").to_owned();
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not start: {}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// SIGTERM, then wait for a graceful exit; returns whether it exited successfully.
    pub fn stop(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.stderr());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return (false, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Server {
    /// `kill -9`: no shutdown, nothing flushed.
    pub fn kill9(mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP answer: status, `Retry-After`, the JSON body (`Null` when not JSON) and how long
/// the call took.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: serde_json::Value,
    pub took: Duration,
}

/// Every call of these tests is bounded: a server that hangs fails the test, never stalls it.
const CALL_BOUND: Duration = Duration::from_secs(15);

/// A JSON `POST`, with a bearer token when given.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> Answer {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    send(request).await
}

pub async fn get(client: &reqwest::Client, url: &str) -> Answer {
    send(client.get(url)).await
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let call = async {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let text = response.text().await.unwrap_or_default();
        (status, retry_after, text)
    };
    let (status, retry_after, text) = tokio::time::timeout(CALL_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("no answer within {CALL_BOUND:?}"));
    Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        took: started.elapsed(),
    }
}
