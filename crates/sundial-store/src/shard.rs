//! Partitioning of shard-owned rows (runs, schedules, batch jobs) and the fence every write of
//! them carries.
//!
//! Every such row belongs to a *slot*, a hash of its namespace and id into [`SLOTS`] fixed
//! values that never changes for a row. Slots are grouped into shards: shard `s` of `n` holds
//! the contiguous range [`slots_of`]`(s, n)`, so the shard count can grow later by splitting
//! ranges without rewriting a row. A shard is owned by one node at a time through a lease row
//! in the store whose epoch rises with every acquisition; each write names the shard and epoch
//! it was made under ([`ShardFence`]) and the store refuses it once the epoch moved on
//! ([`crate::StoreError::OwnershipLost`]), so a node that lost its lease can never write again.
//! A single server owns the one shard of its database.

use std::ops::RangeInclusive;

/// Number of slots: fixed for every database, whatever its shard count.
pub const SLOTS: u32 = 4096;

/// The slot of a row of `namespace` named `id` (a workflow id, schedule id or batch job id).
///
/// FNV-1a over the two names with a zero byte between them, written here rather than taken
/// from a hasher: the value is stored and must stay the same across releases, platforms and
/// Rust versions, which `std`'s hashers do not promise.
pub fn slot_of(namespace: &str, id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let bytes = namespace.bytes().chain([0]).chain(id.bytes());
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SLOTS
}

/// The shard holding `slot` when the database has `shard_count` shards (at least 1).
pub fn shard_of_slot(slot: u32, shard_count: u32) -> u32 {
    let count = shard_count.clamp(1, SLOTS);
    (u64::from(slot.min(SLOTS - 1)) * u64::from(count) / u64::from(SLOTS)) as u32
}

/// The slots of `shard` of `shard_count` (the inverse of [`shard_of_slot`]).
pub fn slots_of(shard: u32, shard_count: u32) -> RangeInclusive<u32> {
    let count = u64::from(shard_count.clamp(1, SLOTS));
    let shard = u64::from(shard).min(count - 1);
    let first = (shard * u64::from(SLOTS)).div_ceil(count);
    let end = ((shard + 1) * u64::from(SLOTS)).div_ceil(count);
    first as u32..=(end as u32 - 1)
}

/// The ownership a write is made under: the shard of every shard-owned row it writes, and the
/// epoch of the lease its writer holds on that shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardFence {
    pub shard: u32,
    pub epoch: i64,
}

impl ShardFence {
    /// The error for a write or renewal under this fence after the shard's epoch has moved
    /// on (another node took the lease, or it was taken again). The message is the same on
    /// every backend (PostgreSQL's fence trigger raises it too).
    pub fn lost(self) -> crate::StoreError {
        crate::StoreError::OwnershipLost(format!(
            "shard {} is no longer held at epoch {}",
            self.shard, self.epoch
        ))
    }
}

/// A shard's lease as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLease {
    pub shard: u32,
    /// The node holding it (empty before anyone took it).
    pub owner: String,
    pub epoch: i64,
    /// Unix milliseconds after which another node may take it.
    pub expires_ms: i64,
}

impl ShardLease {
    /// Whether `owner` may take the lease at `now_ms`: it is free, expired, or already its own.
    pub fn can_be_taken_by(&self, owner: &str, now_ms: i64) -> bool {
        self.owner.is_empty() || self.owner == owner || self.expires_ms <= now_ms
    }
}

/// Checks that `batch` carries a fence when it writes shard-owned rows and that every row it
/// names by id belongs to the fenced shard; the fence to verify against the lease, if any.
/// (Events and deletions name runs only: they travel with their run's rows.)
pub(crate) fn fence_of(
    batch: &crate::WriteBatch,
    shard_count: u32,
) -> Result<Option<ShardFence>, crate::StoreError> {
    let owned = !(batch.executions.is_empty()
        && batch.events.is_empty()
        && batch.visibility.is_empty()
        && batch.deleted_runs.is_empty()
        && batch.schedules.is_empty()
        && batch.batch_jobs.is_empty());
    let Some(fence) = batch.fence else {
        return if owned {
            Err(crate::StoreError::Backend(
                "a write of shard-owned rows carries no shard fence".into(),
            ))
        } else {
            Ok(None)
        };
    };
    let names = batch
        .executions
        .iter()
        .map(|e| (&e.namespace, &e.workflow_id))
        .chain(
            batch
                .visibility
                .iter()
                .map(|v| (&v.namespace, &v.workflow_id)),
        )
        .chain(
            batch
                .schedules
                .iter()
                .map(|s| (&s.namespace, &s.schedule_id)),
        )
        .chain(batch.batch_jobs.iter().map(|j| (&j.namespace, &j.job_id)));
    for (namespace, id) in names {
        let shard = shard_of_slot(slot_of(namespace, id), shard_count);
        if shard != fence.shard {
            return Err(crate::StoreError::OwnershipLost(format!(
                "{id:?} of namespace {namespace:?} belongs to shard {shard}, not to shard {} the write is fenced for",
                fence.shard
            )));
        }
    }
    Ok(Some(fence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_values() {
        // Stored in every database: these values must never change.
        assert_eq!(slot_of("default", "order-1"), slot_of("default", "order-1"));
        assert_ne!(slot_of("default", "ab"), slot_of("defaulta", "b"));
        assert_eq!(slot_of("", ""), 0x050c_5d1f % SLOTS);
        assert!(slot_of("default", "x") < SLOTS);
    }

    #[test]
    fn shards_partition_the_slots_into_contiguous_ranges() {
        for count in [1, 2, 3, 7, 64, 4096] {
            let mut next = 0;
            for shard in 0..count {
                let slots = slots_of(shard, count);
                assert_eq!(*slots.start(), next, "count {count} shard {shard}");
                for slot in [*slots.start(), *slots.end()] {
                    assert_eq!(
                        shard_of_slot(slot, count),
                        shard,
                        "count {count} slot {slot}"
                    );
                }
                next = slots.end() + 1;
            }
            assert_eq!(next, SLOTS);
        }
        assert_eq!(slots_of(0, 1), 0..=SLOTS - 1);
    }

    #[test]
    fn a_lease_is_taken_when_free_expired_or_already_held() {
        let lease = ShardLease {
            shard: 0,
            owner: "a".into(),
            epoch: 3,
            expires_ms: 1_000,
        };
        assert!(lease.can_be_taken_by("a", 0));
        assert!(!lease.can_be_taken_by("b", 999));
        assert!(lease.can_be_taken_by("b", 1_000));
    }
}
