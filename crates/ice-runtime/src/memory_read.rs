//! Reading memory: scoped views, semantic search over ACTIVE items, and the record of every read.
//!
//! Who sees what: operators, auditors and approvers see every namespace; an agent sees a namespace only while it
//! holds a live grant of `memory.read` on `memory:<namespace>` (a grant on `memory:team` covers `team/deploys`) and
//! is not suspended.
//! Every `search` and `show` is recorded as `MemoryRead` — the reader, the query's hash, the index version and the
//! items returned with their content hashes — so an audit can say exactly what a model was shown before it
//! proposed something (`memory_reads`).
//!
//! The index is rebuilt from derived state, never the other way round: before each search it drops every item that
//! is no longer ACTIVE and embeds the ones it has not seen (outside the state lock), and the search itself skips
//! items past their expiry. Its version (`<embedder id>@<seq of the last memory change>`) is recorded with each
//! read. Results are an input to whatever the reader proposes next, never a decision.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ice_core::grant::Grant;
use ice_core::memory::{MemoryItem, MemoryRead, MemoryState, MemoryStatus, ReadItem, check_namespace};
use ice_core::{ErrorCode, Event, EventId, EventKind, LedgerState, Principal, Rejection, Role, RunId, Timestamp};
use ice_memory::{Embedder, HashEmbedder, VectorIndex};
use ice_store::EventQuery;
use serde_json::{Value, json};

use crate::caller::Caller;
use crate::memory::READ_ACTION;
use crate::runtime::{Runtime, RuntimeError};

/// Most results one search returns.
pub const MAX_K: usize = 50;

/// What an item carries in the index besides its vector.
#[derive(Debug, Clone)]
struct Meta {
    namespace: String,
    expires_at: Option<Timestamp>,
}

/// The vector index over ACTIVE memory items, kept in step with derived state.
pub(crate) struct MemoryIndex {
    embedder: Arc<dyn Embedder>,
    index: VectorIndex<EventId>,
    meta: BTreeMap<EventId, Meta>,
    /// The memory state's `changed_at` the index reflects.
    synced: Option<u64>,
}

impl MemoryIndex {
    pub(crate) fn new(embedder: Arc<dyn Embedder>) -> Self {
        let index = VectorIndex::new(embedder.dims());
        Self { embedder, index, meta: BTreeMap::new(), synced: None }
    }

    pub(crate) fn default_embedder() -> Self {
        Self::new(Arc::new(HashEmbedder::default()))
    }
}

/// A search or show and what it returned.
#[derive(Debug, Clone)]
pub struct MemoryReadOutcome {
    /// The items returned (their JSON form; search results carry `score`), best first.
    pub items: Vec<Value>,
    /// The `MemoryRead` record.
    pub read: Event,
}

/// One recorded read of an item and the reader's next proposal after it.
#[derive(Debug, Clone)]
pub struct MemoryReadRecord {
    /// The `MemoryRead` event.
    pub read: Event,
    /// The first `ProposalSubmitted` by the same reader (in the same run, when the read named one) after it.
    pub followed_by: Option<Event>,
}

impl MemoryReadRecord {
    /// The JSON form the CLI and the API show.
    pub fn to_json(&self) -> Value {
        let p: Option<MemoryRead> = serde_json::from_str(self.read.payload.as_str()).ok();
        let next = self.followed_by.as_ref().map(|e| {
            let pr: Option<ice_core::Proposal> = serde_json::from_str(e.payload.as_str()).ok();
            json!({"proposal_id": e.event_id.to_string(), "seq": e.seq.0, "action": pr.as_ref().map(|p| p.action.clone()),
                "resource": pr.map(|p| p.resource)})
        });
        json!({
            "read_id": self.read.event_id.to_string(),
            "seq": self.read.seq.0,
            "time": self.read.time.to_rfc3339(),
            "run_id": self.read.run_id.map(|r| r.to_string()),
            "reader": p.as_ref().map(|p| p.reader.to_string()),
            "mode": p.as_ref().map(|p| p.mode.clone()),
            "query_hash": p.as_ref().map(|p| p.query_hash.clone()),
            "index": p.as_ref().map(|p| p.index.clone()),
            "items": p.map(|p| p.items.iter().map(|i| i.item.to_string()).collect::<Vec<_>>()),
            "followed_by": next,
        })
    }
}

/// A search.
#[derive(Debug, Clone, Default)]
pub struct MemoryQuery {
    /// The text to search for.
    pub query: String,
    /// Only this namespace and those below it.
    pub namespace: Option<String>,
    /// Results wanted (1..=50; 0 means 5).
    pub k: usize,
    /// The reader's run (the read is recorded in it).
    pub run: Option<String>,
}

/// The namespaces a caller may read: all (humans with a reading role) or those an agent's live grants cover.
enum Scope {
    All,
    Grants(Principal, Option<RunId>, Vec<Grant>),
}

impl Scope {
    fn allows(&self, namespace: &str) -> bool {
        match self {
            Self::All => true,
            Self::Grants(who, run, grants) => {
                let resource = format!("memory:{namespace}");
                grants.iter().any(|g| g.covers(who, *run, READ_ACTION, &resource))
            }
        }
    }
}

fn under(namespace: &str, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| namespace == f || namespace.strip_prefix(f).is_some_and(|rest| rest.starts_with('/')))
}

fn bad(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Rejected { rejection: Rejection::new(ErrorCode::BadArgument, message), record: None }
}

impl Runtime {
    /// Uses `embedder` for memory search from now on (the index is rebuilt at the next search).
    pub fn set_embedder(&self, embedder: Arc<dyn Embedder>) {
        *self.memory_index() = MemoryIndex::new(embedder);
    }

    fn memory_index(&self) -> MutexGuard<'_, MemoryIndex> {
        self.memory_index_cell().lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reading_scope(&self, caller: &Caller, run: Option<RunId>, what: &str) -> Result<Scope, RuntimeError> {
        self.require_any(caller, &[Role::Agent, Role::Operator, Role::Auditor, Role::Approver], what)?;
        if caller.has(Role::Operator) || caller.has(Role::Auditor) || caller.has(Role::Approver) {
            return Ok(Scope::All);
        }
        let now = self.now();
        let who = caller.principal().clone();
        // A suspended agent is fed nothing until it is resumed.
        let grants = self.with_state(|st| {
            if st.authority().suspended(&who).is_some() {
                return Vec::new();
            }
            st.authority()
                .grants()
                .values()
                .filter(|g| g.terms.principal == who && g.status(now) == ice_core::grant::GrantStatus::Live)
                .map(|g| (**g).clone())
                .collect()
        })?;
        Ok(Scope::Grants(who, run, grants))
    }

    /// Searches ACTIVE memory the caller may read for the `k` items nearest to the query, and records the read.
    pub fn memory_search(&self, caller: &Caller, q: &MemoryQuery) -> Result<MemoryReadOutcome, RuntimeError> {
        let k = if q.k == 0 { 5 } else { q.k };
        if k > MAX_K {
            return Err(bad(format!("k must be 1..={MAX_K}")));
        }
        if q.query.trim().is_empty() || q.query.chars().count() > ice_core::memory::MAX_TEXT_CHARS {
            return Err(bad("the query must be 1-4096 characters"));
        }
        if let Some(ns) = &q.namespace {
            check_namespace(ns).map_err(|rejection| RuntimeError::Rejected { rejection, record: None })?;
        }
        let run = q
            .run
            .as_deref()
            .map(str::parse::<RunId>)
            .transpose()
            .map_err(|rejection| RuntimeError::Rejected { rejection, record: None })?;
        let scope = self.reading_scope(caller, run, "searching memory")?;
        let now = self.now();
        let (hits, version) = {
            let mut index = self.memory_index();
            self.sync_index(&mut index)?;
            let vector =
                index.embedder.embed(&q.query).map_err(|e| bad(format!("the query cannot be embedded: {e}")))?;
            let meta = &index.meta;
            let keep = |id: &EventId| {
                meta.get(id).is_some_and(|m| {
                    m.expires_at.is_none_or(|t| t > now)
                        && under(&m.namespace, q.namespace.as_deref())
                        && scope.allows(&m.namespace)
                })
            };
            let hits = index.index.search(&vector, k, keep);
            (hits, format!("{}@{}", index.embedder.id(), index.synced.unwrap_or(0)))
        };
        let ids: Vec<EventId> = hits.iter().map(|h| h.key).collect();
        let items =
            self.with_state(|st| ids.iter().filter_map(|id| st.memory().get(*id).cloned()).collect::<Vec<_>>())?;
        let scores: BTreeMap<EventId, f32> = hits.iter().map(|h| (h.key, h.score)).collect();
        let read_items = items
            .iter()
            .map(|i| ReadItem {
                item: i.id,
                content_hash: i.content_hash.clone(),
                score_ppm: scores.get(&i.id).map(|s| (f64::from(*s) * 1e6).round() as i64),
            })
            .collect();
        let record = MemoryRead {
            reader: caller.principal().clone(),
            mode: "search".into(),
            query_hash: blake3::hash(q.query.as_bytes()).to_hex().to_string(),
            namespace: q.namespace.clone(),
            index: version,
            k: k as u32,
            items: read_items,
        };
        let read = self.record_read(run, &record)?;
        let items = items
            .iter()
            .map(|i| {
                let mut v = i.to_json(now);
                v["score"] = json!(scores.get(&i.id).copied().unwrap_or(0.0));
                v
            })
            .collect();
        Ok(MemoryReadOutcome { items, read })
    }

    /// One item (live, or rebuilt from the ledger once retired) if the caller may read its namespace; recorded.
    pub fn memory_show(
        &self,
        caller: &Caller,
        id: EventId,
        run: Option<&str>,
    ) -> Result<MemoryReadOutcome, RuntimeError> {
        let run = run
            .map(str::parse::<RunId>)
            .transpose()
            .map_err(|rejection| RuntimeError::Rejected { rejection, record: None })?;
        let scope = self.reading_scope(caller, run, "reading memory")?;
        let item = match self.with_state(|st| st.memory().get(id).cloned())? {
            Some(item) => Some(item),
            None => self.memory_history()?.get(id).cloned(),
        };
        let unknown = || RuntimeError::Rejected {
            rejection: Rejection::new(ErrorCode::UnknownMemoryItem, format!("no memory item {id} (that you may read)")),
            record: None,
        };
        let Some(item) = item.filter(|i| scope.allows(&i.promoted.namespace)) else { return Err(unknown()) };
        let record = MemoryRead {
            reader: caller.principal().clone(),
            mode: "show".into(),
            query_hash: blake3::hash(id.to_string().as_bytes()).to_hex().to_string(),
            namespace: Some(item.promoted.namespace.clone()),
            index: "direct".into(),
            k: 1,
            items: vec![ReadItem { item: id, content_hash: item.content_hash.clone(), score_ppm: None }],
        };
        let read = self.record_read(run, &record)?;
        Ok(MemoryReadOutcome { items: vec![item.to_json(self.now())], read })
    }

    fn record_read(&self, run: Option<RunId>, record: &MemoryRead) -> Result<Event, RuntimeError> {
        let draft = self.internal(EventKind::MemoryRead, Principal::runtime(), run, record);
        match draft {
            Ok(d) => self.commit(d),
            Err(rejection) => Err(RuntimeError::Rejected { rejection, record: None }),
        }
    }

    /// Memory items for an operator, auditor or approver: those in derived state, or with `all` every item the
    /// ledger ever promoted (rebuilt from its memory events), filtered by namespace and status (as of now).
    pub fn memory_list(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
        status: Option<MemoryStatus>,
        all: bool,
    ) -> Result<Vec<Value>, RuntimeError> {
        self.require_any(caller, &[Role::Operator, Role::Auditor, Role::Approver], "listing memory")?;
        let now = self.now();
        let pick = |items: &ice_core::OrdMap<EventId, std::sync::Arc<MemoryItem>>| -> Vec<Value> {
            items
                .values()
                .filter(|i| under(&i.promoted.namespace, namespace))
                .filter(|i| status.is_none_or(|s| i.status_at(now) == s))
                .map(|i| i.to_json(now))
                .collect()
        };
        if all {
            return Ok(pick(self.memory_history()?.items()));
        }
        self.with_state(|st| pick(st.memory().items()))
    }

    /// Every recorded read that returned `item`, with the reader's next proposal after each (operator or auditor).
    pub fn memory_reads(&self, caller: &Caller, item: EventId) -> Result<Vec<MemoryReadRecord>, RuntimeError> {
        self.require_any(caller, &[Role::Operator, Role::Auditor], "listing memory reads")?;
        let reads = self.read_all(&EventQuery { kind: Some(EventKind::MemoryRead), ..EventQuery::default() })?;
        let mut out = Vec::new();
        for read in reads {
            let Ok(p) = serde_json::from_str::<MemoryRead>(read.payload.as_str()) else { continue };
            if !p.items.iter().any(|i| i.item == item) {
                continue;
            }
            let q = EventQuery {
                after: read.seq,
                run: read.run_id,
                kind: Some(EventKind::ProposalSubmitted),
                limit: 200,
                ..EventQuery::default()
            };
            let followed_by = self.store().read(&q)?.into_iter().find(|e| e.origin == p.reader);
            out.push(MemoryReadRecord { read, followed_by });
        }
        Ok(out)
    }

    /// Every memory item the ledger holds, folded afresh from its memory events (retired ones included).
    pub fn memory_history(&self) -> Result<MemoryState, RuntimeError> {
        let kinds = [
            EventKind::MemoryPromoted,
            EventKind::MemoryExpired,
            EventKind::MemoryDeprecated,
            EventKind::MemorySuperseded,
            EventKind::MemoryInvalidated,
        ];
        let mut events = Vec::new();
        for kind in kinds {
            events.extend(self.read_all(&EventQuery { kind: Some(kind), ..EventQuery::default() })?);
        }
        events.sort_by_key(|e| e.seq);
        let mut state = MemoryState::default();
        for e in &events {
            state.apply(e).map_err(|r| RuntimeError::Corrupt { seq: e.seq.0, message: r.message })?;
        }
        Ok(state)
    }

    /// Brings the index in step with derived state: drops what is no longer ACTIVE, embeds what is new (texts are
    /// copied out under the state lock and embedded after it is released).
    fn sync_index(&self, index: &mut MemoryIndex) -> Result<(), RuntimeError> {
        let seen = &*index;
        let (changed_at, gone, new) = self.with_state(|st: &LedgerState| {
            let memory = st.memory();
            if seen.synced == Some(memory.changed_at()) {
                return (memory.changed_at(), Vec::new(), Vec::new());
            }
            let active = |id: &EventId| memory.get(*id).is_some_and(|i| i.status == MemoryStatus::Active);
            let gone: Vec<EventId> = seen.meta.keys().copied().filter(|id| !active(id)).collect();
            let new: Vec<(EventId, String, Meta)> = memory
                .items()
                .values()
                .filter(|i| i.status == MemoryStatus::Active && !seen.meta.contains_key(&i.id))
                .map(|i| {
                    let meta = Meta { namespace: i.promoted.namespace.clone(), expires_at: i.promoted.expires_at };
                    (i.id, i.promoted.text.clone(), meta)
                })
                .collect();
            (memory.changed_at(), gone, new)
        })?;
        for id in gone {
            index.index.remove(&id);
            index.meta.remove(&id);
        }
        for (id, text, meta) in new {
            let vector = index.embedder.embed(&text).map_err(|e| RuntimeError::Corrupt {
                seq: changed_at,
                message: format!("memory item {id} cannot be embedded: {e}"),
            })?;
            index.index.insert(id, &vector);
            index.meta.insert(id, meta);
        }
        index.synced = Some(changed_at);
        Ok(())
    }
}

/// The runtime's index cell.
pub(crate) type IndexCell = Mutex<MemoryIndex>;
