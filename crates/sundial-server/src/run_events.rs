//! The cached history of one run, kept in its encoded (protobuf) form.
//!
//! A decoded `HistoryEvent` is as large as its largest attribute variant (well over a
//! kilobyte) while most events encode to a few dozen bytes, so the cache keeps the bytes that
//! were committed and decodes only the events a reply needs.
//!
//! Invariant: once loaded, `events[i]` is the encoding of event id `i + 1` (history is dense
//! and starts at 1). Before loading, the cache holds nothing and must be filled from the store.

use crate::error::ServiceError;
use prost::Message;
use sundial_engine::api::history::v1::HistoryEvent;

/// One run's history, encoded, in event-id order.
#[derive(Debug, Default)]
pub struct RunEvents {
    loaded: bool,
    events: Vec<Box<[u8]>>,
}

fn decode(data: &[u8]) -> Result<HistoryEvent, ServiceError> {
    HistoryEvent::decode(data)
        .map_err(|e| ServiceError::Internal(format!("corrupt history event: {e}")))
}

impl RunEvents {
    /// A cache that must be loaded from the store before use.
    pub fn unloaded() -> Self {
        Self::default()
    }

    /// A loaded cache holding a new run's events as (event id, encoding), from event id 1.
    pub fn from_encoded(events: Vec<(i64, Vec<u8>)>) -> Self {
        let mut cache = RunEvents {
            loaded: true,
            events: Vec::with_capacity(events.len()),
        };
        for (event_id, data) in events {
            cache.push(event_id, data);
        }
        cache
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Fills the cache with the store's rows (every event of the run, in order).
    pub fn load(&mut self, rows: Vec<Vec<u8>>) {
        self.events = rows.into_iter().map(Vec::into_boxed_slice).collect();
        self.loaded = true;
    }

    /// Appends the encoding of `event_id`, which must be the next event id.
    pub fn push(&mut self, event_id: i64, encoded: Vec<u8>) {
        debug_assert_eq!(event_id, self.events.len() as i64 + 1, "history is dense");
        self.events.push(encoded.into_boxed_slice());
    }

    /// Number of events cached (the last event id, once loaded).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Index range of event ids `first..=last`, clipped to what is cached.
    fn span(&self, first: i64, last: i64) -> std::ops::Range<usize> {
        let len = self.events.len();
        let start = usize::try_from(first.max(1) - 1).unwrap_or(0).min(len);
        let end = usize::try_from(last.max(0)).unwrap_or(0).min(len);
        start..end.max(start)
    }

    /// The encoded events with ids `first..=last` that exist.
    pub fn encoded(&self, first: i64, last: i64) -> impl Iterator<Item = &[u8]> {
        self.events[self.span(first, last)].iter().map(|e| &e[..])
    }

    /// The events with ids `first..=last` that exist, decoded.
    pub fn decode_range(&self, first: i64, last: i64) -> Result<Vec<HistoryEvent>, ServiceError> {
        self.encoded(first, last).map(decode).collect()
    }

    /// Event `event_id`, decoded, if it exists.
    pub fn get(&self, event_id: i64) -> Result<Option<HistoryEvent>, ServiceError> {
        self.encoded(event_id, event_id)
            .next()
            .map(decode)
            .transpose()
    }

    /// The events from the newest back, decoded, skipping `skip` and yielding at most `take`.
    pub fn decode_newest(
        &self,
        skip: usize,
        take: usize,
    ) -> Result<Vec<HistoryEvent>, ServiceError> {
        self.events
            .iter()
            .rev()
            .skip(skip)
            .take(take)
            .map(|e| decode(e))
            .collect()
    }

    /// The first `Some` that `f` gives for the events from the newest back.
    pub fn find_newest<T>(
        &self,
        mut f: impl FnMut(HistoryEvent) -> Option<T>,
    ) -> Result<Option<T>, ServiceError> {
        for data in self.events.iter().rev() {
            if let Some(found) = f(decode(data)?) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64) -> HistoryEvent {
        HistoryEvent {
            event_id: id,
            ..Default::default()
        }
    }

    #[test]
    fn ranges_are_by_event_id_and_clipped() {
        let cache =
            RunEvents::from_encoded((1..=3).map(|id| (id, event(id).encode_to_vec())).collect());
        let ids = |v: Vec<HistoryEvent>| v.iter().map(|e| e.event_id).collect::<Vec<_>>();
        assert_eq!(ids(cache.decode_range(2, 3).unwrap()), vec![2, 3]);
        assert_eq!(ids(cache.decode_range(0, 100).unwrap()), vec![1, 2, 3]);
        assert!(cache.decode_range(4, 9).unwrap().is_empty());
        assert!(cache.decode_range(3, 2).unwrap().is_empty());
        assert_eq!(cache.get(2).unwrap().map(|e| e.event_id), Some(2));
        assert_eq!(cache.get(7).unwrap(), None);
        assert_eq!(ids(cache.decode_newest(1, 5).unwrap()), vec![2, 1]);
        let found = cache.find_newest(|e| (e.event_id < 3).then_some(e.event_id));
        assert_eq!(found.unwrap(), Some(2));
    }

    #[test]
    fn corrupt_bytes_are_an_error() {
        let mut cache = RunEvents::unloaded();
        cache.load(vec![vec![0xff, 0xff, 0xff]]);
        assert!(cache.get(1).is_err());
    }
}
