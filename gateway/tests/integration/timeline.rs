//! `scripts/timeline.py`, the open-loop timeline (scripts/tail-timeline.sh):
//! beside each slow span it prints what the gateway did with requests then,
//! read from the gateway's own `/metrics` (the `202`s it sent, the POSTs
//! awaiting the broker's confirm, the request batches confirmed and how long
//! they took, the verdicts it applied). Against a real gateway and worker,
//! so that a renamed series or a changed page leaves the test failing rather
//! than the line silently gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{body_for, submit_all, wait_for, Proc, Signer2048, TestEnv};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/timeline.py")
}

/// The samples' times and gateway figures (`name=value`), in order.
fn gateway_samples(samples: &Path) -> Vec<(f64, Vec<(String, f64)>)> {
    std::fs::read_to_string(samples)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            let figures: Vec<(String, f64)> = fields
                .get(8)?
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect();
            (!figures.is_empty()).then(|| (fields[0].parse().unwrap(), figures))
        })
        .collect()
}

fn figure(figures: &[(String, f64)], name: &str) -> Option<f64> {
    figures.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

#[tokio::test]
async fn the_timeline_shows_what_the_gateway_did_beside_a_slow_span() {
    let env = TestEnv::new();
    let gw = env.gateway(&[]).await;
    let _worker = env.ready_worker("timeline-worker", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples");
    // Killed when dropped, also when an assertion fails first; its output
    // goes nowhere: a sampler left running would hold the harness's pipes.
    let mut sampler = Proc {
        name: "timeline sampler".into(),
        child: std::process::Command::new("python3")
            .arg(script())
            .arg("sample")
            .arg(&samples)
            .env("TIMELINE_GATEWAY", gw.base.trim_start_matches("http://"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs scripts/timeline.py"),
    };

    // The gateway answers the sampler before any request comes.
    wait_for(
        "a sample of the gateway's figures",
        Duration::from_secs(10),
        || {
            let samples = samples.clone();
            async move { !gateway_samples(&samples).is_empty() }
        },
    )
    .await;
    let signer = Signer2048::new();
    let bodies: Vec<_> = (0..40)
        .map(|i| body_for(&signer, &format!("timeline document {i}"), i % 4 == 0))
        .collect();
    // In rounds, each answered before the next: the requests are spread
    // over several samples.
    for round in bodies.chunks(5) {
        for id in submit_all(&gw, round, 5).await {
            gw.result(&id, Duration::from_secs(20)).await;
        }
    }
    // Sampled after the last verdict: 40 accepted and 40 applied.
    wait_for(
        "the figures after the requests",
        Duration::from_secs(10),
        || {
            let samples = samples.clone();
            async move {
                gateway_samples(&samples).last().is_some_and(|(_, f)| {
                    figure(f, "accepted") == Some(40.0)
                        && figure(f, "valid").unwrap_or(0.0) + figure(f, "invalid").unwrap_or(0.0)
                            == 40.0
                })
            }
        },
    )
    .await;
    sampler.kill();

    let sampled = gateway_samples(&samples);
    let last = &sampled.last().unwrap().1;
    for name in [
        "accepted",
        "submitting",
        "confirms",
        "confirm_s",
        "valid",
        "invalid",
    ] {
        assert!(figure(last, name).is_some(), "{name} not sampled: {last:?}");
    }
    assert!(figure(last, "confirms").unwrap() >= 1.0, "{last:?}");
    // A slow request whose span (its start and the 300 ms after) holds two
    // samples between which requests were answered: the dump's start is put
    // just before the first of them.
    let accepted = |f: &[(String, f64)]| figure(f, "accepted").unwrap_or(0.0);
    let pair = sampled
        .windows(2)
        .find(|w| accepted(&w[1].1) > accepted(&w[0].1) && w[1].0 - w[0].0 < 0.29)
        .unwrap_or_else(|| {
            panic!("no two samples under 290 ms apart with 202s between: {sampled:?}")
        });
    let dump = dir.path().join("dump");
    std::fs::write(
        &dump,
        format!(
            "# start_epoch_us {}\n0 45000 60000\n",
            ((pair[0].0 - 0.005) * 1e6) as u64
        ),
    )
    .unwrap();
    let report = std::process::Command::new("python3")
        .arg(script())
        .arg("report")
        .arg(&dump)
        .arg(&samples)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let span = text
        .lines()
        .find(|line| line.contains("60.0 ms, 1/1"))
        .unwrap_or_else(|| panic!("no slow span in the report:\n{text}"));
    let answered: f64 = span
        .split("gateway: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no gateway figures beside the slow span: {span}"));
    assert!(answered > 0.0, "202s/s in the span: {span}");
    assert!(
        span.contains("202s/s") && span.contains("awaiting a confirm"),
        "{span}"
    );
}
