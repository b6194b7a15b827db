//! A map that remembers the hash of each entry, so the state root costs a hash per *changed* entry rather than a
//! re-encoding of the whole state at every checkpoint.
//!
//! Entry hash: blake3 over the RFC 8785 encoding of `[key, value]`. Map digest: blake3 over the map's name, its
//! length and the entry hashes in key order. Any mutable access forgets the entry's cached hash; the cache is never
//! serialised (a snapshot holds just the map) and never compared.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ErrorCode, Rejection};

/// A `BTreeMap` with cached per-entry hashes.
pub struct HashedMap<K, V> {
    map: BTreeMap<K, V>,
    cache: Mutex<BTreeMap<K, [u8; 32]>>,
}

impl<K: Ord + Clone, V> HashedMap<K, V> {
    fn forget(&mut self, k: &K) {
        self.cache.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).remove(k);
    }

    /// The plain map.
    pub fn as_map(&self) -> &BTreeMap<K, V> {
        &self.map
    }

    /// One entry.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    /// One entry, for changing it (its cached hash is dropped).
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.forget(k);
        self.map.get_mut(k)
    }

    /// Inserts or replaces an entry.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.forget(&k);
        self.map.insert(k, v)
    }

    /// Removes an entry.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.forget(k);
        self.map.remove(k)
    }

    /// Whether the key is present.
    pub fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    /// The values in key order.
    pub fn values(&self) -> std::collections::btree_map::Values<'_, K, V> {
        self.map.values()
    }
}

impl<K: Ord + Clone + Serialize, V: Serialize> HashedMap<K, V> {
    /// Feeds the map's digest to `h` (see the module docs), hashing only entries changed since the last time.
    pub fn digest(&self, name: &str, h: &mut blake3::Hasher) -> Result<(), Rejection> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut d = blake3::Hasher::new();
        d.update(&(name.len() as u64).to_be_bytes());
        d.update(name.as_bytes());
        d.update(&(self.map.len() as u64).to_be_bytes());
        for (k, v) in &self.map {
            let entry = match cache.get(k) {
                Some(e) => *e,
                None => {
                    let e = entry_hash(k, v)?;
                    cache.insert(k.clone(), e);
                    e
                }
            };
            d.update(&entry);
        }
        h.update(d.finalize().as_bytes());
        Ok(())
    }
}

fn entry_hash<K: Serialize, V: Serialize>(k: &K, v: &V) -> Result<[u8; 32], Rejection> {
    let encode = |e: &dyn std::fmt::Display| {
        Rejection::new(ErrorCode::BadPayloadStructure, format!("state cannot be encoded: {e}"))
    };
    let value = serde_json::to_value((k, v)).map_err(|e| encode(&e))?;
    let mut h = blake3::Hasher::new();
    crate::jcs::write_canonical(&value, &mut h).map_err(|e| encode(&e))?;
    Ok(*h.finalize().as_bytes())
}

impl<K, V> Default for HashedMap<K, V> {
    fn default() -> Self {
        Self { map: BTreeMap::new(), cache: Mutex::new(BTreeMap::new()) }
    }
}

impl<K: Clone, V: Clone> Clone for HashedMap<K, V> {
    fn clone(&self) -> Self {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Self { map: self.map.clone(), cache: Mutex::new(cache) }
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for HashedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Eq, V: Eq> Eq for HashedMap<K, V> {}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for HashedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map.fmt(f)
    }
}

impl<K: Serialize, V: Serialize> Serialize for HashedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for HashedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self { map: BTreeMap::deserialize(d)?, cache: Mutex::new(BTreeMap::new()) })
    }
}
