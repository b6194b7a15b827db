//! The role matrix through the real binary: every state-changing command × every credential (the local operator,
//! an operator, agent, approver and auditor token, no credential, a revoked and an expired token) is allowed or
//! refused exactly as the trust model specifies. A refusal carries its code and writes exactly one record.

use serde_json::Value;

use crate::{Ice, exec_and_kill_at, stderr, stdout};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    /// The OS user mapped by `ice init` (every role, may act for agents).
    Local,
    /// Token of `human:op` with the operator role.
    Operator,
    /// Token of `agent:a` (agent role; holds the fs grant).
    Agent,
    /// Token of `human:appr` with the approver role.
    Approver,
    /// Token of `human:aud` with the auditor role.
    Auditor,
    /// No credential: the OS user is not mapped and no token is given.
    Nobody,
    /// A revoked agent token.
    Revoked,
    /// An expired operator token.
    Expired,
}

const ALL: [Cred; 8] = [
    Cred::Local,
    Cred::Operator,
    Cred::Agent,
    Cred::Approver,
    Cred::Auditor,
    Cred::Nobody,
    Cred::Revoked,
    Cred::Expired,
];

/// A home with the credentials of the matrix. Permits live for 1 s (so a permit can expire for `budget settle`).
struct Matrix {
    ice: Ice,
    tokens: Vec<(Cred, String)>,
    run: String,
}

impl Matrix {
    fn new() -> Self {
        let ice = Ice::init();
        let catalog = ice.path().join(".ice/policies/policy.toml");
        let text = std::fs::read_to_string(&catalog).unwrap().replace("ttl_secs = 900 ", "ttl_secs = 1 ");
        std::fs::write(&catalog, text).unwrap();
        ice.ok(&["policy", "activate"]);
        let mut tokens = vec![
            (Cred::Operator, ice.token("human:op", "operator")),
            (Cred::Agent, ice.token("agent:a", "agent")),
            (Cred::Approver, ice.token("human:appr", "approver")),
            (Cred::Auditor, ice.token("human:aud", "auditor")),
        ];
        let revoked = ice.ok(&["token", "create", "--principal", "agent:a", "--role", "agent", "--json"]);
        let revoked: Value = serde_json::from_str(revoked.trim()).unwrap();
        ice.ok(&["token", "revoke", revoked["token_id"].as_str().unwrap(), "--reason", "matrix"]);
        tokens.push((Cred::Revoked, revoked["token"].as_str().unwrap().to_owned()));
        let expired =
            ice.ok(&["token", "create", "--principal", "human:late", "--role", "operator", "--ttl", "1s", "--json"]);
        let expired: Value = serde_json::from_str(expired.trim()).unwrap();
        tokens.push((Cred::Expired, expired["token"].as_str().unwrap().to_owned()));
        for who in ["agent:a".to_owned(), "human:op".to_owned(), ice.operator()] {
            ice.ok(&["grant", "issue", "--to", &who, "--action", "fs.*", "--resource", "file:"]);
        }
        let run = ice.executing_run();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        Self { ice, tokens, run }
    }

    fn token(&self, c: Cred) -> &str {
        &self.tokens.iter().find(|(k, _)| *k == c).unwrap().1
    }

    /// Runs `args` as `cred`.
    fn run(&self, cred: Cred, args: &[String]) -> std::process::Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match cred {
            Cred::Local => self.ice.run(&args),
            Cred::Nobody => {
                // No [[users]] entry for this OS user, and no token.
                let path = self.ice.path().join(".ice/config.toml");
                let config = std::fs::read_to_string(&path).unwrap();
                let cut = config.find("[[users]]").unwrap();
                std::fs::write(&path, &config[..cut]).unwrap();
                let out = self.ice.run(&args);
                std::fs::write(&path, config).unwrap();
                out
            }
            c => self.ice.run_token(self.token(c), &args),
        }
    }

    /// A decision of `agent:a` (through its token) on an fs action; returns the decision JSON.
    fn propose(&self, action: &str, path: &str) -> Value {
        let args = if action == "fs.delete" {
            format!(r#"{{"path":"{path}"}}"#)
        } else {
            format!(r#"{{"path":"{path}","content":"x"}}"#)
        };
        let resource = format!("file:{path}");
        let argv =
            ["propose", "--json", "--run", &self.run, "--action", action, "--resource", &resource, "--args", &args];
        let out = self.ice.run_token(self.token(Cred::Agent), &argv);
        serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)))
    }

    fn field(&self, v: &Value, k: &str) -> String {
        v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}")).to_owned()
    }

    fn executing_run(&self) -> String {
        self.ice.executing_run()
    }

    /// An effect whose outcome is unknown (its process was killed between start and outcome).
    fn unknown_effect(&self) -> String {
        let d = self.propose("fs.write", &format!("u{}.txt", rand_suffix()));
        exec_and_kill_at(&self.ice, &self.field(&d, "permit_id"), "after-effect-start");
        let out = self.ice.run(&["effects", "pending", "--json"]);
        let pending: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        self.field(pending.last().unwrap(), "effect_id")
    }

    /// Checks one command against every credential: `allowed` succeed (each on a fresh target from `prepare`),
    /// every other is refused with its code, writing exactly one record and nothing else.
    fn check(&self, name: &str, allowed: &[Cred], prepare: &dyn Fn(&Matrix) -> Vec<String>) {
        let target = prepare(self);
        for cred in ALL.into_iter().filter(|c| !allowed.contains(c)) {
            let before = self.ice.events();
            let out = self.run(cred, &target);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(3), "{name} as {cred:?} must be refused: {}{err}", stdout(&out));
            let expected: &[&str] = match cred {
                Cred::Nobody => &["ICE-E0901"],
                Cred::Revoked => &["ICE-E0903"],
                Cred::Expired => &["ICE-E0904"],
                // Agents may emit only cognitive events and proposals; other acts need a role they lack. Executing
                // someone else's permit is refused as not theirs.
                Cred::Agent => &["ICE-E0120", "ICE-E0905"],
                _ if name == "exec" => &["ICE-E0801", "ICE-E0905"],
                _ => &["ICE-E0905", "ICE-E0120"],
            };
            assert!(expected.iter().any(|c| err.contains(c)), "{name} as {cred:?}: expected {expected:?}: {err}");
            let after = self.ice.events();
            assert_eq!(after.len(), before.len() + 1, "{name} as {cred:?}: exactly one record");
            let rec = after.last().unwrap();
            assert!(rec["kind"] == "TransitionRejected" || rec["kind"] == "EffectRefused", "{rec}");
            assert_eq!(&after[..before.len()], &before[..], "history untouched");
        }
        // Fresh targets: the refusals above may have outlived a 1-second permit.
        for cred in allowed {
            let target = prepare(self);
            let out = self.run(*cred, &target);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name} as {cred:?} must be allowed: {}{}",
                stdout(&out),
                stderr(&out)
            );
        }
    }
}

fn rand_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    format!("{:x}", std::collections::hash_map::RandomState::new().build_hasher().finish())
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

const OPERATORS: &[Cred] = &[Cred::Local, Cred::Operator];

#[test]
fn runs_and_agents_notes_and_proposals() {
    let m = Matrix::new();
    m.check("run create", OPERATORS, &|_| argv(&["run", "create"]));
    m.check("run advance", OPERATORS, &|m| {
        let run = m.ice.create_run();
        argv(&["run", "advance", &run])
    });
    m.check("run terminate", OPERATORS, &|m| {
        let run = m.ice.create_run();
        argv(&["run", "terminate", &run, "--reason", "matrix"])
    });
    m.check("run finish", OPERATORS, &|m| {
        let run = m.executing_run();
        argv(&["run", "finish", &run])
    });
    // A note is the caller's own cognitive event: agents and operators record them.
    m.check("emit", &[Cred::Agent, Cred::Local, Cred::Operator], &|m| {
        argv(&["emit", "--kind", "ReasoningRecorded", "--run", &m.run, "--payload", r#"{"note":"n"}"#])
    });
    m.check("propose", &[Cred::Agent, Cred::Local, Cred::Operator], &|m| {
        let path = format!("p{}.txt", rand_suffix());
        let args = format!(r#"{{"path":"{path}","content":"x"}}"#);
        let resource = format!("file:{path}");
        argv(&["propose", "--run", &m.run, "--action", "fs.write", "--resource", &resource, "--args", &args])
    });
    // A permit is executed by its holder only.
    m.check("exec", &[Cred::Agent], &|m| {
        let d = m.propose("fs.write", &format!("e{}.txt", rand_suffix()));
        argv(&["exec", &m.field(&d, "permit_id")])
    });
}

#[test]
fn authority_commands() {
    let m = Matrix::new();
    m.check("grant issue", OPERATORS, &|_| {
        argv(&["grant", "issue", "--to", "agent:b", "--action", "fs.read", "--resource", "file:x/"])
    });
    m.check("grant revoke", OPERATORS, &|m| {
        let g =
            m.ice.ok(&["grant", "issue", "--json", "--to", "agent:b", "--action", "fs.read", "--resource", "file:x/"]);
        let g: Value = serde_json::from_str(g.trim()).unwrap();
        argv(&["grant", "revoke", g["event_id"].as_str().unwrap(), "--reason", "matrix"])
    });
    m.check("budget set", OPERATORS, &|_| {
        argv(&["budget", "set", "--scope", "agent:agent:a", "--dimension", "tokens", "--limit", "1000000"])
    });
    // A permit that expired unused (and was not reconciled yet) leaves a reservation only a manual settle closes.
    m.check("budget settle", OPERATORS, &|m| {
        let d = m.propose("fs.write", &format!("s{}.txt", rand_suffix()));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        argv(&["budget", "settle", &m.field(&d, "proposal_id"), "--actual", "calls=0"])
    });
    m.check("policy activate", OPERATORS, &|_| argv(&["policy", "activate"]));
    m.check("agent suspend", OPERATORS, &|_| {
        argv(&["agent", "suspend", &format!("agent:z{}", rand_suffix()), "--reason", "matrix"])
    });
    m.check("agent reconfigure", OPERATORS, &|m| {
        let who = format!("agent:r{}", rand_suffix());
        m.ice.ok(&["agent", "suspend", &who, "--reason", "matrix"]);
        argv(&["agent", "reconfigure", &who, "--change", "matrix"])
    });
    m.check("agent resume", OPERATORS, &|m| {
        let who = format!("agent:q{}", rand_suffix());
        m.ice.ok(&["agent", "suspend", &who, "--reason", "matrix"]);
        m.ice.ok(&["agent", "reconfigure", &who, "--change", "matrix"]);
        argv(&["agent", "resume", &who, "--reason", "matrix"])
    });
    m.check("token create", OPERATORS, &|_| argv(&["token", "create", "--principal", "agent:t", "--role", "agent"]));
    m.check("token revoke", OPERATORS, &|m| {
        let t = m.ice.ok(&["token", "create", "--principal", "agent:t", "--role", "agent", "--json"]);
        let t: Value = serde_json::from_str(t.trim()).unwrap();
        argv(&["token", "revoke", t["token_id"].as_str().unwrap(), "--reason", "matrix"])
    });
    m.check("checkpoint", OPERATORS, &|_| argv(&["checkpoint"]));
}

#[test]
fn approvals_and_the_effect_boundary() {
    let m = Matrix::new();
    let pending = |m: &Matrix| {
        let d = m.propose("fs.delete", &format!("d{}.txt", rand_suffix()));
        m.field(&d, "approval_id")
    };
    // The local operator holds every role, the approver role among them.
    m.check("approve", &[Cred::Approver, Cred::Local], &|m| argv(&["approve", &pending(m)]));
    m.check("deny", &[Cred::Approver, Cred::Local], &|m| argv(&["deny", &pending(m)]));
    m.check("effects retry", OPERATORS, &|m| argv(&["effects", "retry", &m.unknown_effect()]));
    m.check("effects resolve", OPERATORS, &|m| {
        argv(&["effects", "resolve", &m.unknown_effect(), "--failed", "--note", "checked by hand"])
    });
    m.check("rollback", OPERATORS, &|m| {
        let run = m.executing_run();
        let d = {
            // Overwriting an existing file: its compensation restores the prior content (no approval needed).
            let path = format!("b{}.txt", rand_suffix());
            std::fs::create_dir_all(m.ice.path().join("sandbox")).unwrap();
            std::fs::write(m.ice.path().join("sandbox").join(&path), "before").unwrap();
            let args = format!(r#"{{"path":"{path}","content":"x"}}"#);
            let resource = format!("file:{path}");
            let argv =
                ["propose", "--json", "--run", &run, "--action", "fs.write", "--resource", &resource, "--args", &args];
            let out = m.ice.run_token(m.token(Cred::Agent), &argv);
            serde_json::from_str::<Value>(stdout(&out).trim()).unwrap()
        };
        m.ice.ok_token(m.token(Cred::Agent), &["exec", &m.field(&d, "permit_id")]);
        argv(&["rollback", &run])
    });
}
