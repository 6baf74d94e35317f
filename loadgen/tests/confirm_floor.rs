//! `loadgen confirm-floor` against the real broker: it prints one line of
//! percentiles per queue type and leaves no queue behind.

use std::process::{Command, Output};

/// Runs `loadgen confirm-floor` with `args`, its queues named `<prefix>.<uuid>`.
fn confirm_floor(prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("confirm-floor")
        .args(args)
        .args(["--prefix", prefix])
        .output()
        .expect("loadgen runs")
}

fn queues_named(prefix: &str) -> Vec<String> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn prints_each_queue_types_confirm_latency_and_deletes_its_queues() {
    let prefix = format!("test.floor.{}", std::process::id());
    let out = confirm_floor(
        &prefix,
        &[
            "--queue-types",
            "quorum,stream",
            "--count",
            "20",
            "--pause",
            "1ms",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, queue_type) in lines.iter().zip(["quorum", "stream"]) {
        assert!(line.starts_with(queue_type), "{line}");
        assert!(line.contains("20 messages of 300 bytes"), "{line}");
        for field in ["p50", "p90", "p99", "p99.9", "max"] {
            assert!(
                line.contains(&format!(" {field} ")),
                "{field} missing: {line}"
            );
        }
    }
    assert_eq!(queues_named(&prefix), Vec::<String>::new());
}

#[test]
fn an_unknown_queue_type_is_an_error_not_a_figure() {
    let prefix = format!("test.floor.bad.{}", std::process::id());
    let out = confirm_floor(&prefix, &["--queue-types", "no-such-type", "--count", "5"]);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!out.stderr.is_empty());
    assert_eq!(queues_named(&prefix), Vec::<String>::new());
}
