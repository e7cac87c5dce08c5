//! In-process caches in front of the database.
//!
//! - `versions`: vread answers. A stored version never changes, so caching it is safe on every
//!   backend, even with several replicas.
//! - `current`: read answers, only on SQLite. The embedded database belongs to one process, and
//!   every write passes through this store, so the cache cannot miss a change. On PostgreSQL
//!   other replicas write too, so current versions are always read from the database.
//!
//! A read that fills `current` after a miss must not put back a version older than one a writer
//! has just committed; a per-shard generation counter, taken under the same lock the writer
//! holds while it publishes, makes the fill and the publish mutually exclusive.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use domain::ResourceType;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// A cached version: what `read` and `vread` need, body shared.
#[derive(Clone, Debug)]
pub(crate) struct Cached {
    pub(crate) version_id: i64,
    pub(crate) last_updated_ms: i64,
    /// `None` when the version is a deletion.
    pub(crate) body: Option<Arc<str>>,
}

type Key = (ResourceType, Box<str>, i64);

#[derive(Clone)]
struct ByBytes;

impl Weighter<Key, Cached> for ByBytes {
    fn weight(&self, key: &Key, value: &Cached) -> u64 {
        (key.1.len() + value.body.as_ref().map_or(0, |b| b.len()) + 96) as u64
    }
}

const SHARDS: usize = 64;

/// The caches of one store.
pub(crate) struct Caches {
    versions: Option<Cache<Key, Cached, ByBytes>>,
    current: Option<Cache<Key, Cached, ByBytes>>,
    generations: Vec<Mutex<u64>>,
}

impl Caches {
    /// Caches of at most `bytes` each; zero disables them. `current` only when `cache_current`.
    pub(crate) fn new(bytes: u64, cache_current: bool) -> Self {
        let make = || (bytes > 0).then(|| Cache::with_weighter((bytes / 2048).max(16) as usize, bytes, ByBytes));
        Self {
            versions: make(),
            current: if cache_current { make() } else { None },
            generations: (0..SHARDS).map(|_| Mutex::new(0)).collect(),
        }
    }

    pub(crate) fn version(&self, ty: ResourceType, id: &str, version_id: i64) -> Option<Cached> {
        self.versions.as_ref()?.get(&(ty, Box::from(id), version_id))
    }

    pub(crate) fn put_version(&self, ty: ResourceType, id: &str, cached: Cached) {
        if let Some(cache) = &self.versions {
            cache.insert((ty, Box::from(id), cached.version_id), cached);
        }
    }

    pub(crate) fn current(&self, ty: ResourceType, id: &str) -> Option<Cached> {
        self.current.as_ref()?.get(&(ty, Box::from(id), 0))
    }

    /// The generation to hand back to `fill_current` after reading the database.
    pub(crate) fn generation(&self, ty: ResourceType, id: &str) -> u64 {
        *lock(&self.generations[shard(ty, id)])
    }

    /// Cache what a read found, unless a write to the same shard was published since `generation`.
    pub(crate) fn fill_current(&self, ty: ResourceType, id: &str, generation: u64, cached: Cached) {
        let Some(cache) = &self.current else { return };
        let guard = lock(&self.generations[shard(ty, id)]);
        if *guard == generation {
            cache.insert((ty, Box::from(id), 0), cached);
        }
    }

    /// Publish a committed write.
    pub(crate) fn publish(&self, ty: ResourceType, id: &str, cached: Cached) {
        if cached.body.is_some() {
            self.put_version(ty, id, cached.clone());
        }
        if let Some(cache) = &self.current {
            let mut guard = lock(&self.generations[shard(ty, id)]);
            let key = (ty, Box::from(id), 0);
            // Writers of one batch publish in any order: keep the newest version.
            if cache.get(&key).is_none_or(|old| old.version_id <= cached.version_id) {
                cache.insert(key, cached);
            }
            *guard += 1;
        }
    }
}

fn lock(mutex: &Mutex<u64>) -> std::sync::MutexGuard<'_, u64> {
    // A poisoned lock still holds a valid counter.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shard(ty: ResourceType, id: &str) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ty.hash(&mut hasher);
    id.hash(&mut hasher);
    (hasher.finish() as usize) % SHARDS
}
