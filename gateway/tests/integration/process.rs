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
fn thread_ticks(proc: &Proc) -> Vec<(u32, u64)> {
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
    let used = |tid: u32, now: &[(u32, u64)]| {
        let was = before
            .iter()
            .find(|(t, _)| *t == tid)
            .map_or(0, |(_, ticks)| *ticks);
        now.iter()
            .find(|(t, _)| *t == tid)
            .map_or(0, |(_, ticks)| *ticks)
            - was
    };
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
        let all: u64 = now.iter().map(|(tid, _)| used(*tid, &now)).sum();
        if all >= 50 {
            return used(gateway.proc.child.id(), &now) as f64 / all as f64;
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
