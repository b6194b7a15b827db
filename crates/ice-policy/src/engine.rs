//! The compiled policy set: parsed once, ids mapped from `@id`, strictly validated against the schema; then
//! evaluated many times, building Cedar requests directly and caching entities per (principal, resource).

mod compile;
#[cfg(test)]
mod fast_tests;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use cedar_policy::{
    Authorizer, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Request,
    Response, RestrictedExpression, Schema,
};
use ice_core::{Access, Classification, Cost, EffectScope, Principal, PrincipalKind, Risk, Timestamp};

use crate::error::{PolicyError, chain};
use crate::request::{self, EntityPair, PolicyRequest, PreparedRequest, shorten, split_resource};
use crate::shape::{self, Shape};
use crate::source::PolicySource;
use crate::verdict::{PolicyOutcome, PolicyVerdict};

/// The Cedar namespace ICE's entity types and actions live in.
pub const NAMESPACE: &str = "Ice";

/// The annotation naming a policy.
pub const ID_ANNOTATION: &str = "id";

/// The annotation that turns a satisfied permit into a request for human approval.
pub const APPROVAL_ANNOTATION: &str = "require_approval";

/// How many (principal, resource) entity stores are cached before the cache is emptied and refilled.
const ENTITY_CACHE_CAPACITY: usize = 4096;

/// A validated, compiled policy set. Compile once, evaluate many times; `Send + Sync`, so one engine can be shared.
pub struct PolicyEngine {
    hash: String,
    policies: PolicySet,
    schema: Schema,
    authorizer: Authorizer,
    /// Our policy ids, sorted.
    ids: Vec<String>,
    /// Permit policies annotated `@require_approval`, with the annotation value.
    approvals: HashMap<PolicyId, String>,
    /// Declared (non-group) action names → their uids and fast-path facts.
    actions: HashMap<String, ActionInfo>,
    types: EntityTypes,
    /// Each action's declared args type, to explain a refused request.
    args_shapes: HashMap<String, Shape>,
    /// The schema's action entities; every request's entity store starts from them (for `action in ...`).
    action_entities: Entities,
    cache: Mutex<EntityCache>,
}

/// One declared action.
struct ActionInfo {
    uid: EntityUid,
    /// Set when the action's args type is exact (see [`Shape::is_exact`]) and a probe request validated at compile
    /// time: requests are then checked by ICE (args shape, principal kind) instead of Cedar's request validation.
    fast: Option<FastPath>,
}

/// What Cedar's request validation would check, precomputed for one action.
struct FastPath {
    /// The declared args type.
    args: Shape,
    /// The principal kinds the schema lets take the action (`appliesTo`).
    principals: Vec<PrincipalKind>,
}

/// The entity type names ICE builds requests with.
struct EntityTypes {
    agent: EntityTypeName,
    human: EntityTypeName,
    runtime: EntityTypeName,
    policy: EntityTypeName,
    effector: EntityTypeName,
    resource: EntityTypeName,
}

impl EntityTypes {
    fn new() -> Result<Self, PolicyError> {
        let name = |basename: &str| {
            EntityTypeName::from_str(&format!("{NAMESPACE}::{basename}"))
                .map_err(|e| PolicyError::Schema { message: format!("entity type {NAMESPACE}::{basename}: {e}") })
        };
        Ok(Self {
            agent: name("Agent")?,
            human: name("Human")?,
            runtime: name("Runtime")?,
            policy: name("Policy")?,
            effector: name("Effector")?,
            resource: name("Resource")?,
        })
    }

    fn principal(&self, kind: PrincipalKind) -> &EntityTypeName {
        match kind {
            PrincipalKind::Agent => &self.agent,
            PrincipalKind::Human => &self.human,
            PrincipalKind::Runtime => &self.runtime,
            PrincipalKind::Policy => &self.policy,
            PrincipalKind::Effector => &self.effector,
        }
    }
}

/// Entity stores per principal, then per resource. Emptied whole when full: entries are cheap to rebuild and
/// depend on nothing but their key (ICE entities carry no state from the ledger).
#[derive(Default)]
struct EntityCache {
    by_principal: HashMap<Principal, HashMap<String, Arc<EntityPair>>>,
    len: usize,
}

impl PolicyEngine {
    /// Parses every file, assigns policy ids from `@id("...")` annotations (default when absent:
    /// `<file name without .cedar>:<index in file>`), rejects duplicate ids, parses the schema, checks that it
    /// declares the entity types ICE builds, and runs Cedar's strict validator. Any error is returned (the caller
    /// keeps the previous engine in force).
    pub fn compile(source: &PolicySource) -> Result<PolicyEngine, PolicyError> {
        let types = EntityTypes::new()?;
        let compiled = compile::compile(source)?;
        let actions = compiled.actions.into_iter().map(|(name, uid)| (name, ActionInfo { uid, fast: None })).collect();
        let mut engine = PolicyEngine {
            hash: source.hash(),
            policies: compiled.policies,
            ids: compiled.ids,
            approvals: compiled.approvals,
            actions,
            action_entities: compiled.action_entities,
            schema: compiled.schema,
            types,
            args_shapes: shape::args_shapes(&source.schema),
            authorizer: Authorizer::new(),
            cache: Mutex::new(EntityCache::default()),
        };
        engine.check_entity_model()?;
        engine.probe_fast_paths();
        Ok(engine)
    }

    /// The hash of the source this engine was compiled from (equal to [`PolicySource::hash`]).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The policy ids, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        self.ids.clone()
    }

    /// The action names the schema declares (the ids of `Ice::Action` entities that apply to requests; action
    /// groups are left out), sorted.
    pub fn actions(&self) -> Vec<String> {
        let mut names: Vec<String> = self.actions.keys().cloned().collect();
        names.sort();
        names
    }

    /// Evaluates one request. Never panics: a request that cannot be built or validated against the schema, or a
    /// policy that errors, gives an `Error` verdict (unless a forbid is satisfied, which always wins).
    pub fn evaluate(&self, request: &PolicyRequest<'_>) -> PolicyVerdict {
        match self.prepare(request) {
            Ok(prepared) => {
                let response =
                    self.authorizer.is_authorized(&prepared.request, &self.policies, &prepared.entities.entities);
                self.verdict(&response)
            }
            Err(message) => PolicyVerdict::error(message),
        }
    }

    /// Builds and validates the Cedar request and its entity store, without evaluating it.
    pub fn prepare(&self, request: &PolicyRequest<'_>) -> Result<PreparedRequest, String> {
        let action = self.action(request.action)?;
        let Some(fast) = &action.fast else { return self.prepare_validated_by_cedar(request) };
        if !fast.principals.contains(&request.principal.kind) {
            return Err(shorten(format!(
                "the policy schema does not let {} principals take action `{}` (its appliesTo names {})",
                request.principal.kind.as_str(),
                request.action,
                self.principal_type_names(&fast.principals)
            )));
        }
        if let Some(why) = shape::explain(request.args, &fast.args) {
            return Err(shorten(format!("the args do not match the schema of `{}`: {why}", request.action)));
        }
        let context = request::context(request)?;
        let entities = self.entities_for(request.principal, request.resource)?;
        // Validated above exactly as Cedar would (see `shape`); the probe in `probe_fast_paths` proved the rest of
        // the context fits the schema.
        let cedar =
            Request::new(entities.principal.clone(), action.uid.clone(), entities.resource.clone(), context, None)
                .map_err(|e| shorten(format!("cannot build the request: {}", chain(&e))))?;
        Ok(PreparedRequest { request: cedar, entities })
    }

    fn action(&self, name: &str) -> Result<&ActionInfo, String> {
        self.actions.get(name).ok_or_else(|| shorten(format!("action `{name}` is not declared in the policy schema")))
    }

    fn principal_type_names(&self, kinds: &[PrincipalKind]) -> String {
        let names: Vec<String> = kinds.iter().map(|k| self.types.principal(*k).to_string()).collect();
        if names.is_empty() { "no ICE principal type".to_owned() } else { names.join(", ") }
    }

    /// Builds the request and has Cedar validate it against the schema (the path for args types the fast path
    /// does not cover, and the reference the fast path is tested against).
    fn prepare_validated_by_cedar(&self, request: &PolicyRequest<'_>) -> Result<PreparedRequest, String> {
        let action = self.action(request.action)?;
        let entities = self.entities_for(request.principal, request.resource)?;
        let context = request::context(request)?;
        let cedar = Request::new(
            entities.principal.clone(),
            action.uid.clone(),
            entities.resource.clone(),
            context,
            Some(&self.schema),
        )
        .map_err(|e| {
            let why = self.args_shapes.get(request.action).and_then(|s| shape::explain(request.args, s));
            shorten(match why {
                Some(why) => format!("the args do not match the schema of `{}`: {why}", request.action),
                None => format!("the request does not match the policy schema: {}", chain(&e)),
            })
        })?;
        Ok(PreparedRequest { request: cedar, entities })
    }

    /// Runs only Cedar's `Authorizer::is_authorized` on a prepared request: whether it is allowed. A baseline for
    /// benchmarks; deciding should use [`PolicyEngine::evaluate`].
    pub fn is_authorized_prepared(&self, prepared: &PreparedRequest) -> bool {
        let response = self.authorizer.is_authorized(&prepared.request, &self.policies, &prepared.entities.entities);
        response.decision() == Decision::Allow
    }

    /// Turns Cedar's response into a verdict (see [`PolicyOutcome`] for the rules).
    fn verdict(&self, response: &Response) -> PolicyVerdict {
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(|e| shorten(e.to_string())).collect();
        let mut determining: Vec<&PolicyId> = diagnostics.reason().collect();
        determining.sort();
        let policies: Vec<String> = determining.iter().map(|id| id.to_string()).collect();
        let outcome = match response.decision() {
            Decision::Deny if !policies.is_empty() => PolicyOutcome::Forbid,
            // A policy that errored is skipped by Cedar; it might have been a forbid, so never conclude from the
            // rest.
            _ if !errors.is_empty() => PolicyOutcome::Error,
            Decision::Deny => PolicyOutcome::NoPermit,
            Decision::Allow => PolicyOutcome::Permit,
        };
        let mut approval_reasons = Vec::new();
        if outcome == PolicyOutcome::Permit {
            for id in &determining {
                if let Some(reason) = self.approvals.get(*id)
                    && !approval_reasons.contains(reason)
                {
                    approval_reasons.push(reason.clone());
                }
            }
        }
        let outcome = if approval_reasons.is_empty() { outcome } else { PolicyOutcome::RequireApproval };
        PolicyVerdict { outcome, policies, approval_reasons, errors }
    }

    fn lock_cache(&self) -> MutexGuard<'_, EntityCache> {
        // The cache holds no invariant a panic could break halfway, so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached entity store for (principal, resource), built on a miss.
    fn entities_for(&self, principal: &Principal, resource: &str) -> Result<Arc<EntityPair>, String> {
        if let Some(hit) = self.lock_cache().by_principal.get(principal).and_then(|m| m.get(resource)) {
            return Ok(Arc::clone(hit));
        }
        let built = Arc::new(self.build_entities(principal, resource)?);
        let mut cache = self.lock_cache();
        if cache.len >= ENTITY_CACHE_CAPACITY {
            *cache = EntityCache::default();
        }
        let per_principal = cache.by_principal.entry(principal.clone()).or_default();
        if per_principal.insert(resource.to_owned(), Arc::clone(&built)).is_none() {
            cache.len += 1;
        }
        Ok(built)
    }

    fn build_entities(&self, principal: &Principal, resource: &str) -> Result<EntityPair, String> {
        let principal_uid = EntityUid::from_type_name_and_id(
            self.types.principal(principal.kind).clone(),
            EntityId::new(&principal.name),
        );
        let resource_uid = EntityUid::from_type_name_and_id(self.types.resource.clone(), EntityId::new(resource));
        let (scheme, path) = split_resource(resource);
        let attrs = HashMap::from([
            ("scheme".to_owned(), RestrictedExpression::new_string(scheme.to_owned())),
            ("path".to_owned(), RestrictedExpression::new_string(path.to_owned())),
        ]);
        let resource_entity = Entity::new(resource_uid.clone(), attrs, HashSet::new())
            .map_err(|e| shorten(format!("cannot build the resource entity: {}", chain(&e))))?;
        let principal_entity = Entity::new_no_attrs(principal_uid.clone(), HashSet::new());
        // No schema check here: the shapes are fixed, and `check_entity_model` proved at compile time that the
        // schema accepts them.
        let entities = self
            .action_entities
            .clone()
            .add_entities([principal_entity, resource_entity], None)
            .map_err(|e| shorten(format!("cannot build the request entities: {}", chain(&e))))?;
        Ok(EntityPair { principal: principal_uid, resource: resource_uid, entities })
    }

    /// Enables the fast path for every action whose args type is exact: a probe request (the smallest valid args)
    /// per principal kind is validated by Cedar; the kinds that pass are the ones the action applies to. If no
    /// kind passes, the rest of the context does not fit the schema and the action keeps Cedar's validation (whose
    /// message then says why each request is refused).
    fn probe_fast_paths(&mut self) {
        let mut found = Vec::new();
        for name in self.actions.keys() {
            let Some(args) = self.args_shapes.get(name).filter(|s| s.is_exact()) else { continue };
            let sample = args.sample();
            let principals: Vec<PrincipalKind> = PrincipalKind::ALL
                .into_iter()
                .filter(|&kind| {
                    let principal = Principal { kind, name: "probe".to_owned() };
                    let probe = PolicyRequest {
                        principal: &principal,
                        action: name,
                        resource: "file:/probe",
                        run_id: None,
                        run_state: None,
                        classification: Classification {
                            scope: EffectScope::Internal,
                            access: Access::Read,
                            risk: Risk::Low,
                        },
                        cost: &Cost::zero(),
                        time: Timestamp(0),
                        args: &sample,
                    };
                    self.prepare_validated_by_cedar(&probe).is_ok()
                })
                .collect();
            if !principals.is_empty() {
                found.push((name.clone(), FastPath { args: args.clone(), principals }));
            }
        }
        // Probes went through the cache; start empty.
        *self.lock_cache() = EntityCache::default();
        for (name, fast) in found {
            if let Some(info) = self.actions.get_mut(&name) {
                info.fast = Some(fast);
            }
        }
    }

    /// Proves that the schema accepts the entities ICE builds: every principal kind with no attributes, and a
    /// resource with `scheme` and `path` strings. Otherwise every request would fail at evaluation time.
    fn check_entity_model(&self) -> Result<(), PolicyError> {
        let mut samples = Vec::new();
        for kind in PrincipalKind::ALL {
            let pair = self
                .build_entities(&Principal { kind, name: "sample".to_owned() }, "file:/sample")
                .map_err(|message| PolicyError::Schema { message })?;
            let uids = [pair.principal, pair.resource];
            samples.extend(pair.entities.iter().filter(|e| uids.contains(&e.uid())).cloned());
        }
        samples.sort_by_key(Entity::uid);
        samples.dedup_by_key(|e| e.uid());
        Entities::from_entities(samples, Some(&self.schema)).map(drop).map_err(|e| PolicyError::Schema {
            message: format!(
                "the schema does not accept the entities ICE builds (Ice::Agent, Ice::Human, Ice::Runtime, \
                 Ice::Policy, Ice::Effector without attributes; Ice::Resource with scheme: String, path: String): {}",
                chain(&e)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PolicyEngine>();
        assert_send_sync::<PreparedRequest>();
    }
}
