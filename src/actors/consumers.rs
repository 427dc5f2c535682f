//! The consumer directory: a [`ConsumerRecord`] per consumer, bounded in count.
//!
//! Every conversation may come from a new consumer, so an unbounded map would grow
//! with traffic forever. The records are kept in the order they were last written
//! (a FIFO of `(consumer, touch)` pairs); past `max_consumers` pairs the oldest goes,
//! and with it the record if that was its latest write. A consumer forgotten this way
//! is a first-time consumer again, as LivePerson's own consumer history is bounded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use dashmap::DashMap;

use crate::domain::consumer::ConsumerRecord;
use crate::ids::ConsumerId;
use crate::store::{Change, Store};

#[derive(Debug)]
pub struct Consumers {
    records: DashMap<ConsumerId, (ConsumerRecord, u64)>,
    order: Mutex<VecDeque<(ConsumerId, u64)>>,
    touches: AtomicU64,
    max: usize,
    /// Where each write is recorded, when the node has a store: a forgotten consumer
    /// is deleted from it too, so the store is bounded like the map.
    pub(crate) store: OnceLock<Arc<Store>>,
}

impl Consumers {
    pub fn new(max: usize) -> Self {
        Consumers {
            records: DashMap::new(),
            order: Mutex::new(VecDeque::new()),
            touches: AtomicU64::new(0),
            max,
            store: OnceLock::new(),
        }
    }

    pub fn get(&self, id: &ConsumerId) -> Option<ConsumerRecord> {
        self.records.get(id).map(|r| r.0.clone())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn order(&self) -> MutexGuard<'_, VecDeque<(ConsumerId, u64)>> {
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The consumer opened a conversation: remember that they wrote.
    pub fn opened(&self, id: &ConsumerId) {
        self.write(id, |_| {});
    }

    /// A record read back from the store at start (not written again).
    pub fn restore(&self, id: ConsumerId, record: ConsumerRecord) {
        self.insert(&id, |r| *r = record, false);
    }

    /// Changes (or creates) the consumer's record and makes it the newest.
    pub fn write(&self, id: &ConsumerId, change: impl FnOnce(&mut ConsumerRecord)) {
        self.insert(id, change, true);
    }

    fn insert(&self, id: &ConsumerId, change: impl FnOnce(&mut ConsumerRecord), persist: bool) {
        if self.max == 0 {
            return;
        }
        let touch = self.touches.fetch_add(1, Ordering::Relaxed);
        {
            let mut entry = self.records.entry(id.clone()).or_default();
            change(&mut entry.0);
            entry.1 = touch;
            if let (true, Some(store)) = (persist, self.store.get()) {
                store.write(Change::Consumer(id.clone(), entry.0.clone()));
            }
        }
        let evicted: Vec<(ConsumerId, u64)> = {
            let mut order = self.order();
            order.push_back((id.clone(), touch));
            let excess = order.len().saturating_sub(self.max);
            order.drain(..excess).collect()
        };
        for (id, touch) in evicted {
            let removed = self.records.remove_if(&id, |_, (_, latest)| *latest == touch);
            if let (Some(_), Some(store)) = (removed, self.store.get()) {
                store.write(Change::ForgetConsumer(id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AgentId;
    use crate::time::Timestamp;

    fn c(s: &str) -> ConsumerId {
        ConsumerId::new(s).expect("id")
    }

    #[test]
    fn the_least_recently_written_consumer_is_forgotten_past_the_bound() {
        let consumers = Consumers::new(2);
        consumers.opened(&c("u1"));
        consumers.opened(&c("u2"));
        let a = AgentId::new("a1").expect("id");
        consumers.write(&c("u1"), |r| {
            r.last_agent = Some((a.clone(), Timestamp::from_millis(5)))
        });
        consumers.opened(&c("u3"));
        assert!(consumers.get(&c("u2")).is_none(), "u2 was written longest ago");
        assert_eq!(
            consumers.get(&c("u1")).and_then(|r| r.last_agent),
            Some((a, Timestamp::from_millis(5)))
        );
        assert!(consumers.get(&c("u3")).is_some());
        assert!(consumers.len() <= 2);
    }
}
