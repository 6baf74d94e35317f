//! The per-role broker users of scripts/broker-users.sh (what up.sh and
//! compose run with): the real binaries work with exactly the permissions
//! the script grants, verdicts count only from the worker user, and the
//! gateway user cannot take requests off the queue.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

fn script(args: &[&str], vars: &[(&str, &str)]) {
    run_script("broker-users.sh", args, vars);
}

/// `KEY=value` lines of a file.
fn read_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn prefix() -> String {
    format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The users a script run made, deleted when dropped.
fn owned_users(prefix: &str, roles: &[&str]) -> Vec<BrokerUser> {
    roles
        .iter()
        .map(|role| BrokerUser {
            name: format!("{prefix}-{role}"),
            password: String::new(),
        })
        .collect()
}

/// Runs a gateway and a worker under their own users; checks verdicts.
async fn run_service(env: &TestEnv, gateway_url: &str, worker_url: &str, publishers: &str) {
    // The gateway first: its user may not create the request queue (that
    // takes read permission on it), so it waits for a worker to make it.
    let gw = env.gateway_unready(&[
        ("AMQP_URL", gateway_url.to_owned()),
        ("RESULT_PUBLISHERS", publishers.to_owned()),
    ]);
    let _worker = env.worker("worker", &[("AMQP_URL", worker_url.to_owned())]);
    gw.wait_ready(Duration::from_secs(30)).await;
    // A second worker hears the first one's heartbeats on the workers
    // exchange (declared, published to, bound and consumed by this user).
    let (_second, port) = env
        .ready_worker(
            "worker-2",
            &[
                ("AMQP_URL", worker_url.to_owned()),
                ("HEARTBEAT_INTERVAL", "300ms".to_owned()),
            ],
        )
        .await;
    wait_for(
        "the second worker hears the first",
        Duration::from_secs(20),
        || async { counter(&env.worker_metrics(port).await, "worker_peers_heard") >= 1.0 },
    )
    .await;
    let signer = Signer2048::new();
    let valid = gw.submit(&body_for(&signer, "per-role users", false)).await;
    let tampered = gw.submit(&body_for(&signer, "per-role users", true)).await;
    assert_eq!(
        gw.result(&valid, Duration::from_secs(20)).await["valid"],
        true
    );
    assert_eq!(
        gw.result(&tampered, Duration::from_secs(20)).await["valid"],
        false
    );
    let (_, metrics) = gw.get_text("/metrics").await;
    assert_eq!(
        counter(&metrics, "gateway_events_rejected_total"),
        0.0,
        "{metrics}"
    );

    // Reading requests is the workers' right alone.
    let conn = Connection::connect(gateway_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let stolen = channel
        .basic_consume(
            env.queue.as_str().into(),
            "thief".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(stolen.is_err(), "the gateway user could consume requests");
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test]
async fn the_service_runs_on_the_users_up_sh_creates() {
    let env = TestEnv::new();
    let secrets = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let _users = owned_users(&prefix, &["gateway", "worker"]);
    script(
        &["create"],
        &[
            ("SECRETS_DIR", secrets.path().to_str().unwrap()),
            ("BROKER_USER_PREFIX", &prefix),
            ("REQUEST_QUEUE", &env.queue),
        ],
    );
    let urls = read_env(&secrets.path().join("amqp.env"));
    assert_eq!(urls["RESULT_PUBLISHERS"], format!("{prefix}-worker"));
    run_service(
        &env,
        &urls["GATEWAY_AMQP_URL"],
        &urls["WORKER_AMQP_URL"],
        &urls["RESULT_PUBLISHERS"],
    )
    .await;
}

#[tokio::test]
async fn the_compose_definitions_load_and_grant_what_each_role_needs() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().unwrap();
    // rabbitmqctl reads the file as the broker's own user.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let env_file = dir.path().join("env");
    let prefix = prefix();
    let _users = owned_users(&prefix, &["admin", "gateway", "worker"]);
    script(
        &["definitions", dir.path().to_str().unwrap()],
        &[
            ("ENV_FILE", env_file.to_str().unwrap()),
            ("BROKER_USER_PREFIX", &prefix),
            ("REQUEST_QUEUE", &env.queue),
        ],
    );
    let conf = std::fs::read_to_string(dir.path().join("definitions.conf")).unwrap();
    assert!(conf.contains("load_definitions = /etc/rabbitmq/definitions.json"));
    let definitions = dir.path().join("definitions.json");
    run(
        "rabbitmqctl",
        &["import_definitions", definitions.to_str().unwrap()],
        &[],
    );

    let passwords = read_env(&env_file);
    let url = |role: &str, key: &str| {
        format!(
            "amqp://{prefix}-{role}:{}@127.0.0.1:5672/%2f",
            passwords[key]
        )
    };
    let (gateway_url, worker_url) = (
        url("gateway", "GATEWAY_AMQP_PASSWORD"),
        url("worker", "WORKER_AMQP_PASSWORD"),
    );
    // The import is asynchronous: wait until the password hash logs in.
    wait_for(
        "the imported users log in",
        Duration::from_secs(20),
        || async {
            Connection::connect(&worker_url, ConnectionProperties::default())
                .await
                .is_ok()
        },
    )
    .await;
    run_service(&env, &gateway_url, &worker_url, &format!("{prefix}-worker")).await;
}
