//! Builds the worker (keys, pool, broker links, optional HTTP) and runs it
//! until the shutdown token fires: then it stops consuming, finishes and
//! acks what it holds, and closes its connections.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker_client::{BatchPublisher, Link};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use verify_core::Verifier;

use crate::amqp::consume;
use crate::amqp::handler::Handler;
use crate::config::Config;
use crate::heartbeat::{self, Beacon, WorkerStats};
use crate::peers::{self, Peers};
use crate::pool::VerifyPool;
use crate::reload::{KeySource, Reloader};

pub struct Worker {
    config: Config,
    verifier: Arc<Verifier>,
    reloader: Reloader,
}

impl Worker {
    /// Loads the keys (a bad or too small key file stops the start, naming
    /// the file) and starts watching their directory.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let min_bits = config.verifier_min_rsa_bits;
        let source = KeySource {
            dir: config.verifier_keys_dir.clone(),
            min_rsa_bits: min_bits,
        };
        let keys = source.load()?;
        let reloader = Reloader::new(source, config.verifier_keys_watch)?;
        if min_bits < verify_core::DEFAULT_MIN_RSA_BITS {
            tracing::warn!(
                min_rsa_bits = min_bits,
                "VERIFIER_MIN_RSA_BITS is under {}: smaller keys load too (legacy keys only)",
                verify_core::DEFAULT_MIN_RSA_BITS
            );
        }
        let ids: Vec<&str> = keys.ids().map(|k| k.as_str()).collect();
        tracing::info!(keys = ?ids, min_rsa_bits = min_bits, backend = %config.verify_backend, legacy = config.verifier_allow_legacy, "keys loaded");
        metrics::gauge!("worker_keys").set(keys.len() as f64);
        let verifier = Arc::new(Verifier::new(
            keys,
            config.verify_backend,
            config.verifier_allow_legacy,
        ));
        Ok(Worker {
            config,
            verifier,
            reloader,
        })
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let config = self.config;
        let identity: Arc<str> = verify_core::process_identity("worker").into();
        let topology = Arc::new(config.broker.topology());
        let endpoint = config.broker.endpoint()?;
        let stop_consuming = CancellationToken::new();
        let stop_publishing = CancellationToken::new();

        let confirm_timeout = config.broker.confirm_timeout;
        let exchange_topology = topology.clone();
        let (results, results_task) = Link::spawn(
            endpoint.clone(),
            format!("{identity} publish"),
            stop_publishing.clone(),
            move |session| {
                let topology = exchange_topology.clone();
                async move {
                    // Heartbeats are broadcast on this link: the exchange
                    // must exist before the first one.
                    let channel = session.channels.create().await?;
                    peers::declare_exchange(&channel, &topology).await?;
                    let _ = channel.close(200, "declared".into()).await;
                    broker_client::publisher::serve(session, confirm_timeout).await
                }
            },
        );
        let events = BatchPublisher::spawn(
            results.clone(),
            topology.events_stream.clone(),
            "events",
            config.broker.event_limits(),
        );
        let stats = Arc::new(WorkerStats::default());
        let keys_changed = Arc::new(Notify::new());
        let beacon = Arc::new(Beacon {
            identity: heartbeat::Identity {
                name: identity.clone(),
                started_at_ms: verify_core::now_ms(),
                verify_threads: config.threads() as u32,
                interval: config.heartbeat_interval,
            },
            stats: stats.clone(),
            verifier: self.verifier.clone(),
            events: events.clone(),
            results: results.clone(),
            workers_exchange: topology.workers_exchange.clone(),
            keys_changed: keys_changed.clone(),
        });
        let stop_beating = CancellationToken::new();
        let beats = tokio::spawn(heartbeat::run(beacon.clone(), stop_beating.clone()));
        let stop_reloading = CancellationToken::new();
        let reloads = tokio::spawn(self.reloader.run(
            self.verifier.clone(),
            keys_changed,
            stop_reloading.clone(),
        ));
        let peers = Arc::new(Peers::new(identity.clone()));
        let stop_listening = CancellationToken::new();
        let (_peers_link, peers_task) = peers::spawn(
            endpoint.clone(),
            topology.clone(),
            peers.clone(),
            stop_listening.clone(),
        );
        let handler = Handler {
            pool: VerifyPool::new(self.verifier.clone(), config.threads()),
            peers,
            results: results.clone(),
            events: events.clone(),
            topology,
            identity,
            delivery_limit: config.broker.delivery_limit,
            retention: config.broker.result_retention,
            stats: stats.clone(),
        };
        let (consuming, consume_task) = consume::spawn(
            endpoint.clone(),
            handler,
            config.broker.queue_settings(),
            config.prefetch,
            config.shutdown_timeout,
            stop_consuming.clone(),
        );

        let http_stop = CancellationToken::new();
        let http_task = match config.worker_http_addr {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding WORKER_HTTP_ADDR {addr}"))?;
                tracing::info!(addr = %listener.local_addr()?, "worker HTTP listening");
                let app = crate::http::router(
                    consuming.clone(),
                    results.clone(),
                    telemetry::metrics_handle(),
                );
                let stop = http_stop.clone();
                Some(tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await;
                }))
            }
            None => None,
        };

        shutdown.cancelled().await;
        tracing::info!("stopping: finishing held requests");
        stop_consuming.cancel();
        // The consumer drains within shutdown_timeout; the margin covers closing.
        let deadline = config.shutdown_timeout + Duration::from_secs(5);
        if tokio::time::timeout(deadline, consume_task).await.is_err() {
            tracing::warn!("consumer did not stop in time");
        }
        stop_reloading.cancel();
        let _ = reloads.await;
        stop_beating.cancel();
        let _ = beats.await;
        heartbeat::offline(&beacon).await;
        stop_listening.cancel();
        let _ = peers_task.await;
        stop_publishing.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), results_task).await;
        http_stop.cancel();
        if let Some(task) = http_task {
            let _ = task.await;
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}
