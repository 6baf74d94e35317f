//! `amqps://` to a broker with a private CA that requires client
//! certificates: a private RabbitMQ node with a TLS listener, and a CA,
//! broker and client certificates made by this test. With AMQP_CA_FILE and
//! a client certificate, a gateway and a worker connect over TLS (the
//! broker lists their connections as TLS with the client's certificate)
//! and requests get their verdicts; without the client certificate the
//! broker refuses the connection; without the CA the gateway refuses the
//! broker; an unreadable TLS file stops the start, naming it.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// Writes `text` to `dir/name`; the path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn requests_get_verdicts_over_amqps_with_a_private_ca_and_client_certificates() {
    let ca = TestCa::new("verifier test CA");
    let server = ca.issue("broker", &["localhost", "127.0.0.1"]);
    let client = ca.issue("verifier-client", &["verifier-client"]);

    let node_dir = tempfile::tempdir().unwrap();
    let tls_port = free_port();
    let conf = format!(
        "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
         ssl_options.cacertfile = {ca}\n\
         ssl_options.certfile = {cert}\n\
         ssl_options.keyfile = {key}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true",
        ca = write(node_dir.path(), "ca.pem", &ca.cert_pem),
        cert = write(node_dir.path(), "broker.pem", &server.cert_pem),
        key = write(node_dir.path(), "broker.key", &server.key_pem),
    );
    let node = PrivateBroker::start_in(node_dir, &conf);

    let env = TestEnv::with_broker(format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f"));
    let files = env.dir.path();
    let ca_file = write(files, "client-ca.pem", &ca.cert_pem);
    let cert_file = write(files, "client.pem", &client.cert_pem);
    let key_file = write(files, "client.key", &client.key_pem);
    let tls = [
        ("AMQP_CA_FILE", ca_file.clone()),
        ("AMQP_CLIENT_CERT_FILE", cert_file.clone()),
        ("AMQP_CLIENT_KEY_FILE", key_file.clone()),
    ];

    let _worker = env.worker("worker-tls", &tls);
    let gw = env.gateway(&tls).await;
    let signer = Signer2048::new();
    let good = gw
        .submit(&body_for(&signer, "sent over amqps", false))
        .await;
    let bad = gw.submit(&body_for(&signer, "sent over amqps", true)).await;
    for (id, valid) in [(good, true), (bad, false)] {
        let result = gw.result(&id, Duration::from_secs(30)).await;
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["valid"], valid, "{result}");
    }
    // Every connection of the gateway (2) and the worker (2) is TLS and
    // presented the client certificate.
    let connections = node.ctl(&["list_connections", "ssl", "peer_cert_subject", "--quiet"]);
    let tls_with_cert = connections
        .lines()
        .filter(|l| l.starts_with("true") && l.contains("CN=verifier-client"))
        .count();
    assert!(tls_with_cert >= 4, "connections:\n{connections}");

    // The CA but no client certificate: the broker refuses the handshake.
    let no_cert = env.gateway_unready(&[("AMQP_CA_FILE", ca_file.clone())]);
    // A client certificate but not the CA: the broker's certificate is not trusted.
    let no_ca = env.gateway_unready(&[
        ("AMQP_CLIENT_CERT_FILE", cert_file.clone()),
        ("AMQP_CLIENT_KEY_FILE", key_file.clone()),
    ]);
    for (gateway, why) in [(&no_cert, "CertificateRequired"), (&no_ca, "UnknownIssuer")] {
        let name = gateway.base.rsplit(':').next().unwrap().to_owned();
        let log_name = format!("gateway-{name}");
        wait_for(
            &format!("{log_name} to log that the TLS handshake failed ({why})"),
            Duration::from_secs(30),
            || {
                let log = env.log(&log_name);
                async move { log.contains("cannot connect to the broker") && log.contains(why) }
            },
        )
        .await;
        let (status, _) = gateway.get_text("/readyz").await;
        assert_eq!(status, 503, "{log_name} says it is ready without a broker");
    }

    // A TLS file that cannot be read stops the start, naming the file.
    let mut missing = env.gateway_unready(&[("AMQP_CA_FILE", "/nonexistent/ca.pem".to_owned())]);
    let exit = missing.proc.wait_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| !s.success()), "{exit:?}");
    let port = missing.base.rsplit(':').next().unwrap().to_owned();
    let log = env.log(&format!("gateway-{port}"));
    assert!(
        log.contains("AMQP_CA_FILE /nonexistent/ca.pem"),
        "the gateway's log does not name the file:\n{log}"
    );
}
