//! Test harness: real `gateway` and `verifier-worker` processes against the
//! real broker, each test on its own queue names (a fresh `REQUEST_QUEUE`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{json, Value};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The directory cargo put the binaries in (`target/<profile>`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (scripts/test.sh does `cargo build --workspace --bins --tests`)",
        path.display()
    );
    path
}

pub fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../verify-core/tests/vectors")
}

/// Signs with a committed test key (SHA256withRSA); `k2048` is the
/// workers' `default` key, `k4096` their `big` key.
pub struct Signer2048(SigningKey<sha2::Sha256>);

impl Signer2048 {
    pub fn new() -> Self {
        Self::with_key("k2048")
    }

    pub fn with_key(name: &str) -> Self {
        let der = std::fs::read(vectors().join(format!("private/{name}.pk8.der"))).unwrap();
        let key = rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap();
        Signer2048(SigningKey::new(key))
    }

    pub fn sign_hex(&self, document: &[u8]) -> String {
        hex::encode(self.0.sign(document).to_bytes())
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tests' HTTP client. A pooled connection idle for longer than the
/// gateway's `HEADER_TIMEOUT` has been closed by the gateway; if the test's
/// runtime was blocked meanwhile (a test signing a thousand bodies with a
/// 4096-bit key in pure Rust, beside the cluster test), the pool never saw
/// the close and handed the dead connection to the next POST, which failed with
/// `IncompleteMessage`. So connections idle for a second are not reused:
/// below every `HEADER_TIMEOUT` a test sets (2 s at least).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// One test's world: its queue names, key and docs dirs, processes.
pub struct TestEnv {
    pub queue: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// The broker this test's processes use.
    pub amqp_url: String,
}

impl TestEnv {
    pub fn new() -> Self {
        let queue = format!("test-{}", uuid::Uuid::new_v4().simple());
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::copy(vectors().join("keys/k2048.pem"), keys.join("default.pem")).unwrap();
        std::fs::copy(vectors().join("keys/other.pem"), keys.join("other.pem")).unwrap();
        std::fs::copy(vectors().join("keys/k4096.crt"), keys.join("big.crt")).unwrap();
        std::fs::create_dir(dir.path().join("docs")).unwrap();
        TestEnv {
            queue,
            dir,
            http: http_client(Duration::from_secs(60)),
            amqp_url: AMQP_URL.to_owned(),
        }
    }

    /// The same, against another broker (a private node).
    pub fn with_broker(amqp_url: String) -> Self {
        let mut env = TestEnv::new();
        env.amqp_url = amqp_url;
        env
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn docs_dir(&self) -> PathBuf {
        self.dir.path().join("docs")
    }

    fn spawn(&self, bin: &str, name: &str, env: &[(&str, String)]) -> Proc {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut command = Command::new(binary(bin));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("AMQP_URL", &self.amqp_url)
            .env("REQUEST_QUEUE", &self.queue)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            // An empty value means "leave this variable unset".
            if v.is_empty() {
                command.env_remove(k);
            } else {
                command.env(k, v);
            }
        }
        Proc {
            child: command.spawn().unwrap(),
            name: name.to_owned(),
        }
    }

    /// Starts a gateway and waits until it is ready.
    pub async fn gateway(&self, env: &[(&str, String)]) -> Gateway {
        let gateway = self.gateway_unready(env);
        gateway.wait_ready(Duration::from_secs(30)).await;
        gateway
    }

    /// Starts a gateway without waiting for readiness.
    pub fn gateway_unready(&self, env: &[(&str, String)]) -> Gateway {
        let port = free_port();
        let mut all = vec![
            ("GATEWAY_ADDR", format!("127.0.0.1:{port}")),
            ("DOCS_DIR", self.docs_dir().display().to_string()),
        ];
        all.extend(env.iter().cloned());
        let proc = self.spawn("gateway", &format!("gateway-{port}"), &all);
        Gateway {
            proc,
            base: format!("http://127.0.0.1:{port}"),
            http: self.http.clone(),
        }
    }

    pub fn worker(&self, name: &str, env: &[(&str, String)]) -> Proc {
        let mut all = vec![("VERIFIER_KEYS_DIR", self.keys_dir().display().to_string())];
        all.extend(env.iter().cloned());
        self.spawn("verifier-worker", name, &all)
    }

    /// The body of a GET on any URL (a worker's /metrics, say).
    pub async fn fetch_text(&self, url: &str) -> String {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A worker serving /readyz and /metrics; its HTTP port.
    pub fn worker_with_http(&self, name: &str) -> (Proc, u16) {
        self.worker_with_http_env(name, &[])
    }

    /// The same, with more variables.
    pub fn worker_with_http_env(&self, name: &str, env: &[(&str, String)]) -> (Proc, u16) {
        let port = free_port();
        let mut all = vec![("WORKER_HTTP_ADDR", format!("127.0.0.1:{port}"))];
        all.extend(env.iter().cloned());
        (self.worker(name, &all), port)
    }

    /// The same, once its /readyz answers 200.
    pub async fn ready_worker(&self, name: &str, env: &[(&str, String)]) -> (Proc, u16) {
        let (worker, port) = self.worker_with_http_env(name, env);
        let readyz = format!("http://127.0.0.1:{port}/readyz");
        wait_status(&self.http, &readyz, 200, Duration::from_secs(20)).await;
        (worker, port)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Asserts that what `name` logged after its first `from` bytes holds
    /// no ERROR line (a clean stop is not an error).
    pub fn assert_no_errors_since(&self, name: &str, from: usize) {
        let log = self.log(name);
        let errors: Vec<&str> = log
            .get(from..)
            .unwrap_or(&log)
            .lines()
            .filter(|line| line.contains("ERROR"))
            .collect();
        assert!(errors.is_empty(), "{name} logged errors: {errors:#?}");
    }

    /// Publishes raw bytes to this test's request queue (to inject poison).
    pub async fn publish_raw(&self, body: &[u8]) {
        let properties = BasicProperties::default().with_delivery_mode(2);
        publish_to(&self.amqp_url, &self.queue, body, properties)
            .await
            .unwrap();
    }

    /// A connection to this test's broker (the first node that answers).
    pub async fn connect(&self) -> Connection {
        for url in self.amqp_url.split(',') {
            if let Ok(conn) = Connection::connect(url, ConnectionProperties::default()).await {
                return conn;
            }
        }
        panic!("no broker answers at {}", self.amqp_url);
    }

    /// A consumer of this test's events stream from its first message, on a
    /// connection of its own (close it when done).
    async fn read_stream(&self, tag: &str) -> (Connection, lapin::Consumer) {
        let conn = self.connect().await;
        let channel = conn.create_channel().await.unwrap();
        channel
            .basic_qos(1000, lapin::options::BasicQosOptions::default())
            .await
            .unwrap();
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-stream-offset"),
            AMQPValue::LongString(LongString::from("first")),
        );
        let consumer = channel
            .basic_consume(
                format!("{}.events", self.queue).as_str().into(),
                tag.into(),
                lapin::options::BasicConsumeOptions::default(),
                args,
            )
            .await
            .unwrap();
        (conn, consumer)
    }

    /// Reads this test's whole events stream (until it has been quiet for
    /// 3 s) and returns, for each of `ids`, what the stream holds of it:
    /// "offset type by" per event. Says, when a gateway does not know an
    /// id, whether the broker lost its events or the gateway skipped them.
    pub async fn stream_events(&self, ids: &[String]) -> HashMap<String, Vec<String>> {
        use futures_util::StreamExt;
        let (conn, mut consumer) = self.read_stream("diagnosis").await;
        let mut found: HashMap<String, Vec<String>> =
            ids.iter().map(|id| (id.clone(), Vec::new())).collect();
        let mut read = 0u64;
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(3), consumer.next()).await
        {
            read += 1;
            let offset = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-stream-offset").cloned());
            // A message is an array of events, or one event alone.
            let encoding = delivery.properties.content_encoding().clone();
            let body = verify_core::encoding::decode(
                encoding.as_ref().map(|e| e.as_str()),
                &delivery.data,
            )
            .map(|body| body.into_owned())
            .unwrap_or_default();
            let events = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(events)) => events,
                Ok(event) => vec![event],
                Err(_) => Vec::new(),
            };
            {
                for event in events {
                    if let Some(seen) = event["id"].as_str().and_then(|id| found.get_mut(id)) {
                        let kind = match &event["kind"] {
                            Value::Object(kind) => kind.keys().next().cloned().unwrap_or_default(),
                            other => other.to_string(),
                        };
                        seen.push(format!("{offset:?} {kind} {}", event["source"]));
                    }
                }
            }
            let _ = delivery
                .acker
                .ack(lapin::options::BasicAckOptions::default())
                .await;
        }
        eprintln!("read {read} messages of the events stream");
        let _ = conn.close(200, "done".into()).await;
        found
    }

    /// The `content-encoding` of every message of this test's events stream
    /// (read until it has been quiet for 2 s), in stream order.
    pub async fn stream_encodings(&self) -> Vec<Option<String>> {
        use futures_util::StreamExt;
        let (conn, mut consumer) = self.read_stream("encodings").await;
        let mut encodings = Vec::new();
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
        {
            let encoding = delivery.properties.content_encoding().clone();
            encodings.push(encoding.map(|e| e.as_str().to_owned()));
            let _ = delivery
                .acker
                .ack(lapin::options::BasicAckOptions::default())
                .await;
        }
        let _ = conn.close(200, "done".into()).await;
        encodings
    }

    /// Deletes a queue of this test (to make publishing to it fail).
    pub async fn delete_queue(&self, queue: &str) {
        let conn = self.connect().await;
        let channel = conn.create_channel().await.unwrap();
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        let _ = conn.close(200, "done".into()).await;
    }

    /// A worker's `/metrics` page (a worker started with an HTTP port).
    pub async fn worker_metrics(&self, port: u16) -> String {
        self.fetch_text(&format!("http://127.0.0.1:{port}/metrics"))
            .await
    }

    /// Waits (bounded) for `n` dead letters, then reads them all.
    pub async fn wait_dead_letters(&self, n: u32) -> Vec<(FieldTable, Vec<u8>)> {
        let dead = format!("{}.dead", self.queue);
        wait_for(
            &format!("{n} dead letters"),
            Duration::from_secs(30),
            || async { self.queue_depth(&dead).await >= n },
        )
        .await;
        self.dead_letters().await
    }

    /// Messages waiting in this test's dead-letter queue: headers and body,
    /// the body decoded by its `content-encoding` when it has one that
    /// decodes (a compressed request the broker dead-lettered), as it came
    /// otherwise. They are read without being acked, so they stay in the
    /// queue.
    pub async fn dead_letters(&self) -> Vec<(FieldTable, Vec<u8>)> {
        self.queued(&format!("{}.dead", self.queue)).await
    }

    /// The messages `queue` holds (headers, body decoded by its
    /// `content-encoding`), read as [`TestEnv::dead_letters`] reads its own:
    /// they stay in the queue.
    pub async fn queued(&self, queue: &str) -> Vec<(FieldTable, Vec<u8>)> {
        let conn = self.connect().await;
        let channel = conn.create_channel().await.unwrap();
        let mut found = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            let headers = message.properties.headers().clone().unwrap_or_default();
            let encoding = message.properties.content_encoding().clone();
            let body =
                verify_core::encoding::decode(encoding.as_ref().map(|e| e.as_str()), &message.data)
                    .map_or_else(|_| message.data.clone(), |body| body.into_owned());
            found.push((headers, body));
        }
        // Closing the channel returns every unacked message to the queue.
        let _ = conn.close(200, "done".into()).await;
        found
    }

    /// Messages of `queue` ready and delivered-but-unacknowledged, and its
    /// consumers, as the shared broker counts them (`rabbitmqctl list_queues`).
    pub fn queue_counts(&self, queue: &str) -> (u64, u64, u64) {
        let listing = run(
            "rabbitmqctl",
            &[
                "-q",
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
            ],
            &[],
        );
        let counts: Vec<u64> = listing
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|fields| fields.len() == 4 && fields[0] == queue)
            .map(|fields| {
                fields[1..]
                    .iter()
                    .filter_map(|n| n.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        match counts[..] {
            [ready, unacked, consumers] => (ready, unacked, consumers),
            _ => panic!("{queue} not listed with its counts:\n{listing}"),
        }
    }

    /// Number of messages ready in a queue of this test.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = self.connect().await;
        let channel = conn.create_channel().await.unwrap();
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "done".into()).await;
        q.message_count()
    }
}

impl Drop for TestEnv {
    /// Deletes this test's queues so the shared broker does not fill up;
    /// a failing test keeps its directory (the processes' logs).
    fn drop(&mut self) {
        keep_if_failing(&mut self.dir, "test directory");
        let queue = self.queue.clone();
        let cleanup = async move {
            let Ok(conn) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await
            else {
                return;
            };
            for name in [
                queue.clone(),
                format!("{queue}.dead"),
                format!("{queue}.events"),
            ] {
                if let Ok(channel) = conn.create_channel().await {
                    let _ = channel
                        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
            }
            let _ = conn.close(200, "done".into()).await;
        };
        // Drop may run inside or outside a runtime: use a private one on a thread.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(cleanup))
        })
        .join();
    }
}

pub struct Gateway {
    pub proc: Proc,
    pub base: String,
    pub http: reqwest::Client,
}

impl Gateway {
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "gateway {} not ready in {timeout:?}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn post_json(&self, body: &Value) -> (u16, HashMap<String, String>, Value) {
        let r = self
            .http
            .post(format!("{}/api/signature", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        response(r).await
    }

    pub async fn post_raw(
        &self,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, HashMap<String, String>, Value) {
        let mut request = self
            .http
            .post(format!("{}/api/signature", self.base))
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        response(request.send().await.unwrap()).await
    }

    async fn send_get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.get(url).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, HashMap<String, String>, Value) {
        response(self.send_get(path).await).await
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.send_get(path).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Submits and returns the id (asserting 202).
    pub async fn submit(&self, body: &Value) -> String {
        let (status, _, json) = self.post_json(body).await;
        assert_eq!(status, 202, "{json}");
        json["id"].as_str().unwrap().to_owned()
    }

    /// Long-polls until the id leaves `pending` (bounded by `timeout`).
    pub async fn result(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, _, json) = self.get(&format!("/api/signature/{id}?wait=5")).await;
            if status == 200 && json["status"] != "pending" {
                return json;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {status} {json} after {timeout:?}"
            );
        }
    }
}

async fn response(r: reqwest::Response) -> (u16, HashMap<String, String>, Value) {
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, json)
}

/// Submits many requests, `concurrency` at a time; their ids in order.
pub async fn submit_all(gw: &Gateway, bodies: &[Value], concurrency: usize) -> Vec<String> {
    use futures_util::StreamExt;
    futures_util::stream::iter(bodies.iter().map(|b| gw.submit(b)))
        .buffered(concurrency)
        .collect()
        .await
}

/// Reads one counter (summed over its label sets) from a Prometheus page.
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A request body for `document`, valid or tampered.
pub fn body_for(signer: &Signer2048, document: &str, tampered: bool) -> Value {
    let signature = signer.sign_hex(document.as_bytes());
    let text = if tampered {
        format!("{document}!")
    } else {
        document.to_owned()
    };
    json!({ "text": text, "hexSignature": signature })
}

/// A private RabbitMQ node (scripts/rabbit-node.sh) this test may stop and
/// start; stopped when dropped. The shared broker is never touched.
pub struct PrivateBroker {
    pub name: String,
    pub port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
    /// Lines for the node's rabbitmq.conf.
    extra_conf: String,
}

impl PrivateBroker {
    pub fn start() -> Self {
        Self::start_with_conf("")
    }

    /// A node with `extra_conf` appended to its rabbitmq.conf.
    pub fn start_with_conf(extra_conf: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), extra_conf)
    }

    /// A node whose data lives in `dir` (which may already hold files its
    /// configuration names, certificates say: the node's user gets them).
    pub fn start_in(dir: tempfile::TempDir, extra_conf: &str) -> Self {
        let broker = PrivateBroker {
            name: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            port: free_port(),
            dist_port: free_port(),
            dir,
            extra_conf: extra_conf.to_owned(),
        };
        broker.up();
        broker
    }

    /// Runs `rabbitmqctl` against this node; its output.
    pub fn ctl(&self, args: &[&str]) -> String {
        let node = format!("{}@localhost", self.name);
        let mut all = vec!["-n", node.as_str()];
        all.extend_from_slice(args);
        run("rabbitmqctl", &all, &[])
    }

    fn script(&self, args: &[&str]) {
        let dist_port = self.dist_port.to_string();
        let vars = [
            ("RABBIT_NODE_DIR", self.dir.path().to_str().unwrap()),
            ("RABBIT_EXTRA_CONF", self.extra_conf.as_str()),
            ("RABBIT_DIST_PORT", dist_port.as_str()),
        ];
        run_script("rabbit-node.sh", args, &vars);
    }

    pub fn up(&self) {
        self.script(&["start", &self.name, &self.port.to_string()]);
    }

    pub fn down(&self) {
        self.script(&["stop", &self.name]);
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.down();
    }
}

/// Waits until `url` answers `status` (bounded); how long that took.
pub async fn wait_status(
    http: &reqwest::Client,
    url: &str,
    status: u16,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = http.get(url).send().await.map(|r| r.status().as_u16()).ok();
        if got == Some(status) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{url} not {status} within {timeout:?} (last {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `body` to `queue` (default exchange) over `url`, confirmed;
/// `Err` with the broker's words if it refused it (a nack, a closed channel).
pub async fn publish_to(
    url: &str,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?
            .await?;
        lapin::Result::Ok(confirm)
    }
    .await;
    let _ = conn.close(200, "done".into()).await;
    match result {
        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Message headers from `(name, value)` pairs (strings or numbers).
pub fn headers(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in entries {
        table.insert(ShortString::from(*k), v.clone());
    }
    table
}

/// A header's text, if it is a string.
pub fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

pub fn text_header(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// A request as a gateway puts it on the wire (for tests that inject
/// requests the way a gateway would, with an id they know in advance).
pub fn wire_request(id: &str, document: &str, hex_signature: &str, submitted_at_ms: u64) -> Value {
    json!({
        "v": 1,
        "id": id,
        "documentText": document,
        "signature": hex_signature,
        "algorithm": "SHA256withRSA",
        "keyId": null,
        "submittedAtMs": submitted_at_ms,
    })
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits (bounded) until `check` holds; panics with `what` otherwise.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A broker user of the shared broker for one test (created with
/// rabbitmqctl, full permissions on `/`), deleted when dropped.
pub struct BrokerUser {
    pub name: String,
    pub password: String,
}

/// Runs `program` (asserting it succeeds); its standard output, trimmed.
pub fn run(program: &str, args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `scripts/<name>` of this project with bash; its standard output.
pub fn run_script(name: &str, args: &[&str], vars: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name);
    let mut all = vec![path.to_str().unwrap()];
    all.extend_from_slice(args);
    run("bash", &all, vars)
}

fn rabbitmqctl(args: &[&str]) {
    run("rabbitmqctl", args, &[]);
}

impl BrokerUser {
    pub fn create(role: &str) -> Self {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let user = BrokerUser {
            name: format!("test-{role}-{suffix}"),
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        rabbitmqctl(&["add_user", &user.name, &user.password]);
        rabbitmqctl(&["set_permissions", "-p", "/", &user.name, ".*", ".*", ".*"]);
        user
    }

    /// An AMQP URL for this user on the shared broker.
    pub fn url(&self) -> String {
        format!("amqp://{}:{}@127.0.0.1:5672/%2f", self.name, self.password)
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.name])
            .output();
    }
}

/// When the test is failing, keeps `dir` and says where it is.
fn keep_if_failing(dir: &mut tempfile::TempDir, what: &str) {
    if std::thread::panicking() {
        dir.disable_cleanup(true);
        eprintln!("kept the {what}: {}", dir.path().display());
    }
}

/// A three-node cluster of private RabbitMQ nodes (scripts/cluster.sh),
/// stopped when dropped. The shared broker is never touched.
pub struct Cluster {
    name: String,
    base_port: u16,
    dir: tempfile::TempDir,
}

/// Three consecutive free ports (and their distribution ports, +20000).
fn free_port_run() -> u16 {
    loop {
        let base = 30_000 + (rand::random::<u16>() % 9_000);
        let free = (0..3).all(|i| {
            std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + i + 20_000)).is_ok()
        });
        if free {
            return base;
        }
    }
}

impl Cluster {
    pub fn start() -> Self {
        let cluster = Cluster {
            name: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            base_port: free_port_run(),
            dir: tempfile::tempdir().unwrap(),
        };
        cluster.script(&["up"]);
        cluster
    }

    /// Runs scripts/cluster.sh for this cluster; its standard output.
    pub fn script(&self, args: &[&str]) -> String {
        let port = self.base_port.to_string();
        let vars = [
            ("CLUSTER_NAME", self.name.as_str()),
            ("CLUSTER_PORT", port.as_str()),
            ("CLUSTER_DIR", self.dir.path().to_str().unwrap()),
        ];
        run_script("cluster.sh", args, &vars)
    }

    /// Every node's URL, comma-separated (an `AMQP_URL`).
    pub fn url(&self) -> String {
        self.script(&["url"])
    }

    /// The node (1 to 3) leading quorum queue `queue`.
    pub fn leader(&self, queue: &str) -> u8 {
        self.script(&["leader", queue]).parse().unwrap()
    }

    pub fn kill(&self, node: u8) {
        self.script(&["kill", &node.to_string()]);
    }

    pub fn start_node(&self, node: u8) {
        self.script(&["start", &node.to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        keep_if_failing(&mut self.dir, "cluster directory (node logs)");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.script(&["down"])));
    }
}

/// A certificate authority made for one test, and the certificates it
/// signs (ECDSA P-256, PEM).
pub struct TestCa {
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate with its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) named `common_name`.
    pub fn issue(&self, common_name: &str, names: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// One HTTP/1.1 request over TLS to `127.0.0.1:port`, trusting only
/// `ca_pem` and checking the certificate against `server_name`:
/// `Ok((status, body))`, or the error that ended the connection (a failed
/// handshake, say). The request is sent with `connection: close`.
pub async fn https_request(
    port: u16,
    server_name: &str,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {server_name}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut answer))
        .await
        .map_err(|_| "no whole answer within 30 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {answer}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head}"))?;
    let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    Ok((status, json))
}

/// An error body names its code and says a few stable words: nothing of
/// the broker's or the OS's own error text, no address, no path.
pub fn assert_no_internals(json: &Value) {
    let text = json.to_string();
    for inside in [
        "IO error",
        "os error",
        "protocol error",
        "AMQP",
        "amqp",
        "lapin",
        "refused",
        "127.0.0.1",
        "/tmp/",
        "/run/",
    ] {
        assert!(
            !text.contains(inside),
            "the answer shows internal text {inside:?}: {text}"
        );
    }
}
