//! Compiling a policy source: parse each file, map `@id` annotations to policy ids, parse the schema, validate
//! strictly. Every refusal names the file, the policy and (for parse errors) the line and column.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Effect, Entities, EntityUid, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

use super::{APPROVAL_ANNOTATION, ID_ANNOTATION, NAMESPACE};
use crate::error::{PolicyError, ValidationIssue, chain};
use crate::source::{POLICY_EXTENSION, PolicySource};

/// The parts of a compiled engine.
pub(super) struct Compiled {
    pub(super) policies: PolicySet,
    pub(super) schema: Schema,
    pub(super) ids: Vec<String>,
    pub(super) approvals: HashMap<PolicyId, String>,
    pub(super) actions: HashMap<String, EntityUid>,
    pub(super) action_entities: Entities,
}

pub(super) fn compile(source: &PolicySource) -> Result<Compiled, PolicyError> {
    if source.files.is_empty() {
        return Err(PolicyError::Dir {
            path: "(policy source)".to_owned(),
            message: format!("no *.{POLICY_EXTENSION} policy file"),
        });
    }
    let mut policies = PolicySet::new();
    let mut file_of: HashMap<String, String> = HashMap::new();
    let mut approvals = HashMap::new();
    for file in &source.files {
        let parsed = PolicySet::from_str(&file.text).map_err(|e| parse_error(&file.name, &file.text, &e))?;
        if let Some(t) = parsed.templates().next() {
            return Err(PolicyError::Parse {
                file: file.name.clone(),
                location: None,
                snippet: Some(snippet(&t.to_string())),
                message: "policy templates (?principal / ?resource slots) are not supported; write static policies"
                    .to_owned(),
            });
        }
        // Cedar names the policies of one parse `policy0`, `policy1`, … in source order.
        let mut in_file: Vec<(usize, &cedar_policy::Policy)> =
            parsed.policies().map(|p| (index_of(p.id()), p)).collect();
        in_file.sort_by_key(|(i, _)| *i);
        let stem = file.name.strip_suffix(&format!(".{POLICY_EXTENSION}")).unwrap_or(&file.name);
        for (index, policy) in in_file {
            let id = match policy.annotation(ID_ANNOTATION) {
                Some(id) if id.trim().is_empty() => {
                    return Err(PolicyError::Parse {
                        file: file.name.clone(),
                        location: None,
                        snippet: Some(snippet(&policy.to_string())),
                        message: format!("policy {index} in the file has an empty @id"),
                    });
                }
                Some(id) => id.to_owned(),
                None => format!("{stem}:{index}"),
            };
            if let Some(first) = file_of.get(&id) {
                return Err(PolicyError::DuplicateId { id, first: first.clone(), second: file.name.clone() });
            }
            let policy_id = PolicyId::new(&id);
            if policy.effect() == Effect::Permit
                && let Some(reason) = policy.annotation(APPROVAL_ANNOTATION)
            {
                let reason = if reason.trim().is_empty() {
                    format!("policy `{id}` requires a human approval")
                } else {
                    reason.to_owned()
                };
                approvals.insert(policy_id.clone(), reason);
            }
            // Ids were checked for duplicates above, so `add` cannot refuse one; map it anyway rather than panic.
            policies.add(policy.new_id(policy_id)).map_err(|_| PolicyError::DuplicateId {
                id: id.clone(),
                first: file.name.clone(),
                second: file.name.clone(),
            })?;
            file_of.insert(id, file.name.clone());
        }
    }

    let schema = parse_schema(&source.schema)?;
    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    if !result.validation_passed() {
        let issues = result
            .validation_errors()
            .map(|e| {
                let policy = e.policy_id().to_string();
                let file = file_of.get(&policy).cloned().unwrap_or_default();
                let help = e.help().map(|h| format!(" ({h})")).unwrap_or_default();
                let text = e.to_string();
                let text = text.strip_prefix(&format!("for policy `{policy}`, ")).unwrap_or(&text);
                ValidationIssue { file, message: format!("{text}{help}"), policy }
            })
            .collect();
        return Err(PolicyError::Validation { issues });
    }

    let action_entities = schema
        .action_entities()
        .map_err(|e| PolicyError::Schema { message: format!("cannot build the action entities: {}", chain(&e)) })?;
    let actions = declared_actions(&schema);
    if actions.is_empty() {
        return Err(PolicyError::Schema {
            message: format!("the schema declares no action in namespace {NAMESPACE} that applies to a request"),
        });
    }
    let mut ids: Vec<String> = file_of.into_keys().collect();
    ids.sort();
    Ok(Compiled { policies, schema, ids, approvals, actions, action_entities })
}

/// The position Cedar's parser encoded in a policy id (`policy3` → 3).
fn index_of(id: &PolicyId) -> usize {
    let id: &str = id.as_ref();
    id.strip_prefix("policy").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

fn parse_schema(text: &str) -> Result<Schema, PolicyError> {
    if text.trim().is_empty() {
        return Err(PolicyError::Schema { message: "the schema is empty".to_owned() });
    }
    Schema::from_cedarschema_str(text).map(|(schema, _warnings)| schema).map_err(|e| {
        let at = locate(text, &e).map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default();
        let help = e.help().map(|h| format!(" ({h})")).unwrap_or_default();
        PolicyError::Schema { message: format!("schema.cedarschema is invalid{at}: {}{help}", chain(&e)) }
    })
}

/// Actions in the `Ice` namespace that apply to some request (so not pure action groups), by name.
fn declared_actions(schema: &Schema) -> HashMap<String, EntityUid> {
    let action_type = format!("{NAMESPACE}::Action");
    let applicable: HashSet<EntityUid> = schema.request_envs().map(|env| env.action().clone()).collect();
    applicable
        .into_iter()
        .filter(|uid| uid.type_name().to_string() == action_type)
        .map(|uid| (uid.id().unescaped().to_owned(), uid))
        .collect()
}

fn parse_error(file: &str, text: &str, e: &cedar_policy::ParseErrors) -> PolicyError {
    let first = e.iter().next();
    let location = first.and_then(|d| locate(text, d));
    let snippet =
        location.and_then(|(line, _)| text.lines().nth(line.saturating_sub(1))).map(snippet).filter(|s| !s.is_empty());
    let mut message = first.map_or_else(|| e.to_string(), ToString::to_string);
    if let Some(help) = first.and_then(Diagnostic::help) {
        message.push_str(&format!(" ({help})"));
    }
    let more = e.iter().count().saturating_sub(1);
    if more > 0 {
        message.push_str(&format!(" (and {more} more error{})", if more == 1 { "" } else { "s" }));
    }
    PolicyError::Parse { file: file.to_owned(), location, snippet, message }
}

/// 1-based line and column (in characters) of a diagnostic's first label.
fn locate(text: &str, d: &dyn Diagnostic) -> Option<(usize, usize)> {
    let offset = d.labels()?.next()?.offset().min(text.len());
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

/// A one-line excerpt, at most 80 characters.
fn snippet(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}
