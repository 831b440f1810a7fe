//! [`Background`]: the work an [`Authenticator`] needs done outside requests, as one
//! future the application spawns, and [`Authenticator::shutdown`], which stops it and
//! writes what is pending.
//!
//! Invariants:
//! - Nothing here starts by itself: [`Authenticator::build`](super::AuthenticatorBuilder::build)
//!   spawns nothing, and the work runs only while the application polls the future.
//! - At most one background future of an authenticator does anything (the first one
//!   polled; another returns at once), so no write and no change is handled twice.
//! - The future holds the authenticator weakly: it ends when the last clone is dropped,
//!   or when [`Authenticator::shutdown`] is called.
//! - Lifecycle events are delivered to the sinks beside the loop, not in it: a slow sink
//!   delays other events, never a write-back or a change; on shutdown the events already
//!   queued are delivered before the future returns.
//! - A use is never lost by the queue: a token queued for writing stays dirty (and listed
//!   in the write-behind list) until a write takes it, a failed write marks it again, and
//!   [`Authenticator::shutdown`] waits for the loop to finish the write it is in before it
//!   flushes what is left. A periodic flush (once a refresh interval) writes tokens that
//!   were used once and never became due.
//! - Shutdown is final and sticky (a `watch`): a background future made after it stops at
//!   once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::{Authenticator, Inner};
use crate::cache::CachedToken;
use crate::events;
use crate::store::{Change, ChangeFeed, StoreError, TokenStore};

/// Write-backs waiting for the background task; more wait in the write-behind list.
const DUE_CAPACITY: usize = 4096;
/// Change reports waiting to be applied; beyond this the cache is cleared instead.
const CHANGE_CAPACITY: usize = 1024;
/// How long after the start the first reminders and the first pruning run.
const REMINDER_DELAY: Duration = Duration::from_secs(10);
/// How often the audit log loses the events older than the retention.
const PRUNE_PERIOD: Duration = Duration::from_secs(3600);
/// Most write-backs made in one turn before the loop looks at changes again.
const WRITES_PER_TURN: usize = 64;

/// The state one authenticator shares with its background future.
pub(super) struct Tasks {
    /// Set while a background future runs.
    running: AtomicBool,
    /// Set once the fallback for a missing background task has been logged.
    warned: AtomicBool,
    due: mpsc::Sender<Arc<CachedToken>>,
    due_rx: Mutex<Option<mpsc::Receiver<Arc<CachedToken>>>>,
    /// Set (for good) by [`Authenticator::shutdown`].
    stop: watch::Sender<bool>,
    /// Woken when a background future has finished (or was dropped).
    done: Notify,
}

impl Default for Tasks {
    fn default() -> Self {
        let (due, due_rx) = mpsc::channel(DUE_CAPACITY);
        Self {
            running: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            due,
            due_rx: Mutex::new(Some(due_rx)),
            stop: watch::Sender::new(false),
            done: Notify::new(),
        }
    }
}

/// The background work of an [`Authenticator`]: follows the changes other replicas
/// publish (dropping changed tokens from this cache), writes uses behind (`last_used`,
/// sliding expiry) at most once per token per refresh interval, and forgets clients whose
/// failed-attempt window has passed. Made by [`Authenticator::background`]; spawn it.
#[must_use = "the background work runs only while the future is polled: spawn it"]
pub struct Background {
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl fmt::Debug for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Background").finish_non_exhaustive()
    }
}

impl Future for Background {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.future.as_mut().poll(cx)
    }
}

impl Authenticator {
    /// The background work of this authenticator, as a future to spawn (as
    /// tower-sessions' `continuously_delete_expired`):
    ///
    /// - follows other replicas' changes through
    ///   [`TokenStore::follow_changes`](crate::store::TokenStore::follow_changes), so a
    ///   revocation made elsewhere reaches this cache within milliseconds (PostgreSQL,
    ///   Redis) or half a second (SQLite), instead of within the cache TTL;
    /// - writes uses behind, at most once per token per refresh interval;
    /// - forgets clients whose failed-attempt window has passed;
    /// - delivers lifecycle events to the event sinks (the audit log among them);
    /// - sends expiry reminders ([`send_reminders`](Self::send_reminders)) every
    ///   reminder interval, and deletes audit-log events older than the retention once an
    ///   hour.
    ///
    /// It runs until [`shutdown`](Self::shutdown) or until the last clone of the
    /// authenticator is dropped. One future does the work: the first one polled; another
    /// returns at once.
    ///
    /// Without it, changes made by other replicas are seen only when the cache TTL
    /// lapses, and each due write-behind write is spawned on its own (the first such
    /// write logs a warning).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use tower_pat::{Authenticator, MemoryStore};
    ///
    /// let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    /// let background = tokio::spawn(auth.background());
    /// // … serve requests …
    /// auth.shutdown().await.unwrap(); // stops it, and writes every pending use
    /// background.await.unwrap();
    /// # }
    /// ```
    pub fn background(&self) -> Background {
        let weak = Arc::downgrade(&self.inner);
        let store = self.inner.store.clone();
        let stop = self.inner.tasks.stop.subscribe();
        let future = async move {
            // What the loop needs is taken when it first runs, so a future dropped unpolled
            // leaves it for another.
            let Some(inner) = weak.upgrade() else { return };
            if *stop.borrow() {
                return; // shut down before it first ran
            }
            let due = inner
                .tasks
                .due_rx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let events = inner.events.take_receiver();
            let (Some(due), Some(mut events)) = (due, events) else {
                tracing::warn!(
                    "tower-pat: Authenticator::background was called twice; the second one does nothing"
                );
                return;
            };
            let sinks = inner.events.sinks.clone();
            let refresh = inner.refresh_interval.unwrap_or(Duration::from_secs(60));
            inner.tasks.running.store(true, Ordering::Release);
            let _running = Running(weak.clone());
            drop(inner);
            // Sinks are awaited beside the loop, so a slow one delays no write-back and
            // no change. Both stop on shutdown; an event being delivered then is delivered
            // whole, and what is queued after it too.
            let mut stop_events = stop.clone();
            let deliver_all = async {
                loop {
                    tokio::select! {
                        biased;
                        event = events.recv() => match event {
                            Some(event) => events::deliver(&sinks, &event).await,
                            None => break,
                        },
                        () = stopped(&mut stop_events) => break,
                    }
                }
                while let Ok(event) = events.try_recv() {
                    events::deliver(&sinks, &event).await;
                }
            };
            tokio::join!(run(weak, store, stop, due, refresh), deliver_all);
        };
        Background {
            future: Box::pin(future),
        }
    }

    /// Stops the [`background`](Self::background) future and waits until it has finished
    /// what it was doing (a write, an event being delivered, the events queued), then
    /// writes every pending use to the store ([`flush`](Self::flush)). Without a
    /// background task (a short-lived process), it delivers the queued events itself. Call once, when
    /// the server has stopped taking requests; it is final: a background future made
    /// afterwards stops at once. Returns how many tokens the flush wrote.
    pub async fn shutdown(&self) -> Result<usize, StoreError> {
        let tasks = &self.inner.tasks;
        let done = tasks.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        tasks.stop.send_replace(true);
        if tasks.running.load(Ordering::Acquire) {
            done.await;
        } else if let Some(mut queued) = self.inner.events.take_receiver() {
            // No background task ran (a short-lived process, such as the CLI): deliver
            // the events queued so far here.
            let sinks = self.inner.events.sinks.clone();
            while let Ok(event) = queued.try_recv() {
                events::deliver(&sinks, &event).await;
            }
        }
        self.flush().await
    }
}

/// Marks the background future as not running when it ends or is dropped, and wakes a
/// [`Authenticator::shutdown`] waiting for it.
struct Running(Weak<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.tasks.running.store(false, Ordering::Release);
            inner.tasks.done.notify_waiters();
        }
    }
}

/// Resolves once shutdown has been asked for (or the authenticator is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The loop of a [`Background`]: changes, due writes, the limiter's sweep and a periodic
/// write of what is pending, until shutdown or until the authenticator is gone.
async fn run(
    weak: Weak<Inner>,
    store: Arc<dyn TokenStore>,
    mut stop: watch::Receiver<bool>,
    mut due: mpsc::Receiver<Arc<CachedToken>>,
    refresh: Duration,
) {
    let Some(sweep_period) = weak.upgrade().map(|inner| inner.limiter.sweep_period()) else {
        return;
    };
    let (feed, mut changes) = ChangeFeed::channel(CHANGE_CAPACITY);
    let follow = store.follow_changes(feed);
    tokio::pin!(follow);
    let (mut following, mut reading) = (true, true);
    let mut sweep = tokio::time::interval(sweep_period.unwrap_or(Duration::from_secs(3600)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A token used once and then not again is never due: write what is pending once a
    // refresh interval.
    let mut flush = tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Some((reminder_period, reminding)) = weak
        .upgrade()
        .map(|inner| (inner.reminder_interval, !inner.reminders.is_empty()))
    else {
        return;
    };
    let mut reminders = tokio::time::interval_at(
        tokio::time::Instant::now() + REMINDER_DELAY,
        reminder_period,
    );
    reminders.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune =
        tokio::time::interval_at(tokio::time::Instant::now() + REMINDER_DELAY, PRUNE_PERIOD);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(WRITES_PER_TURN);
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            change = changes.recv(), if reading => {
                let Some(inner) = weak.upgrade() else { break };
                match change {
                    Some(Change::Token(id)) => inner.invalidate_local(&id).await,
                    Some(Change::Lost) => {
                        tracing::warn!("token change messages may have been lost; clearing the cache");
                        inner.invalidate_all_local();
                    }
                    None => reading = false,
                }
            }
            n = due.recv_many(&mut batch, WRITES_PER_TURN) => {
                // Every sender is in the authenticator: 0 means it is gone.
                if n == 0 {
                    break;
                }
                let Some(inner) = weak.upgrade() else { break };
                // Side by side: a slow store costs one timeout a batch, not one a token.
                let writes = batch.drain(..).map(|token| {
                    let inner = &inner;
                    async move { inner.write_back(&token).await }
                });
                futures_util::future::join_all(writes).await;
            }
            // The follower ends; what it reported is still read until the feed is empty.
            () = &mut follow, if following => following = false,
            _ = sweep.tick(), if sweep_period.is_some() => {
                let Some(inner) = weak.upgrade() else { break };
                let swept = inner.limiter.sweep(inner.clock.unix_now());
                if swept > 0 {
                    tracing::trace!(swept, "forgot clients whose failed-attempt window passed");
                }
            }
            _ = flush.tick() => {
                let Some(inner) = weak.upgrade() else { break };
                let (cache, write_behind) = (&inner.positive, &inner.write_behind);
                inner.metrics.set_gauges(|| cache.entry_count(), || write_behind.pending());
                let _ = inner.flush().await;
            }
            _ = reminders.tick(), if reminding => {
                let Some(inner) = weak.upgrade() else { break };
                if let Err(e) = inner.send_reminders().await {
                    tracing::warn!(error = %e, "could not send expiry reminders; will retry");
                }
            }
            _ = prune.tick() => {
                let Some(inner) = weak.upgrade() else { break };
                match inner.prune_audit_log().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "pruned the audit log"),
                    Err(e) => tracing::warn!(error = %e, "could not prune the audit log; will retry"),
                }
            }
        }
    }
}

impl Inner {
    /// A token's write-behind write is due: hand it to the background task, or, with
    /// none running, write it in a task of its own.
    #[cold]
    pub(super) fn write_due(self: &Arc<Self>, token: &Arc<CachedToken>) {
        let tasks = &self.tasks;
        if tasks.running.load(Ordering::Acquire) {
            // A full queue leaves the use pending in the write-behind list: the periodic
            // or the final flush writes it.
            match tasks.due.try_send(token.clone()) {
                Err(mpsc::error::TrySendError::Closed(_)) => {}
                _ => return,
            }
        }
        if !tasks.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "tower-pat: the authenticator's background task is not running, so uses are \
                 written in tasks of their own and other replicas' changes are seen only when \
                 the cache TTL lapses (this is logged once): spawn `auth.background()`"
            );
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (inner, token) = (self.clone(), token.clone());
            drop(handle.spawn(async move {
                let _ = inner.write_back(&token).await;
            }));
        }
    }
}
