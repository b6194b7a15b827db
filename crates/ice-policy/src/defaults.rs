//! The default policy set that `ice init` writes into `.ice/policies/`: the schema and four short policies.

/// The default `schema.cedarschema`.
pub const DEFAULT_SCHEMA: &str = r#"// ICE policy schema. ICE builds every request from these declarations:
//   principal  Ice::<Kind>::"<name>"        (agent:planner → Ice::Agent::"planner")
//   action     Ice::Action::"<action>"      (fs.write)
//   resource   Ice::Resource::"<resource>"  (file:/sandbox/a.md → scheme "file", path "/sandbox/a.md")
//   context    the fields of Context below, plus `args`: the proposal's arguments, typed per action.
// Requests whose args do not match the action's `args` type are not evaluated (outcome: error → denied),
// so declare every argument an action takes; mark optional ones with `?`.
namespace Ice {
  // One entity type per principal kind; ICE gives them no attributes.
  entity Agent, Human, Runtime, Policy, Effector;
  entity Resource = { scheme: String, path: String };

  // The runtime's classification of the action (never the agent's).
  type Classification = {
    scope: String,      // internal | external
    access: String,     // read | write | irreversible
    risk: String,       // low | medium | high | critical
    risk_level: Long,   // 1 (low) … 4 (critical)
  };
  // The proposal's declared cost estimate; every dimension is present (0 when not declared).
  type Cost = { wall_ms: Long, tokens: Long, money_micros: Long, calls: Long, bytes: Long };

  // Every filesystem action is in the group "fs" (policies can say `action in Ice::Action::"fs"`).
  action "fs";

  action "fs.read", "fs.list", "fs.delete" in ["fs"] appliesTo {
    principal: [Agent, Human, Runtime, Policy, Effector],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { path: String },
    },
  };

  action "fs.write", "fs.append" in ["fs"] appliesTo {
    principal: [Agent, Human, Runtime, Policy, Effector],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { path: String, content: String },
    },
  };

  // Rollback's compensation: write back content held in ICE's blob store (args.blob is its blake3).
  action "fs.restore" in ["fs"] appliesTo {
    principal: [Agent, Human, Runtime, Policy, Effector],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { path: String, blob: String },
    },
  };

  action "process.exec" appliesTo {
    principal: [Agent, Human, Runtime, Policy, Effector],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { argv: Set<String>, cwd?: String, stdin?: String, env?: Set<String> },  // env: ["NAME=value"]
    },
  };

  action "http.request" appliesTo {
    principal: [Agent, Human, Runtime, Policy, Effector],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { method: String, url: String, body?: String, headers?: Set<String> },  // headers: ["Name: value"]
    },
  };

  // Promote a memory candidate (resource memory:<namespace>); only sources the ledger validated qualify.
  action "memory.promote" appliesTo {
    principal: [Agent, Human, Runtime, Policy, Effector],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { candidate: String, namespace: String, supersedes?: String },
    },
  };

  action "model.call" appliesTo {
    principal: [Agent, Human, Runtime, Policy, Effector],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { model: String, prompt?: String, max_tokens?: Long },
    },
  };
}
"#;

/// The default permits.
const DEFAULT_PERMITS: &str = r#"// Default permits. Policy is one gate of three: a proposal also needs a capability grant and budget.

// Anything reversible and not critical is permitted.
@id("default-permit")
permit (principal, action, resource)
when {
  context.classification.access != "irreversible" &&
  context.classification.risk != "critical"
};

// Irreversible effects are permitted, but only once a human approves.
@id("irreversible-needs-approval")
@require_approval("irreversible effects need a human approval")
permit (principal, action, resource)
when { context.classification.access == "irreversible" };
"#;

/// The default guards (a satisfied forbid always wins).
const DEFAULT_GUARDS: &str = r#"// Default guards. A satisfied forbid always wins over any permit.

// Critical-risk actions are never performed.
@id("no-critical-risk")
forbid (principal, action, resource)
when { context.classification.risk == "critical" };

// No filesystem action touches a secrets directory, whether named by the resource or by the args.
@id("no-secrets")
forbid (principal, action in Ice::Action::"fs", resource)
when {
  resource.path like "secrets/*" || resource.path like "*/secrets/*" ||
  context.args.path like "secrets/*" || context.args.path like "*/secrets/*"
};
"#;

/// The default policy files, as `(file name, text)`, in file-name order.
pub const DEFAULT_POLICIES: &[(&str, &str)] = &[("default.cedar", DEFAULT_PERMITS), ("guards.cedar", DEFAULT_GUARDS)];
