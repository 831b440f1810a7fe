//! [`Background`]: the work an [`Authenticator`] needs done outside requests, as one
//! future the application spawns, and [`Authenticator::shutdown`], which stops it and
//! writes what is pending.
//!
//! Invariants:
//! - Nothing here starts by itself: [`Authenticator::build`](super::AuthenticatorBuilder::build)
//!   spawns nothing, and the work runs only while the application polls the future.
//! - At most one background future of an authenticator does anything (a second one
//!   returns at once), so no write and no change is handled twice.
//! - The future holds the authenticator weakly: it ends when the last clone is dropped,
//!   or when [`Authenticator::shutdown`] is called.
//! - Lifecycle events are delivered to the sinks beside the loop, not in it: a slow sink
//!   delays other events, never a write-back or a change; on shutdown the events already
//!   queued are delivered before the future returns.
//! - A use is never lost by the queue: a token queued for writing is also listed in the
//!   write-behind list until written, so the final flush writes what the queue did not.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::{Authenticator, Inner};
use crate::cache::CachedToken;
use crate::events;
use crate::store::{Change, ChangeFeed, StoreError, TokenStore};

/// Write-backs waiting for the background task; more wait in the write-behind list.
const DUE_CAPACITY: usize = 4096;
/// Change reports waiting to be applied; beyond this the cache is cleared instead.
const CHANGE_CAPACITY: usize = 1024;
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
    stop: Arc<Notify>,
}

impl Default for Tasks {
    fn default() -> Self {
        let (due, due_rx) = mpsc::channel(DUE_CAPACITY);
        Self {
            running: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            due,
            due_rx: Mutex::new(Some(due_rx)),
            stop: Arc::new(Notify::new()),
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
    /// - delivers lifecycle events to the event sinks.
    ///
    /// It runs until [`shutdown`](Self::shutdown) or until the last clone of the
    /// authenticator is dropped. Only the first future made does anything.
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
        let taken = self
            .inner
            .tasks
            .due_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let events = self.inner.events.take_receiver();
        let sinks = self.inner.events.sinks.clone();
        let weak = Arc::downgrade(&self.inner);
        let store = self.inner.store.clone();
        let stop = self.inner.tasks.stop.clone();
        let future = async move {
            let (Some(due), Some(mut events)) = (taken, events) else {
                tracing::warn!(
                    "tower-pat: Authenticator::background was called twice; the second one does nothing"
                );
                return;
            };
            // Sinks are awaited beside the loop, so a slow one delays no write-back and
            // no change: the loop ends on shutdown, then what is queued is delivered.
            let deliver_all = async {
                while let Some(event) = events.recv().await {
                    events::deliver(&sinks, &event).await;
                }
            };
            tokio::select! {
                () = run(weak, store, stop, due) => {}
                () = deliver_all => {}
            }
            while let Ok(event) = events.try_recv() {
                events::deliver(&sinks, &event).await;
            }
        };
        Background {
            future: Box::pin(future),
        }
    }

    /// Stops the [`background`](Self::background) future (it returns soon after) and
    /// writes every pending use to the store ([`flush`](Self::flush)). Call once, when
    /// the server has stopped taking requests; returns how many tokens were written.
    pub async fn shutdown(&self) -> Result<usize, StoreError> {
        self.inner.tasks.stop.notify_one();
        self.flush().await
    }
}

/// The loop of a [`Background`].
async fn run(
    weak: Weak<Inner>,
    store: Arc<dyn TokenStore>,
    stop: Arc<Notify>,
    mut due: mpsc::Receiver<Arc<CachedToken>>,
) {
    let sweep_period = {
        let Some(inner) = weak.upgrade() else { return };
        inner.tasks.running.store(true, Ordering::Release);
        inner.limiter.sweep_period()
    };
    let (feed, mut changes) = ChangeFeed::channel(CHANGE_CAPACITY);
    let follow = store.follow_changes(feed);
    tokio::pin!(follow);
    let mut following = true;
    let mut sweep = tokio::time::interval(sweep_period.unwrap_or(Duration::from_secs(3600)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(WRITES_PER_TURN);
    loop {
        tokio::select! {
            biased;
            () = stop.notified() => break,
            change = changes.recv(), if following => {
                let Some(inner) = weak.upgrade() else { break };
                match change {
                    Some(Change::Token(id)) => inner.invalidate_local(&id).await,
                    Some(Change::Lost) => {
                        tracing::warn!("token change messages may have been lost; clearing the cache");
                        inner.invalidate_all_local();
                    }
                    None => following = false,
                }
            }
            n = due.recv_many(&mut batch, WRITES_PER_TURN) => {
                // Every sender is in the authenticator: 0 means it is gone.
                if n == 0 {
                    break;
                }
                let Some(inner) = weak.upgrade() else { break };
                for token in batch.drain(..) {
                    let _ = inner.write_back(&token).await;
                }
            }
            () = &mut follow, if following => following = false,
            _ = sweep.tick(), if sweep_period.is_some() => {
                let Some(inner) = weak.upgrade() else { break };
                let swept = inner.limiter.sweep(inner.clock.unix_now());
                if swept > 0 {
                    tracing::trace!(swept, "forgot clients whose failed-attempt window passed");
                }
            }
        }
    }
    if let Some(inner) = weak.upgrade() {
        inner.tasks.running.store(false, Ordering::Release);
    }
}

impl Inner {
    /// A token's write-behind write is due: hand it to the background task, or, with
    /// none running, write it in a task of its own.
    #[cold]
    pub(super) fn write_due(self: &Arc<Self>, token: &Arc<CachedToken>) {
        let tasks = &self.tasks;
        if tasks.running.load(Ordering::Acquire) {
            // A full queue leaves the use pending in the write-behind list: the next due
            // write or the final flush writes it.
            let _ = tasks.due.try_send(token.clone());
            return;
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
