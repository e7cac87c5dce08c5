//! In-process caches in front of the database.
//!
//! - `bodies`: the text of stored versions, keyed by version. A stored version never changes,
//!   so this is safe on every backend, even with several replicas.
//! - `current`: which version is current (a small pointer, no body), only on SQLite. The
//!   embedded database belongs to one process and every write passes through this store, so
//!   the pointer cannot miss a change. On PostgreSQL other replicas write too, so the current
//!   version is always looked up in the database.
//!
//! A read that fills `current` after a miss must not put back a pointer older than one a writer
//! has just published; a per-shard generation counter, taken under the same lock the writer
//! holds while it publishes, makes the fill and the publish mutually exclusive.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use domain::ResourceType;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// What the current-version cache knows of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pointer {
    pub(crate) version_id: i64,
    pub(crate) last_updated_ms: i64,
    pub(crate) deleted: bool,
}

/// A stored version's text and when it was written.
#[derive(Clone, Debug)]
pub(crate) struct Body {
    pub(crate) last_updated_ms: i64,
    pub(crate) text: Arc<str>,
}

type VersionKey = (ResourceType, Box<str>, i64);
type ResourceKey = (ResourceType, Box<str>);

#[derive(Clone)]
struct ByBytes;

impl Weighter<VersionKey, Body> for ByBytes {
    fn weight(&self, key: &VersionKey, body: &Body) -> u64 {
        (key.1.len() + body.text.len() + 72) as u64
    }
}

const SHARDS: usize = 64;
/// Bytes a pointer entry costs, roughly, to size the pointer cache from the byte budget.
const POINTER_BYTES: u64 = 128;

/// The caches of one store.
pub(crate) struct Caches {
    bodies: Option<Cache<VersionKey, Body, ByBytes>>,
    current: Option<Cache<ResourceKey, Pointer>>,
    generations: Vec<Mutex<u64>>,
}

impl Caches {
    /// Caches within about `bytes` in all; zero disables them. `current` only when `cache_current`.
    pub(crate) fn new(bytes: u64, cache_current: bool) -> Self {
        let pointer_budget = if cache_current { bytes / 8 } else { 0 };
        let body_budget = bytes - pointer_budget;
        Self {
            bodies: (body_budget > 0)
                .then(|| Cache::with_weighter((body_budget / 2048).max(16) as usize, body_budget, ByBytes)),
            current: (pointer_budget > 0).then(|| Cache::new((pointer_budget / POINTER_BYTES).max(16) as usize)),
            generations: (0..SHARDS).map(|_| Mutex::new(0)).collect(),
        }
    }

    /// The text of a stored version, if cached.
    pub(crate) fn body(&self, ty: ResourceType, id: &str, version_id: i64) -> Option<Body> {
        self.bodies.as_ref()?.get(&(ty, Box::from(id), version_id))
    }

    /// Remember the text of a stored version.
    pub(crate) fn put_body(&self, ty: ResourceType, id: &str, version_id: i64, body: Body) {
        if let Some(cache) = &self.bodies {
            cache.insert((ty, Box::from(id), version_id), body);
        }
    }

    /// Which version is current, if known (SQLite only).
    pub(crate) fn current(&self, ty: ResourceType, id: &str) -> Option<Pointer> {
        self.current.as_ref()?.get(&(ty, Box::from(id)))
    }

    /// The generation to hand back to `fill_current` after reading the database.
    pub(crate) fn generation(&self, ty: ResourceType, id: &str) -> u64 {
        *lock(&self.generations[shard(ty, id)])
    }

    /// Cache what a read found, unless a write to the same shard was published since `generation`.
    pub(crate) fn fill_current(&self, ty: ResourceType, id: &str, generation: u64, pointer: Pointer) {
        let Some(cache) = &self.current else { return };
        let guard = lock(&self.generations[shard(ty, id)]);
        if *guard == generation {
            cache.insert((ty, Box::from(id)), pointer);
        }
    }

    /// Publish a committed write.
    pub(crate) fn publish(&self, ty: ResourceType, id: &str, pointer: Pointer, text: Option<Arc<str>>) {
        if let Some(text) = text {
            self.put_body(ty, id, pointer.version_id, Body { last_updated_ms: pointer.last_updated_ms, text });
        }
        if let Some(cache) = &self.current {
            let mut guard = lock(&self.generations[shard(ty, id)]);
            let key = (ty, Box::from(id));
            // Writers of one batch publish in any order: keep the newest version.
            if cache.get(&key).is_none_or(|old| old.version_id <= pointer.version_id) {
                cache.insert(key, pointer);
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
