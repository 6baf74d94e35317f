//! Builds the gateway (store, broker links, router, listener) and runs it
//! until the shutdown token fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::amqp::events::{Projection, Source, Trust};
use crate::amqp::submit::{Submitter, Target};
use crate::amqp::unanswered::Unanswered;
use crate::auth::{Guard, Tokens};
use crate::config::Config;
use crate::http::serve::{listen, serve, tls_config, ServeOptions};
use crate::http::{router, App, AppState};
use crate::idempotency::KeyLocks;
use crate::stats::LiveStats;
use crate::store::Store;
use crate::workers::Workers;

/// Longest time shutdown may take once long-polls have been answered.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

pub struct Application {
    listener: TcpListener,
    state: AppState,
    serving: ServeOptions,
    links: CancellationToken,
    /// To flush its `accepted` events before the links close.
    submitter: Submitter,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let topology = Arc::new(config.broker.topology());
        let identity: Arc<str> = verify_core::process_identity("gateway").into();
        let endpoint = config.broker.endpoint()?;
        let store = Arc::new(Store::with_limit(
            config.broker.result_retention,
            config.max_results,
        ));
        // Links outlive the HTTP server: they stop after it has drained.
        let links = CancellationToken::new();

        let unanswered = Arc::new(Unanswered::new(
            config.verdict_timeout,
            config.unanswered_max_bytes,
        ));
        let target = Target {
            endpoint: endpoint.clone(),
            topology: topology.clone(),
            settings: config.broker.queue_settings(),
            confirm_timeout: config.broker.confirm_timeout,
            max_message_bytes: config.max_message_bytes,
            batching: config.broker.batch_limits(),
            accepted_hold: config.accepted_hold,
            compress_requests: config.compress_requests,
            event_batching: config.broker.event_limits(),
            identity: identity.clone(),
        };
        let (submitter, publish_task) = Submitter::spawn(target, unanswered.clone(), links.clone());
        let trusted = config.trusted_publishers();
        tracing::info!(
            ?trusted,
            "verdicts are accepted from these broker users only"
        );
        let source = Source {
            endpoint,
            topology,
            settings: config.broker.queue_settings(),
            prefetch: config.events_prefetch,
            identity,
        };
        let workers = Arc::new(Workers::default());
        let stats = Arc::new(LiveStats::default());
        let (projection, events_task) = Projection::spawn(
            source,
            store.clone(),
            workers.clone(),
            stats.clone(),
            Arc::new(Trust::new(trusted)),
            links.clone(),
        );

        let tokens = match &config.api_tokens_file {
            Some(path) => {
                let tokens = Tokens::load(path)?;
                tracing::info!(tokens = tokens.len(), "API tokens required on /api/*");
                Some(tokens)
            }
            None => {
                tracing::warn!("no API_TOKENS_FILE: the API is open to anyone who can reach it");
                None
            }
        };
        let rate = config.rate_limit.map(|per_second| {
            let burst = config
                .rate_burst
                .unwrap_or(per_second.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1)));
            (per_second, burst)
        });
        let guard = Guard::new(tokens, rate);
        let metrics_token = match config.metrics_token.as_deref() {
            Some(token) => Some(Arc::new(
                Tokens::parse(&format!("metrics:{token}"))
                    .map_err(|e| anyhow::anyhow!("METRICS_TOKEN cannot be used: {e}"))?,
            )),
            None => None,
        };
        let guard = Arc::new(guard);
        let sweep_task = tokio::spawn(sweep(
            store.clone(),
            workers.clone(),
            guard.clone(),
            config.broker.result_retention,
            links.clone(),
        ));
        let guard_task = {
            let submitter = submitter.clone();
            tokio::spawn(unanswered.run(
                store.clone(),
                stats.clone(),
                move |id, body, traceparent| {
                    let submitter = submitter.clone();
                    async move { submitter.republish(id, body, traceparent).await }
                },
                links.clone(),
            ))
        };
        let serving = ServeOptions {
            header_timeout: config.header_timeout,
            tls: tls_config(
                config.tls_cert_file.as_deref(),
                config.tls_key_file.as_deref(),
            )?,
        };
        let listener = listen(config.gateway_addr)?;
        let state = AppState::new(App {
            store,
            workers,
            stats,
            submitter: submitter.clone(),
            projection: Arc::new(projection),
            docs_dir: config.docs_dir,
            body_limit: config.body_limit_bytes,
            max_message_bytes: config.max_message_bytes,
            send_digests: config.send_digests,
            idempotency: Arc::new(KeyLocks::default()),
            idempotency_wait: config.broker.confirm_timeout * 2,
            shutdown: CancellationToken::new(),
            metrics: telemetry::metrics_handle(),
            guard,
            metrics_token,
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1))),
            max_in_flight: config.max_in_flight.max(1),
            body_timeout: config.body_timeout,
            request_timeout: config.request_timeout,
        });
        Ok(Application {
            listener,
            state,
            serving,
            links,
            submitter,
            tasks: vec![publish_task, events_task, sweep_task, guard_task],
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Whether the gateway serves HTTPS.
    pub fn serves_https(&self) -> bool {
        self.serving.tls.is_some()
    }

    /// Serves until `shutdown` fires: then stops accepting, answers the
    /// long-polls at once, drains in-flight requests and closes the links.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let long_polls = self.state.shutdown.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            long_polls.cancel();
        });
        serve(
            self.listener,
            router(self.state),
            self.serving,
            shutdown,
            SHUTDOWN_DEADLINE,
        )
        .await;
        self.submitter.flush(SHUTDOWN_DEADLINE).await;
        self.links.cancel();
        let _ = tokio::time::timeout(
            SHUTDOWN_DEADLINE,
            futures_util::future::join_all(self.tasks),
        )
        .await;
        tracing::info!("gateway stopped");
        Ok(())
    }
}

/// Every second, drops the results that expired in it (what is due only,
/// on a blocking thread: the runtime's thread goes on serving); at a tenth
/// of the retention (1 s to 30 s), expired idempotency keys, workers gone
/// quiet and idle rate-limit state, whose maps are walked whole.
async fn sweep(
    store: Arc<Store>,
    workers: Arc<Workers>,
    guard: Arc<Guard>,
    retention: Duration,
    stop: CancellationToken,
) {
    // Ticks are seconds: the walks come every this many of them.
    let walk_every = (retention / 10).as_secs().clamp(1, 30);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let walk = n % walk_every == 0;
        let (store, workers, guard) = (store.clone(), workers.clone(), guard.clone());
        let swept = tokio::task::spawn_blocking(move || {
            let dropped = store.sweep();
            if walk {
                store.sweep_keys();
                workers.sweep(retention);
                guard.sweep();
            }
            dropped
        })
        .await;
        match swept {
            Ok(0) => {}
            Ok(dropped) => tracing::debug!(dropped, "expired results dropped"),
            Err(e) => tracing::error!(error = %e, "the sweep failed"),
        }
    }
}
