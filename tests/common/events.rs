//! An event sink for tests: keeps every event it is given.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_pat::{Event, EventSink};

/// Keeps every event it is given; clones share the list.
#[derive(Debug, Default, Clone)]
pub struct Collect(Arc<Mutex<Vec<Event>>>);

#[async_trait::async_trait]
impl EventSink for Collect {
    async fn record(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Collect {
    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Waits up to 2 s for `n` events, then returns what there is.
    pub async fn wait_for(&self, n: usize) -> Vec<Event> {
        for _ in 0..100 {
            if self.0.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.events()
    }
}
