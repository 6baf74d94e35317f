//! The load loops: closed (N clients) and open (fixed arrival rate).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokio::sync::Mutex;

use crate::failure::Failure;
use crate::pool::{self, Case};
use crate::report::{Outcome, Setup, Stats};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Poll {
    /// `GET ?wait=S`: the gateway answers when the result lands.
    Long,
    /// Plain `GET` every `--poll-interval`.
    Plain,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Gateway base URLs; clients are spread over them round-robin.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    pub url: Vec<String>,
    /// API token sent as `Authorization: Bearer` (a gateway with
    /// API_TOKENS_FILE). scripts/load.sh passes run/secrets/api-token.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Closed loop: number of virtual clients.
    #[arg(long, short, default_value_t = 64)]
    pub concurrency: usize,
    /// Stop after this many requests (default 10000 unless --duration is given).
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Stop after this long (e.g. 30s).
    #[arg(long, short, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: start this many requests per second instead of closed-loop clients.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: requests in flight at most; a request due beyond that is
    /// counted as an error ("over max in-flight"), not silently delayed.
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// How results are fetched.
    #[arg(long, value_enum, default_value_t = Poll::Long)]
    pub poll: Poll,
    /// Plain polling interval.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Private key (PKCS#8 or PKCS#1 PEM) whose public key the workers hold.
    #[arg(long, default_value = "run/demo/private.pem")]
    pub key: PathBuf,
    /// keyId to send (default: none, the workers' default key).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Document size in bytes.
    #[arg(long, default_value_t = 2900)]
    pub doc_size: usize,
    /// Share of the pool tampered after signing.
    #[arg(long, default_value_t = 0.1)]
    pub tampered: f64,
    /// Documents in the pool.
    #[arg(long, default_value_t = 200)]
    pub pool: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

struct Shared {
    pool: Vec<Case>,
    http: reqwest::Client,
    urls: Vec<String>,
    poll: Poll,
    poll_interval: Duration,
    stats: Mutex<Stats>,
    progress: indicatif::ProgressBar,
}

/// The `Authorization` header every request carries, if a token is given.
fn auth_headers(token: Option<&str>) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| anyhow::anyhow!("the API token is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let pool = pool::build(
        &args.key,
        args.key_id.as_deref(),
        args.pool,
        args.doc_size,
        args.tampered,
    )?;
    let requests = match (args.requests, args.duration) {
        (None, None) => Some(10_000),
        (r, _) => r,
    };
    let progress = if args.quiet || args.json {
        indicatif::ProgressBar::hidden()
    } else {
        match requests {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        }
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let shared = Arc::new(Shared {
        pool,
        http: reqwest::Client::builder()
            .default_headers(auth_headers(args.token.as_deref())?)
            .pool_max_idle_per_host(args.concurrency.max(64) * 2)
            // The gateway closes a keep-alive connection idle for
            // HEADER_TIMEOUT (30 s by default); a connection reused just
            // as it closes fails the request. Idle ones are dropped first.
            .pool_idle_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?,
        urls: args.url.clone(),
        poll: args.poll,
        poll_interval: args.poll_interval,
        stats: Mutex::new(Stats::default()),
        progress: progress.clone(),
    });
    let deadline = args.duration.map(|d| Instant::now() + d);
    let started = Instant::now();
    match args.rate {
        None => closed_loop(&shared, args.concurrency, requests, deadline).await,
        Some(rate) => open_loop(&shared, rate, args.max_in_flight, requests, deadline).await,
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let stats = shared.stats.lock().await;
    let report = stats.report(
        elapsed,
        Setup {
            concurrency: args.concurrency,
            rate: args.rate,
            poll: format!("{:?}", args.poll).to_lowercase(),
            doc_size: args.doc_size,
        },
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    if report.errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// `concurrency` clients, each submitting its next request when the last is answered.
async fn closed_loop(
    shared: &Arc<Shared>,
    concurrency: usize,
    requests: Option<u64>,
    deadline: Option<Instant>,
) {
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..concurrency {
        let shared = shared.clone();
        let issued = issued.clone();
        clients.spawn(async move {
            loop {
                let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if requests.is_some_and(|max| n >= max)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    return;
                }
                one_request(&shared, (n as usize).wrapping_add(client), Instant::now()).await;
            }
        });
    }
    while clients.join_next().await.is_some() {}
}

/// Requests start on a fixed schedule whether or not earlier ones are done.
async fn open_loop(
    shared: &Arc<Shared>,
    rate: f64,
    max_in_flight: usize,
    requests: Option<u64>,
    deadline: Option<Instant>,
) {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut n: u64 = 0;
    loop {
        // Latency counts from when the request was due, not when it was sent.
        let due = start + interval.mul_f64(n as f64);
        if requests.is_some_and(|max| n >= max) || deadline.is_some_and(|d| due >= d) {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        n += 1;
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= max_in_flight {
            shared
                .stats
                .lock()
                .await
                .record(Outcome::Error(Failure::OverMaxInFlight));
            shared.progress.inc(1);
            continue;
        }
        let shared = shared.clone();
        in_flight.spawn(async move { one_request(&shared, (n - 1) as usize, due).await });
    }
    while in_flight.join_next().await.is_some() {}
}

/// POST, then GET until answered; records the outcome.
async fn one_request(shared: &Shared, n: usize, started: Instant) {
    let case = &shared.pool[n % shared.pool.len()];
    let base = &shared.urls[n % shared.urls.len()];
    let outcome = match submit_and_wait(shared, base, case, started).await {
        Ok((accept, total)) => Outcome::Ok { accept, total },
        Err(e) => Outcome::Error(e),
    };
    shared.stats.lock().await.record(outcome);
    shared.progress.inc(1);
}

async fn submit_and_wait(
    shared: &Shared,
    base: &str,
    case: &Case,
    started: Instant,
) -> Result<(Duration, Duration), Failure> {
    let post = shared
        .http
        .post(format!("{base}/api/signature"))
        .header("content-type", "application/json")
        .body(case.body.clone());
    let (status, body) = exchange(post, "POST").await?;
    if status != 202 {
        return Err(Failure::Refused {
            status,
            code: body["error"]["code"].clone(),
        });
    }
    let accept = started.elapsed();
    let id = body["id"].as_str().ok_or(Failure::NoId)?.to_owned();
    let url = match shared.poll {
        Poll::Long => format!("{base}/api/signature/{id}?wait=10"),
        Poll::Plain => format!("{base}/api/signature/{id}"),
    };
    loop {
        let (status, body) = exchange(shared.http.get(&url), "GET").await?;
        if status != 200 {
            return Err(Failure::Status {
                status,
                code: body["error"]["code"].clone(),
            });
        }
        match body["status"].as_str() {
            Some("pending") => {
                if started.elapsed() > Duration::from_secs(60) {
                    return Err(Failure::Pending);
                }
                if shared.poll == Poll::Plain {
                    tokio::time::sleep(shared.poll_interval).await;
                }
            }
            Some("completed") if body["valid"].as_bool() == Some(case.valid) => {
                return Ok((accept, started.elapsed()))
            }
            Some("completed") => {
                return Err(Failure::WrongVerdict {
                    got: body["valid"].clone(),
                    expected: case.valid,
                })
            }
            other => {
                return Err(Failure::Unexpected {
                    status: other.map(str::to_owned),
                    code: body["error"]["code"].clone(),
                })
            }
        }
    }
}

/// Sends a request and reads its JSON answer; errors name the method.
async fn exchange(
    request: reqwest::RequestBuilder,
    method: &'static str,
) -> Result<(u16, serde_json::Value), Failure> {
    let response = request.send().await.map_err(|e| Failure::Send {
        method,
        source: e.without_url(),
    })?;
    let status = response.status().as_u16();
    let body = response
        .json()
        .await
        .map_err(|source| Failure::Body { method, source })?;
    Ok((status, body))
}
