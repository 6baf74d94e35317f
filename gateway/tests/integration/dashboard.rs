//! The dashboard: `GET /dashboard` is one self-contained page (no other
//! host named), and headless Chromium rendering it against a gateway under
//! a steady load (valid, tampered and unknown-key requests, one poison
//! message) shows live rates, a worker online, recent failures and a
//! request's timeline; a screenshot of it is saved to docs/dashboard.png.
//! Real broker, real binaries, real browser (scripts/test.sh installs it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

/// The browser the test drives (Debian's package name).
const CHROMIUM: &str = "chromium";

/// Virtual time the page gets before Chromium dumps or shoots it: the
/// page's 1 s polling runs (virtual time waits for pending fetches).
const VIRTUAL_TIME_MS: u32 = 6000;

/// Requests posted by the background load, and its off switch.
#[derive(Default)]
struct Load {
    accepted: AtomicU64,
    stop: AtomicBool,
}

/// Posts about 25 requests a second until stopped: mostly valid, every
/// tenth tampered, every tenth for a key no worker has (a failure).
async fn drive(base: String, http: reqwest::Client, load: Arc<Load>) {
    let signer = Signer2048::new();
    let mut tick = tokio::time::interval(Duration::from_millis(40));
    let mut i = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        i += 1;
        let document = format!("dashboard load {i}");
        let body = match i % 10 {
            3 => body_for(&signer, &document, true),
            7 => json!({
                "text": document,
                "hexSignature": signer.sign_hex(document.as_bytes()),
                "keyId": "nobody",
            }),
            _ => body_for(&signer, &document, false),
        };
        let answer = http
            .post(format!("{base}/api/signature"))
            .json(&body)
            .send()
            .await;
        if answer.is_ok_and(|r| r.status() == 202) {
            load.accepted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Fails the test with how to get Chromium.
fn missing_chromium() -> ! {
    panic!(
        "`{CHROMIUM}` is not on PATH: run scripts/test.sh, which installs it \
         (Debian's `chromium` package), or `source scripts/lib.sh; ensure_chromium`"
    )
}

/// Checks Chromium is on PATH before anything is started.
fn require_chromium() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|dir| dir.join(CHROMIUM).is_file()) {
        missing_chromium();
    }
}

/// Runs Chromium headless with `args` then `url`, bounded; its stdout.
async fn chromium(profile: &Path, args: &[String], url: &str) -> String {
    let mut command = tokio::process::Command::new(CHROMIUM);
    command
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(60), command.output()).await {
        Err(_) => panic!("{CHROMIUM} did not finish within 60 s: {args:?} {url}"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => missing_chromium(),
        Ok(Err(e)) => panic!("cannot run {CHROMIUM}: {e}"),
        Ok(Ok(out)) => out,
    };
    assert!(
        out.status.success(),
        "{CHROMIUM} {args:?} {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The start tag of the first element whose tag begins with `start`.
fn tag<'a>(dom: &'a str, start: &str) -> Option<&'a str> {
    let at = dom.find(start)?;
    let end = dom[at..].find('>')?;
    Some(&dom[at..=at + end])
}

/// The text of the element with id `id` (up to its first child tag).
fn text_of<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let open = format!("id=\"{id}\"");
    let at = dom.find(&open)?;
    let from = at + dom[at..].find('>')? + 1;
    let to = from + dom[from..].find('<')?;
    Some(dom[from..to].trim())
}

fn number_of(dom: &str, id: &str) -> Option<f64> {
    text_of(dom, id)?.parse().ok()
}

/// What a dumped DOM shows, for the assertions and their messages.
#[derive(Debug)]
struct Shown {
    live: bool,
    accepted_rate: Option<f64>,
    completed_rate: Option<f64>,
    workers_online: Option<f64>,
    worker_rows: usize,
    online_rows: usize,
    failure_rows: usize,
    failed_rows: usize,
    dead_letter_rows: usize,
    timeline_steps: Vec<String>,
}

impl Shown {
    fn read(dom: &str) -> Self {
        let timeline = dom
            .find("id=\"timeline-steps\"")
            .map_or("", |at| &dom[at..]);
        Shown {
            live: tag(dom, "<body").is_some_and(|t| t.contains("data-live=\"1\"")),
            accepted_rate: number_of(dom, "accepted-rate"),
            completed_rate: number_of(dom, "completed-rate"),
            workers_online: number_of(dom, "workers-online"),
            worker_rows: dom.matches("class=\"worker-row\"").count(),
            online_rows: dom.matches("data-status=\"online\"").count(),
            failure_rows: dom.matches("class=\"failure-row\"").count(),
            failed_rows: dom.matches("data-type=\"failed\" data-id=").count(),
            dead_letter_rows: dom.matches("data-type=\"dead_lettered\" data-id=").count(),
            timeline_steps: timeline
                .split("class=\"step ")
                .skip(1)
                .filter_map(|s| {
                    let at = s.find("data-type=\"")? + "data-type=\"".len();
                    Some(s[at..at + s[at..].find('"')?].to_owned())
                })
                .collect(),
        }
    }

    fn complete(&self) -> bool {
        self.live
            && self.accepted_rate.is_some_and(|r| r > 0.0)
            && self.completed_rate.is_some_and(|r| r > 0.0)
            && self.workers_online.is_some_and(|n| n >= 1.0)
            && self.online_rows >= 1
            && self.failed_rows >= 1
            && self.dead_letter_rows >= 1
            && self.timeline_steps == ["accepted", "failed"]
    }
}

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png")
}

#[tokio::test]
async fn the_dashboard_shows_the_service_live_in_a_real_browser() {
    require_chromium();
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let (_worker, _) = env.ready_worker("worker", &[]).await;

    // Self-contained: HTML, nothing from another host.
    let page = gw
        .http
        .get(format!("{}/dashboard", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let content_type = page.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text().await.unwrap();
    for other_host in ["http://", "https://", "src=\"//", "href=\"//"] {
        assert!(!html.contains(other_host), "the page names {other_host}…");
    }

    let load = Arc::new(Load::default());
    let driver = tokio::spawn(drive(gw.base.clone(), gw.http.clone(), load.clone()));

    // A request whose timeline the page opens (/dashboard#<id>): failed.
    let signer = Signer2048::new();
    let unknown_key = gw
        .submit(&json!({
            "text": "for the timeline",
            "hexSignature": signer.sign_hex(b"for the timeline"),
            "keyId": "nobody",
        }))
        .await;
    let result = gw.result(&unknown_key, Duration::from_secs(20)).await;
    assert_eq!(result["error"]["code"], "unknown_key", "{result}");
    // A poison item with an id: failed and dead-lettered.
    let poison = uuid::Uuid::now_v7().to_string();
    let item = wire_request(&poison, "poison", "not hex", now_ms());
    env.publish_raw(&serde_json::to_vec(&[item]).unwrap()).await;
    // Everything the page must show is in the API first (a worker announces
    // itself on its first heartbeat with its results link up: up to 5 s).
    wait_for(
        "load, worker and dead letter in the API",
        Duration::from_secs(30),
        || async {
            let (_, _, stats) = gw.get("/api/stats").await;
            let (_, _, workers) = gw.get("/api/workers").await;
            let (_, _, failures) = gw.get("/api/failures").await;
            let listed = |body: &Value, key: &str, field: &str, value: &str| {
                body[key]
                    .as_array()
                    .is_some_and(|all| all.iter().any(|x| x[field] == value))
            };
            stats["completed"]["lastSecond"].as_f64() > Some(0.0)
                && listed(&workers, "workers", "status", "online")
                && listed(&failures, "failures", "type", "dead_lettered")
        },
    )
    .await;

    let url = format!("{}/dashboard#{unknown_key}", gw.base);
    let profile = env.dir.path().join("chromium-profile");
    let started = Instant::now();
    let mut shown;
    let mut dumps = 0;
    // Each dump is a fresh page given 6 s of virtual time; a dump taken
    // while (say) the last complete second had no completion is retried.
    loop {
        let dom = chromium(&profile, &["--dump-dom".to_owned()], &url).await;
        dumps += 1;
        shown = Shown::read(&dom);
        if shown.complete() {
            break;
        }
        eprintln!("dump {dumps} incomplete: {shown:?}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after {dumps} dumps in {:?} the dashboard does not show everything: {shown:?}\n{dom}",
            started.elapsed()
        );
    }
    eprintln!(
        "dashboard complete after {dumps} dump(s) in {:?}: {shown:?}",
        started.elapsed()
    );
    assert_eq!(shown.worker_rows, 1, "{shown:?}");
    assert!(shown.failure_rows >= 2, "{shown:?}");

    let path = screenshot_path();
    let shooting = Instant::now();
    chromium(
        &profile,
        &[
            "--hide-scrollbars".to_owned(),
            "--window-size=1400,1000".to_owned(),
            format!("--screenshot={}", path.display()),
        ],
        &url,
    )
    .await;
    eprintln!("screenshot {} in {:?}", path.display(), shooting.elapsed());
    load.stop.store(true, Ordering::Relaxed);
    driver.await.unwrap();
    assert!(load.accepted.load(Ordering::Relaxed) > 0);

    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let size = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert_eq!((size(16), size(20)), (1400, 1000));
    assert!(
        (30_000..5_000_000).contains(&png.len()),
        "{} bytes: blank or broken",
        png.len()
    );
}
