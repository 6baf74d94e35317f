//! compose.yaml and the Dockerfile checked against the binaries'
//! configuration, so the deployment cannot drift from the code.

use std::collections::BTreeSet;
use std::path::Path;

use clap::CommandFactory;
use serde_yaml_ng::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("compose.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn envs_of(command: clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .chain(telemetry::ENV_VARS.iter().map(|v| (*v).to_owned()))
        .collect()
}

fn environment(service: &Value) -> Vec<(String, String)> {
    service["environment"]
        .as_mapping()
        .expect("environment is a mapping")
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn env_value(service: &Value, key: &str) -> String {
    environment(service)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{key} not set"))
        .1
}

/// The strings of a YAML sequence (ports, volumes).
fn strings(list: &Value) -> Vec<&str> {
    list.as_sequence()
        .expect("a list")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn healthcheck_url(service: &Value) -> String {
    let test = service["healthcheck"]["test"]
        .as_sequence()
        .expect("a healthcheck");
    test.iter()
        .filter_map(Value::as_str)
        .find(|s| s.starts_with("http://"))
        .expect("a URL")
        .to_owned()
}

#[test]
fn every_variable_compose_sets_is_one_the_binary_reads() {
    let compose = compose();
    let services = &compose["services"];
    for (service, known) in [
        ("gateway", envs_of(gateway::config::Config::command())),
        (
            "verifier-worker",
            envs_of(verifier_worker::config::Config::command()),
        ),
    ] {
        for (key, _) in environment(&services[service]) {
            assert!(
                known.contains(&key),
                "{service} sets {key}, which the binary does not read ({known:?})"
            );
        }
        assert_eq!(
            services[service]["command"][0].as_str(),
            Some(service),
            "{service} runs the wrong binary"
        );
        assert_eq!(
            services[service]["depends_on"]["rabbitmq"]["condition"].as_str(),
            Some("service_healthy"),
            "{service} must wait for a healthy broker"
        );
        assert!(
            services[service]["restart"].as_str().is_some(),
            "{service} has no restart policy"
        );
        let url = env_value(&services[service], "AMQP_URL");
        assert!(url.contains("@rabbitmq:5672/"), "{service} AMQP_URL {url}");
        assert!(!url.contains("guest:guest"), "{service} uses guest/guest");
    }
    // Per-role users: the gateway believes verdicts from the workers' user.
    let user_of = |service: &str| {
        let url = env_value(&services[service], "AMQP_URL");
        url.trim_start_matches("amqp://")
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_ne!(user_of("gateway"), user_of("verifier-worker"));
    assert_eq!(
        env_value(&services["gateway"], "RESULT_PUBLISHERS"),
        user_of("verifier-worker")
    );
    // ... and the broker loads those users from the definitions file.
    let volumes = strings(&services["rabbitmq"]["volumes"]);
    for mount in [
        "./run/rabbitmq/definitions.json:/etc/rabbitmq/definitions.json:ro",
        "./run/rabbitmq/definitions.conf:/etc/rabbitmq/conf.d/20-definitions.conf:ro",
    ] {
        assert!(volumes.contains(&mount), "{mount} not in {volumes:?}");
    }
    let script = std::fs::read_to_string(root().join("scripts/broker-users.sh")).unwrap();
    assert!(script.contains("load_definitions = /etc/rabbitmq/definitions.json"));
    for user in [user_of("gateway"), user_of("verifier-worker")] {
        let role = user.trim_start_matches("sig-");
        assert!(
            user.starts_with("sig-") && script.contains(&format!("\"$prefix-{role}\"")),
            "{user} is not a user broker-users.sh creates"
        );
    }
    let worker = &services["verifier-worker"];
    assert!(envs_of(verifier_worker::config::Config::command()).contains("VERIFIER_KEYS_DIR"));
    assert_eq!(
        env_value(worker, "REQUEST_QUEUE"),
        env_value(&services["gateway"], "REQUEST_QUEUE")
    );
}

#[test]
fn ports_and_health_paths_match_the_binaries() {
    let compose = compose();
    let gateway = &compose["services"]["gateway"];
    let port = port_of(&env_value(gateway, "GATEWAY_ADDR"));
    let published = strings(&gateway["ports"]);
    assert!(
        published.iter().any(|p| p.ends_with(&format!(":{port}"))),
        "{published:?} does not publish {port}"
    );
    assert_eq!(
        healthcheck_url(gateway),
        format!(
            "http://127.0.0.1:{port}{}",
            gateway::http::routes::READY_PATH
        )
    );

    let worker = &compose["services"]["verifier-worker"];
    let port = port_of(&env_value(worker, "WORKER_HTTP_ADDR"));
    assert_eq!(
        healthcheck_url(worker),
        format!(
            "http://127.0.0.1:{port}{}",
            verifier_worker::http::READY_PATH
        )
    );
    // Scalable: no fixed container name, no host port.
    assert!(worker["container_name"].is_null() && worker["ports"].is_null());
    // Keys, documents and the API token file are mounted read-only, the
    // token file from where scripts/api-tokens.sh writes it.
    let tokens = env_value(gateway, "API_TOKENS_FILE");
    assert!(
        strings(&gateway["volumes"])
            .contains(&format!("./run/secrets/api-tokens:{tokens}:ro").as_str()),
        "API_TOKENS_FILE {tokens} is not ./run/secrets/api-tokens mounted read-only"
    );
    for (service, dir) in [
        (worker, env_value(worker, "VERIFIER_KEYS_DIR")),
        (gateway, env_value(gateway, "DOCS_DIR")),
        (gateway, tokens),
    ] {
        let volumes = strings(&service["volumes"]);
        assert!(
            volumes.iter().any(|v| v.ends_with(&format!(":{dir}:ro"))),
            "{dir} not mounted read-only: {volumes:?}"
        );
    }

    let rabbit = &compose["services"]["rabbitmq"];
    assert!(rabbit["image"]
        .as_str()
        .unwrap()
        .starts_with("rabbitmq:3-management"));
    assert!(rabbit["healthcheck"]["test"].is_sequence());
}

#[test]
fn the_dockerfile_builds_both_binaries_into_a_slim_non_root_image() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for needle in [
        "--bin gateway",
        "--bin verifier-worker",
        "cargo chef cook",
        "bookworm-slim",
        "USER verifier",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 3, "not multi-stage");
}

fn compose_cluster() -> Value {
    let text = std::fs::read_to_string(root().join("compose.cluster.yaml")).unwrap();
    let mut value: Value = serde_yaml_ng::from_str(&text).unwrap();
    value.apply_merge().unwrap();
    value
}

#[test]
fn the_cluster_variant_runs_the_same_binaries_on_three_nodes() {
    let compose = compose_cluster();
    let services = &compose["services"];
    let nodes = ["rabbitmq1", "rabbitmq2", "rabbitmq3"];
    let script = std::fs::read_to_string(root().join("scripts/broker-users.sh")).unwrap();
    let cookie = |node: &str| {
        environment(&services[node])
            .into_iter()
            .find(|(k, _)| k == "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS")
            .map(|(_, v)| v)
            .expect("a cookie")
    };
    for (i, node) in nodes.iter().enumerate() {
        let service = &services[*node];
        assert_eq!(service["hostname"].as_str(), Some(*node));
        assert!(service["image"]
            .as_str()
            .unwrap()
            .starts_with("rabbitmq:3-management"));
        assert_eq!(
            cookie(node),
            cookie("rabbitmq1"),
            "one cookie for the cluster"
        );
        assert!(cookie(node).contains("-setcookie ${ERLANG_COOKIE"));
        let volumes = strings(&service["volumes"]);
        for mount in [
            "./run/rabbitmq/definitions.json:/etc/rabbitmq/definitions.json:ro",
            "./run/rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/30-cluster.conf:ro",
        ] {
            assert!(
                volumes.contains(&mount),
                "{node}: {mount} not in {volumes:?}"
            );
        }
        // Peer discovery names every node.
        let line = format!(
            "cluster_formation.classic_config.nodes.{} = rabbit@{node}",
            i + 1
        );
        assert!(
            script.contains(&line),
            "broker-users.sh does not write {line:?}"
        );
    }
    for (service, known, user) in [
        (
            "gateway",
            envs_of(gateway::config::Config::command()),
            "sig-gateway",
        ),
        (
            "verifier-worker",
            envs_of(verifier_worker::config::Config::command()),
            "sig-worker",
        ),
    ] {
        for (key, _) in environment(&services[service]) {
            assert!(
                known.contains(&key),
                "{service} sets {key}, which the binary does not read"
            );
        }
        assert_eq!(services[service]["command"][0].as_str(), Some(service));
        assert_eq!(env_value(&services[service], "QUEUE_TYPE"), "quorum");
        let url = env_value(&services[service], "AMQP_URL");
        let urls: Vec<&str> = url.split(',').collect();
        assert_eq!(urls.len(), 3, "{service}: {url}");
        for (url, node) in urls.iter().zip(nodes) {
            assert!(url.starts_with(&format!("amqp://{user}:")), "{url}");
            assert!(url.ends_with(&format!("@{node}:5672/%2f")), "{url}");
        }
        for node in nodes {
            assert_eq!(
                services[service]["depends_on"][node]["condition"].as_str(),
                Some("service_healthy"),
                "{service} must wait for {node}"
            );
        }
    }
    assert_eq!(
        env_value(&services["gateway"], "RESULT_PUBLISHERS"),
        "sig-worker"
    );
    assert_eq!(
        healthcheck_url(&services["gateway"]),
        format!("http://127.0.0.1:8080{}", gateway::http::routes::READY_PATH)
    );
}
