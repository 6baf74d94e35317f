//! Confirmed publishing: a message counts as sent only once the broker has
//! confirmed it (persisted it, for a durable queue and a persistent message).
//!
//! One channel in confirm mode is shared by all callers, so confirms are
//! pipelined: many publishes are in flight at once, each caller awaiting only
//! its own confirmation, and never longer than `confirm_timeout`.
//!
//! Every message carries the connection's user as its `user_id`; RabbitMQ
//! refuses a `user_id` that is not the publishing connection's own, so a
//! reader can trust it to say who wrote a message (the gateways accept
//! verdicts only from the worker user). [`serve`] keeps a publisher up for a
//! link's session and reopens its channel when the broker closes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ConnectionStatus};

use crate::link::{Channels, Session, SessionResult};

/// Why a message was not (known to be) accepted by the broker. Cheap to
/// clone: every item of a batch gets the same answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("the broker refused the message (nack): the queue is full or unavailable")]
    Nacked,
    #[error("the message could not be routed to any queue")]
    Unroutable,
    #[error("no confirmation from the broker within {0:?}")]
    Timeout(Duration),
    #[error("broker connection error: {0}")]
    Connection(Arc<lapin::Error>),
    #[error("not connected to the broker")]
    Disconnected,
    #[error("the batch publisher has stopped")]
    Closed,
}

impl From<lapin::Error> for PublishError {
    fn from(e: lapin::Error) -> Self {
        PublishError::Connection(Arc::new(e))
    }
}

/// A channel in confirm mode on a publishing connection.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
    /// The connection's user, stamped on every message as `user_id`.
    user: ShortString,
    /// The connection's state: a publish that failed with its connection
    /// gone may be published again on the next one.
    connection: ConnectionStatus,
    /// Set when the broker refused a message on this channel (see [`serve`]).
    nacked: Arc<AtomicBool>,
}

impl Publisher {
    pub async fn open(
        channels: &Channels,
        user: &str,
        confirm_timeout: Duration,
    ) -> lapin::Result<Self> {
        let connection = channels.connection();
        let channel = channels.create().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher {
            channel,
            confirm_timeout,
            user: ShortString::from(user),
            connection: connection.status().clone(),
            nacked: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Publishes a persistent JSON message to `queue` through the default
    /// exchange and waits (bounded) for the broker's confirmation.
    pub async fn publish(
        &self,
        queue: &str,
        payload: &[u8],
        kind: &str,
    ) -> Result<(), PublishError> {
        self.publish_with_headers(queue, payload, kind, None).await
    }

    /// [`Publisher::publish`] with message headers (a dead letter's reason,
    /// a request's requeue count).
    pub async fn publish_with_headers(
        &self,
        queue: &str,
        payload: &[u8],
        kind: &str,
        headers: Option<FieldTable>,
    ) -> Result<(), PublishError> {
        self.publish_observed(queue, payload, kind, headers, None, &mut || {})
            .await
    }

    /// [`Publisher::publish_with_headers`] for a body in `content_encoding`
    /// (`None`: as it is), calling `on_sent` once the message is handed to
    /// the connection, before its confirm is awaited.
    pub async fn publish_observed(
        &self,
        queue: &str,
        payload: &[u8],
        kind: &str,
        headers: Option<FieldTable>,
        content_encoding: Option<&str>,
        on_sent: &mut (dyn FnMut() + Send),
    ) -> Result<(), PublishError> {
        // A missing queue must be an error, not a silent drop: mandatory.
        let target = Target {
            exchange: "",
            routing_key: queue,
            mandatory: true,
        };
        self.send(target, payload, kind, headers, content_encoding, on_sent)
            .await
    }

    /// Publishes a message to every queue bound to the fanout `exchange`
    /// (none bound is not an error: nobody is listening), confirmed. The
    /// exchange must exist: publishing to a missing one closes the channel.
    pub async fn broadcast(
        &self,
        exchange: &str,
        payload: &[u8],
        kind: &str,
    ) -> Result<(), PublishError> {
        let target = Target {
            exchange,
            routing_key: "",
            mandatory: false,
        };
        self.send(target, payload, kind, None, None, &mut || {})
            .await
    }

    async fn send(
        &self,
        Target {
            exchange,
            routing_key,
            mandatory,
        }: Target<'_>,
        payload: &[u8],
        kind: &str,
        headers: Option<FieldTable>,
        content_encoding: Option<&str>,
        on_sent: &mut (dyn FnMut() + Send),
    ) -> Result<(), PublishError> {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_type(ShortString::from(kind))
            .with_user_id(self.user.clone());
        if let Some(headers) = headers {
            properties = properties.with_headers(headers);
        }
        if let Some(encoding) = content_encoding {
            properties = properties.with_content_encoding(ShortString::from(encoding));
        }
        let send = async {
            let started = std::time::Instant::now();
            let pending = self
                .channel
                .basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(routing_key),
                    BasicPublishOptions {
                        mandatory,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    properties,
                )
                .await?;
            on_sent();
            let confirmation = pending.await?;
            // The broker's share of a publish: sent to confirmed (or refused).
            metrics::histogram!("broker_confirm_seconds", "kind" => kind.to_owned())
                .record(started.elapsed().as_secs_f64());
            match confirmation {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable),
                Confirmation::Nack(_) => {
                    self.nacked.store(true, Ordering::Relaxed);
                    Err(PublishError::Nacked)
                }
                // Confirm mode is always on for this channel.
                Confirmation::NotRequested => Ok(()),
            }
        };
        tokio::time::timeout(self.confirm_timeout, send)
            .await
            .unwrap_or(Err(PublishError::Timeout(self.confirm_timeout)))
    }

    /// True while the channel can take publishes.
    pub fn is_usable(&self) -> bool {
        self.channel.status().connected()
    }

    /// Whether the broker refused a message on this channel since the last
    /// call.
    fn take_nacked(&self) -> bool {
        self.nacked.swap(false, Ordering::Relaxed)
    }

    /// True once the connection under this publisher is gone (its node
    /// died, or the network failed), as opposed to a channel the broker
    /// closed on a live connection.
    pub fn connection_lost(&self) -> bool {
        !self.connection.connected()
    }
}

/// Runs a publishing session: offers a [`Publisher`] to the process until
/// shutdown, and opens a fresh channel whenever the broker closes the
/// current one (a refused message can close a channel while the connection
/// lives on); meanwhile the link offers nothing, so callers see "not ready".
///
/// A channel on which the broker refused a message is replaced too, while
/// the link stays ready: RabbitMQ 3.10 keeps a channel's view of a quorum
/// queue's leader, and a channel that published while a new leader was
/// being elected went on being refused with the queue empty and led
/// (seen in the cluster fault test). A fresh channel finds the leader; when
/// the queue is really full, it is refused the same way. The old channel is
/// closed once the confirms in flight on it have had their time.
pub async fn serve(session: Session<Publisher>, confirm_timeout: Duration) -> SessionResult {
    let open = || Publisher::open(&session.channels, &session.user, confirm_timeout);
    let mut publisher = open().await?;
    session.set_ready(publisher.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = session.shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        if !publisher.is_usable() {
            tracing::warn!("the broker closed the publishing channel; opening another");
            session.set_unready();
            publisher = open().await?;
            session.set_ready(publisher.clone());
            metrics::counter!("publish_channel_reopened_total", "reason" => "closed").increment(1);
        } else if publisher.take_nacked() {
            tracing::debug!("the broker refused a message; publishing on a fresh channel");
            let old = std::mem::replace(&mut publisher, open().await?);
            session.set_ready(publisher.clone());
            metrics::counter!("publish_channel_reopened_total", "reason" => "nacked").increment(1);
            tokio::spawn(async move {
                tokio::time::sleep(confirm_timeout).await;
                let _ = old.channel.close(200, "replaced".into()).await;
            });
        }
    }
}

/// Where a message goes: an exchange and routing key; `mandatory` makes an
/// unroutable message an error instead of a silent drop.
struct Target<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    mandatory: bool,
}
