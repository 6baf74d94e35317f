//! What the gateway's process sets up for itself before it serves.

use crate::common::{Proc, TestEnv};

/// A line of the process's `/proc/<pid>/status`, e.g. `THP_enabled`.
fn status_field(proc: &Proc, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.child.id())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in the status of {}", proc.name))
        .trim()
        .to_owned()
}

/// Transparent huge pages are off in a gateway (the store's growth then
/// takes no compaction stalls, src/huge_pages.rs), unless the operator
/// sets mimalloc's own `MIMALLOC_ALLOW_THP`.
#[tokio::test]
async fn a_gateway_turns_huge_pages_off_unless_mimalloc_allow_thp_is_set() {
    let env = TestEnv::new();
    let default = env.gateway(&[]).await;
    let allowed = env.gateway(&[("MIMALLOC_ALLOW_THP", "1".into())]).await;
    assert_eq!(status_field(&default.proc, "THP_enabled"), "0");
    assert_eq!(status_field(&allowed.proc, "THP_enabled"), "1");
}

/// CPU ticks (user and system) each thread of the process has used, by
/// thread id (`/proc/<pid>/task/<tid>/stat`).
fn thread_ticks(proc: &Proc) -> std::collections::HashMap<u32, u64> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", proc.child.id())).unwrap();
    tasks
        .map(|task| {
            let task = task.unwrap();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
            // Fields after the command's closing parenthesis: utime and
            // stime are the 12th and 13th.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
            (task.file_name().to_str().unwrap().parse().unwrap(), ticks)
        })
        .collect()
}

/// The share of its CPU the process's main thread used while `gateway`
/// answered requests on a handful of connections, until the process had
/// used half a second of CPU (at most 60 s).
async fn main_thread_share_serving(gateway: &crate::common::Gateway) -> f64 {
    let before = thread_ticks(&gateway.proc);
    // Threads started since count from zero.
    let used = |tid: &u32, ticks: &u64| ticks - before.get(tid).unwrap_or(&0);
    let url = format!("{}/api/workers", gateway.base);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answers = futures_util::future::join_all((0..8).map(|_| async {
            for _ in 0..250 {
                let answer = gateway.http.get(&url).send().await.unwrap();
                assert_eq!(answer.status(), 200);
            }
        }));
        answers.await;
        let now = thread_ticks(&gateway.proc);
        let all: u64 = now.iter().map(|(tid, ticks)| used(tid, ticks)).sum();
        if all >= 50 {
            let main = gateway.proc.child.id();
            return used(&main, &now[&main]) as f64 / all as f64;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: only {all} ticks of CPU in 60 s",
            gateway.proc.name
        );
    }
}

/// With one runtime thread the gateway runs tokio's current-thread
/// scheduler: its main thread accepts connections and serves them (a
/// multi-thread runtime of one worker ran the accept loop on the main
/// thread and everything else on a worker, waking it for every
/// connection). With more, worker threads serve and the main thread
/// only accepts.
#[tokio::test]
async fn one_runtime_thread_serves_on_the_main_thread() {
    let env = TestEnv::new();
    let one = env.gateway(&[("GATEWAY_THREADS", "1".into())]).await;
    let two = env.gateway(&[("GATEWAY_THREADS", "2".into())]).await;
    let (one_share, two_share) = (
        main_thread_share_serving(&one).await,
        main_thread_share_serving(&two).await,
    );
    assert!(
        one_share > 0.7,
        "one thread: the main thread used {one_share:.2} of the CPU"
    );
    assert!(
        two_share < 0.3,
        "two threads: the main thread used {two_share:.2} of the CPU"
    );
}

/// A gateway that cannot accept for a moment (stopped here; busy, or
/// waiting on a broker that stalls, in life) still takes the connections
/// that arrive meanwhile: the kernel completes their handshakes into the
/// listening socket's queue (`net.core.somaxconn`, 4096, not tokio's
/// 128), and each is served once the gateway runs again. With a short
/// queue the rest of the handshakes are dropped and retried a second
/// later.
#[tokio::test]
async fn connections_that_arrive_while_the_gateway_cannot_accept_are_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CONNECTIONS: usize = 500;
    let env = TestEnv::new();
    let gateway = env.gateway(&[]).await;
    let addr = gateway.base.trim_start_matches("http://").to_owned();
    gateway.proc.signal(nix::sys::signal::Signal::SIGSTOP);
    let connects = (0..CONNECTIONS).map(|_| {
        let addr = addr.clone();
        async move {
            tokio::time::timeout(
                std::time::Duration::from_secs(2),
                tokio::net::TcpStream::connect(addr),
            )
            .await
        }
    });
    let connected: Vec<_> = futures_util::future::join_all(connects)
        .await
        .into_iter()
        .filter_map(|c| c.ok().and_then(Result::ok))
        .collect();
    gateway.proc.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(
        connected.len(),
        CONNECTIONS,
        "connections set up while the gateway was stopped"
    );
    let answers = connected.into_iter().map(|mut stream| async move {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    });
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures_util::future::join_all(answers),
    )
    .await
    .expect("every connection answered within 20 s");
    let ok = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|a| a.starts_with(b"HTTP/1.1 200")))
        .count();
    assert_eq!(ok, CONNECTIONS, "connections answered 200");
}
