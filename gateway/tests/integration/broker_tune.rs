//! `scripts/broker-tune.sh`: on a RabbitMQ older than 3.12.13 it suspends the
//! node's epmd monitor, which otherwise starts a whole Erlang VM every minute
//! (a stall of up to 200 ms on a two-core machine, docs/benchmarks.md);
//! `--undo` or a restart of the node resumes it. Against a private node: the
//! shared one is never touched.

use crate::common::{run_script, PrivateBroker};

/// The monitor's state as `sys:get_status` reports it: `running` or `suspended`.
fn monitor_state(broker: &PrivateBroker) -> String {
    broker.ctl(&[
        "-q",
        "eval",
        "lists:nth(2, element(4, sys:get_status(rabbit_epmd_monitor))).",
    ])
}

#[test]
fn broker_tune_suspends_the_epmd_monitor_of_an_old_broker_and_undo_resumes_it() {
    let broker = PrivateBroker::start();
    let node = format!("{}@localhost", broker.name);
    let version = broker.ctl(&["-q", "eval", "rabbit_misc:version()."]);
    let version: Vec<u32> = version
        .trim_matches('"')
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect();
    let old = version.as_slice() < [3, 12, 13].as_slice();
    assert_eq!(
        monitor_state(&broker),
        "running",
        "a fresh node's monitor runs"
    );
    // --check says so, changing nothing: it fails while an old node's monitor runs.
    let check = |expect_ok: bool| {
        let status = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scripts/broker-tune.sh"
            ))
            .args(["--check", "--node", &node])
            .status()
            .expect("bash runs");
        assert_eq!(status.success(), expect_ok, "--check's exit status");
    };
    check(!old);
    assert_eq!(monitor_state(&broker), "running", "--check changed nothing");

    let printed = run_script("broker-tune.sh", &["--node", &node], &[]);
    let expected = if old { "suspended" } else { "running" };
    assert_eq!(printed, expected, "what the script says it left");
    assert_eq!(monitor_state(&broker), expected, "what the node says");
    check(true);

    // Run twice, it leaves the same state (and does not fail).
    assert_eq!(
        run_script("broker-tune.sh", &["--node", &node], &[]),
        expected
    );

    assert_eq!(
        run_script("broker-tune.sh", &["--undo", "--node", &node], &[]),
        "running"
    );
    assert_eq!(monitor_state(&broker), "running");

    // Suspended again, a restart of the node brings the monitor back.
    assert_eq!(
        run_script("broker-tune.sh", &["--node", &node], &[]),
        expected
    );
    broker.down();
    broker.up();
    assert_eq!(monitor_state(&broker), "running", "after a restart");
}
