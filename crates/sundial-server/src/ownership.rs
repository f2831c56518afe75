//! The shards this server owns, and the fence each of its writes carries
//! (`sundial_store::shard`).
//!
//! A single server owns every shard of its database: it takes them all at start, and the
//! store's own exclusion (the file lock on SQLite, the writer lock on PostgreSQL) keeps a
//! second server out, so the leases are not renewed. Taking a shard raises its epoch, so
//! writes fenced by an earlier server (one whose database connection came back after another
//! took over) are refused by the store.

use crate::error::ServiceError;
use std::ops::RangeInclusive;
use sundial_store::shard::{shard_of_slot, slot_of, slots_of};
use sundial_store::{ShardFence, Store};

/// The owner name of a single server's leases: any single server may take them over.
const SINGLE_SERVER: &str = "single-server";

/// The shards held, by shard, with the fence of each.
#[derive(Debug)]
pub struct Ownership {
    shard_count: u32,
    fences: Vec<Option<ShardFence>>,
}

impl Ownership {
    /// Takes every shard of `store`; fails when one is held by a node of a cluster.
    pub async fn take_all(store: &dyn Store, now_ms: i64) -> Result<Ownership, ServiceError> {
        let shard_count = store.shard_count();
        let mut fences = Vec::with_capacity(shard_count as usize);
        for shard in 0..shard_count {
            let fence = store
                .acquire_shard(shard, SINGLE_SERVER, now_ms, 0)
                .await?
                .ok_or_else(|| {
                    ServiceError::Unavailable(format!(
                        "shard {shard} of the database is held by another node"
                    ))
                })?;
            fences.push(Some(fence));
        }
        Ok(Ownership {
            shard_count,
            fences,
        })
    }

    /// The fence for writing the rows of `namespace` named `id` (a workflow, schedule or
    /// batch job id); Unavailable when this server does not own their shard.
    pub fn fence(&self, namespace: &str, id: &str) -> Result<ShardFence, ServiceError> {
        let shard = shard_of_slot(slot_of(namespace, id), self.shard_count);
        self.fences
            .get(shard as usize)
            .copied()
            .flatten()
            .ok_or_else(|| {
                ServiceError::Unavailable(format!("shard {shard} is not owned by this server"))
            })
    }

    /// The slot ranges of the shards held.
    pub fn owned_slots(&self) -> Vec<RangeInclusive<u32>> {
        self.fences
            .iter()
            .flatten()
            .map(|f| slots_of(f.shard, self.shard_count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_single_server_takes_every_shard_again_on_each_start() {
        let store = sundial_store::SqliteStore::open(None).unwrap();
        let first = Ownership::take_all(&store, 0).await.unwrap();
        assert_eq!(first.fence("default", "wf").unwrap().epoch, 1);
        assert_eq!(
            first.owned_slots(),
            vec![0..=sundial_store::shard::SLOTS - 1]
        );
        let second = Ownership::take_all(&store, 0).await.unwrap();
        assert_eq!(second.fence("default", "wf").unwrap().epoch, 2);
    }
}
