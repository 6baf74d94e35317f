//! A supervised broker connection.
//!
//! [`Link::spawn`] connects, runs a session on the connection, and when the
//! connection or the session fails, reconnects until its shutdown token is
//! cancelled. Given several URLs (the nodes of one cluster), it starts at a
//! random one (so a fleet spreads over the nodes) and moves on to the next
//! node at once when one fails; only when every node has failed in a row
//! does it back off (100 ms doubling to 5 s). A process therefore never
//! dies because a broker went away: it reports not ready (the link is
//! down) and comes back by itself on whichever node answers.
//!
//! The session publishes what it offers to the rest of the process (a
//! publisher, a consumer's health) with [`Session::set_ready`]; the link
//! withdraws it the moment the connection fails or the broker blocks it.
//! Whatever ends a session (its own error, a lost connection, shutdown),
//! the connection is closed before the next one opens: a session never
//! leaves a half-used connection behind.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// The channels a session opened, so that the link closes each one (and
/// waits for the broker's close-ok) before it closes the connection.
///
/// lapin closes a channel whose last handle is dropped from a task of its
/// own; when the connection's close overtakes that task, lapin reports the
/// channel's close as a connection error, logged at ERROR on every clean
/// shutdown. Channels opened here are closed in order instead.
#[derive(Clone)]
pub struct Channels {
    connection: Arc<Connection>,
    open: Arc<std::sync::Mutex<Vec<lapin::Channel>>>,
}

impl Channels {
    fn new(connection: Arc<Connection>) -> Self {
        Channels {
            connection,
            open: Arc::default(),
        }
    }

    /// Opens a channel on the session's connection.
    pub async fn create(&self) -> lapin::Result<lapin::Channel> {
        let channel = self.connection.create_channel().await?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        // Channels the broker or their owner closed are done with.
        open.retain(|c| c.status().connected());
        open.push(channel.clone());
        Ok(channel)
    }

    /// The connection these channels are on.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Closes every channel still open, all within `CONNECT_TIMEOUT` (a
    /// broker that does not answer delays a stop by that much at most).
    async fn close_all(&self) {
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner()));
        let close = async {
            for channel in open.iter().filter(|c| c.status().connected()) {
                let _ = channel.close(200, "session over".into()).await;
            }
        };
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, close).await;
    }
}

/// What a session sees of its link.
pub struct Session<T> {
    /// For what ends within the session's own call (declaring the
    /// topology); a channel that lives on is opened through `channels`.
    pub connection: Arc<Connection>,
    /// Open the session's long-lived channels here (see [`Channels`]).
    pub channels: Channels,
    /// Cancelled when the process shuts down; the session must then finish
    /// its work and return.
    pub shutdown: CancellationToken,
    /// How many sessions ran before this one (0 on first connect).
    pub attempt: u64,
    /// The broker user this connection logged in as: the `user_id` of every
    /// message it publishes (the broker refuses any other).
    pub user: Arc<str>,
    state: watch::Sender<Option<Arc<T>>>,
}

impl<T> Session<T> {
    /// Offers `value` to the process until the session ends.
    pub fn set_ready(&self, value: T) {
        self.state.send_replace(Some(Arc::new(value)));
    }

    /// Withdraws what [`Session::set_ready`] offered (the session goes on).
    pub fn set_unready(&self) {
        self.state.send_replace(None);
    }
}

/// The current state of a link: `Some` while connected, set up and not blocked.
#[derive(Clone)]
pub struct Link<T> {
    state: watch::Receiver<Option<Arc<T>>>,
    blocked: Arc<AtomicBool>,
}

/// The value a link offers while it is up.
pub type LinkState<T> = Option<Arc<T>>;

impl<T: Send + Sync + 'static> Link<T> {
    /// Starts supervising a connection to `endpoint` (one URL, or a
    /// cluster's nodes) named `name` (shown in the management UI). `run` drives one session and returns when it is over.
    /// The returned handle resolves when the link has stopped for good.
    pub fn spawn<F, Fut>(
        endpoint: crate::Endpoint,
        name: String,
        shutdown: CancellationToken,
        mut run: F,
    ) -> (Link<T>, tokio::task::JoinHandle<()>)
    where
        F: FnMut(Session<T>) -> Fut + Send + 'static,
        Fut: Future<Output = SessionResult> + Send,
    {
        let (tx, rx) = watch::channel(None);
        let blocked = Arc::new(AtomicBool::new(false));
        let link = Link {
            state: rx,
            blocked: blocked.clone(),
        };
        let urls = endpoint.urls().to_vec();
        let task = tokio::spawn(async move {
            let mut backoff = BACKOFF_MIN;
            let mut attempt = 0;
            let mut next = rand::random::<usize>() % urls.len().max(1);
            // Nodes that failed in a row since the last good session.
            let mut failed_in_row = 0;
            while !shutdown.is_cancelled() {
                let url = &urls[next % urls.len()];
                next += 1;
                let node = node_of(url);
                let properties =
                    ConnectionProperties::default().with_connection_name(name.clone().into());
                let connected = tokio::select! {
                    c = tokio::time::timeout(CONNECT_TIMEOUT, connect(url, properties, &endpoint)) => c,
                    _ = shutdown.cancelled() => break,
                };
                match connected {
                    Ok(Ok(connection)) => {
                        tracing::info!(link = %name, %node, attempt, "connected to the broker");
                        let session_started = std::time::Instant::now();
                        let connection = Arc::new(connection);
                        let channels = Channels::new(connection.clone());
                        let session = Session {
                            connection: connection.clone(),
                            channels: channels.clone(),
                            shutdown: shutdown.clone(),
                            attempt,
                            user: url_user(url).into(),
                            state: tx.clone(),
                        };
                        attempt += 1;
                        let lost = watch_connection(&connection, &blocked);
                        tokio::select! {
                            result = run(session) => match result {
                                Ok(()) => tracing::info!(link = %name, %node, "session finished"),
                                Err(e) => tracing::warn!(link = %name, %node, error = %e, "session failed"),
                            },
                            error = lost => tracing::warn!(link = %name, %node, %error, "connection lost"),
                        }
                        tx.send_replace(None);
                        blocked.store(false, Ordering::Relaxed);
                        if connection.status().connected() {
                            channels.close_all().await;
                            let _ = tokio::time::timeout(
                                CONNECT_TIMEOUT,
                                connection.close(200, "session over".into()),
                            )
                            .await;
                        }
                        if shutdown.is_cancelled() {
                            break;
                        }
                        // A session that lasted: its node died or dropped us, so
                        // try the next node at once. One that failed at once (a
                        // refused declare) must not become a reconnect storm.
                        if session_started.elapsed() > STABLE_SESSION {
                            backoff = BACKOFF_MIN;
                            failed_in_row = 0;
                            continue;
                        }
                        failed_in_row += 1;
                    }
                    Ok(Err(e)) => {
                        failed_in_row += 1;
                        tracing::warn!(link = %name, %node, error = %e, "cannot connect to the broker")
                    }
                    Err(_) => {
                        failed_in_row += 1;
                        tracing::warn!(link = %name, %node, "timed out connecting to the broker")
                    }
                }
                // Another node may answer: try each once before backing off.
                if failed_in_row % urls.len() != 0 {
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            tx.send_replace(None);
        });
        (link, task)
    }

    /// The link's value while it is up and the broker does not block it.
    pub fn current(&self) -> Option<Arc<T>> {
        if self.blocked.load(Ordering::Relaxed) {
            return None;
        }
        self.state.borrow().clone()
    }

    pub fn is_up(&self) -> bool {
        self.current().is_some()
    }

    /// Waits until the link is up and not blocked, or `timeout` passes;
    /// whether it is usable then.
    pub async fn wait_usable(&self, timeout: Duration) -> bool {
        self.wait_usable_where(timeout, |_| true).await
    }

    /// Like [`Link::wait_usable`], but the value offered must also pass
    /// `usable`. A caller whose publish just failed because the connection
    /// died waits with this for a value on a live connection: the dead one
    /// stays offered until the link's task has seen the loss, and that task
    /// cannot run while the caller retries without ever waiting (on a
    /// runtime of one thread it never would).
    pub async fn wait_usable_where(&self, timeout: Duration, usable: impl Fn(&T) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        // Blocking is a flag, not a watch: a short poll is enough here.
        while !self.current().is_some_and(|value| usable(&value)) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Waits until the link is up (for startup ordering); false on timeout.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut state = self.state.clone();
        tokio::time::timeout(timeout, state.wait_for(|s| s.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Connects to `url` (`amqps://` with the endpoint's TLS settings).
async fn connect(
    url: &str,
    properties: ConnectionProperties,
    endpoint: &crate::Endpoint,
) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connect_with_config(url, properties, endpoint.tls().clone(), runtime).await
}

/// Resolves when the connection fails; tracks broker flow control meanwhile.
async fn watch_connection(connection: &Connection, blocked: &AtomicBool) -> String {
    let mut events = connection.events_listener();
    // Events are the fast path; the status poll covers a failure that
    // happened before the listener was attached.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = events.next() => match event {
                // Channel-level errors (a refused declare, say) are reported
                // here too; only a connection that is gone ends the session.
                Some(lapin::Event::Error(e)) if !connection.status().connected() => return e.to_string(),
                Some(lapin::Event::ConnectionBlocked(reason)) => {
                    tracing::warn!(%reason, "the broker blocked this connection");
                    blocked.store(true, Ordering::Relaxed);
                }
                Some(lapin::Event::ConnectionUnblocked) => blocked.store(false, Ordering::Relaxed),
                Some(_) => {}
                None => return "event stream ended".to_owned(),
            },
            _ = tick.tick() => {
                let status = connection.status();
                if !status.connected() && !status.connecting() && !status.reconnecting() {
                    return "connection closed".to_owned();
                }
            }
        }
    }
}

/// Why a session ended early; any error ends it and triggers a reconnect.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Publish(#[from] crate::PublishError),
    #[error(transparent)]
    Topology(#[from] crate::TopologyError),
    #[error("{0}")]
    Ended(&'static str),
}

/// What a session returns.
pub type SessionResult = Result<(), SessionError>;

/// The URLs of `AMQP_URL`: one, or a comma-separated list (a cluster's
/// nodes). Never empty (an empty setting gives lapin's default URL).
pub fn split_urls(urls: &str) -> Vec<String> {
    let list: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if list.is_empty() {
        vec!["amqp://127.0.0.1:5672/%2f".to_owned()]
    } else {
        list
    }
}

/// `host:port` of a URL, for logs (never its credentials).
fn node_of(url: &str) -> String {
    url.parse::<AMQPUri>()
        .map(|u| format!("{}:{}", u.authority.host, u.authority.port))
        .unwrap_or_else(|_| "(unparsable URL)".to_owned())
}

/// The user name in an AMQP URL (percent-decoded, as lapin logs in with
/// it); `guest` when the URL names none, as lapin does.
pub fn url_user(url: &str) -> String {
    url.parse::<AMQPUri>()
        .map(|uri| uri.authority.userinfo.username)
        .unwrap_or_else(|_| "guest".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_urls() {
        assert_eq!(
            super::split_urls(" amqp://a:1/%2f, amqp://b:2/%2f ,"),
            ["amqp://a:1/%2f", "amqp://b:2/%2f"]
        );
        assert_eq!(super::split_urls("").len(), 1);
        assert_eq!(super::node_of("amqp://u:secret@h:5673/%2f"), "h:5673");
    }

    #[test]
    fn the_user_of_a_url() {
        assert_eq!(super::url_user("amqp://a%40b:pw@host:5672/%2f"), "a@b");
        assert_eq!(
            super::url_user("amqp://sig-worker:pw@host/%2f"),
            "sig-worker"
        );
        assert_eq!(super::url_user("amqp://host"), "guest");
    }

    /// A value the link still offers but the caller cannot use (a publisher
    /// whose connection died, before the link's task has seen it go) is
    /// waited out, not taken: the caller gets false at its deadline, and
    /// while it waits the runtime's other tasks run, so the one that offers
    /// a usable value gets to, and the caller then takes that.
    #[tokio::test(start_paused = true)]
    async fn a_value_the_caller_cannot_use_is_waited_out_while_other_tasks_run() {
        let dead = Arc::new(false);
        let (offer, state) = watch::channel(Some(dead));
        let link = Link {
            state,
            blocked: Arc::new(AtomicBool::new(false)),
        };
        let live = |value: &bool| *value;
        let asked = tokio::time::Instant::now();
        assert!(!link.wait_usable_where(Duration::from_secs(1), live).await);
        assert!(asked.elapsed() >= Duration::from_secs(1));
        assert!(link.wait_usable(Duration::ZERO).await, "any value counts");

        let offering = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            offer.send_replace(Some(Arc::new(true)));
            offer
        });
        let asked = tokio::time::Instant::now();
        assert!(link.wait_usable_where(Duration::from_secs(5), live).await);
        assert!(asked.elapsed() < Duration::from_secs(1));
        drop(offering.await.unwrap());
    }
}
