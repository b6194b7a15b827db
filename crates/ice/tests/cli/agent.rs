//! `ice agent run` against a local fake OpenAI-compatible server started by the test (no hosted model is reachable
//! here; the fake answers by the conversation it is sent, as a deterministic model would): a tool call policy
//! denies never executes and the model is told; token-budget exhaustion stops the agent before the model is
//! asked, with a recorded reason; `kill -9` mid-run and a restart resume from the ledger without repeating a
//! completed effect.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Ice, bin};

/// What the fake model was sent (request bodies, in order).
type Seen = Arc<Mutex<Vec<Value>>>;

/// A fake chat-completions server: the answer to a request is `replies[n]`, n = the number of assistant messages
/// in it (past the end: a plain "done"). With `hang_once = Some(n)`, the first request for reply n is held open
/// unanswered (a model that is slow when the agent is killed).
fn fake_model(replies: Vec<Value>, hang_once: Option<usize>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let keep = seen.clone();
    let hung = Arc::new(Mutex::new(false));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (replies, seen, hung) = (replies.clone(), keep.clone(), hung.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim_end().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut buf = vec![0; length];
                reader.read_exact(&mut buf).unwrap();
                let body: Value = serde_json::from_slice(&buf).unwrap();
                let n = body["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "assistant").count();
                seen.lock().unwrap().push(body);
                if hang_once == Some(n) && !std::mem::replace(&mut *hung.lock().unwrap(), true) {
                    // Held until the client goes away.
                    let _ = reader.read_to_end(&mut Vec::new());
                    return;
                }
                let answer = completion(replies.get(n).cloned().unwrap_or_else(|| json!({"content": "done"})));
                let text = answer.to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = reader.get_mut().write_all(reply.as_bytes());
            });
        }
    });
    (url, seen)
}

/// A chat completion from `{"content"?, "calls"?: [[name, args]], "usage"?: [prompt, completion]}`.
fn completion(r: Value) -> Value {
    let calls: Vec<Value> = r["calls"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"id": format!("call_{i}"), "type": "function",
                        "function": {"name": c[0], "arguments": c[1].to_string()}})
                })
                .collect()
        })
        .unwrap_or_default();
    let usage = r["usage"].as_array().cloned().unwrap_or_else(|| vec![json!(10), json!(5)]);
    let mut message = json!({"role": "assistant", "content": r.get("content").cloned().unwrap_or(Value::Null)});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({"id": "chatcmpl-test", "object": "chat.completion", "choices": [{"index": 0, "message": message,
        "finish_reason": "stop"}], "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}})
}

/// A home with `agent:writer` (token returned) allowed to ask any model and to read notes, append to notes and
/// write reports and secrets (the default Cedar guard still forbids every fs action on `secrets/`), a run in
/// EXECUTING, and an agent configuration for the fake model at `url`.
fn agent_home(url: &str, max_tokens: u64) -> (Ice, String, String) {
    let ice = Ice::init();
    std::fs::create_dir_all(ice.path().join("sandbox/notes")).unwrap();
    std::fs::write(ice.path().join("sandbox/notes/today.md"), "Standup moved to 10:00.\n").unwrap();
    let token = ice.token("agent:writer", "agent");
    ice.ok(&["grant", "issue", "--to", "agent:writer", "--action", "model.call", "--resource", "model:"]);
    ice.ok(&["grant", "issue", "--to", "agent:writer", "--action", "fs.read,fs.append", "--resource", "file:notes/"]);
    for dir in ["file:reports/", "file:secrets/"] {
        ice.ok(&["grant", "issue", "--to", "agent:writer", "--action", "fs.write", "--resource", dir]);
    }
    let run = ice.executing_run();
    let config = format!(
        "[agent]\nname = \"writer\"\ntask = \"Summarise notes/today.md\"\nsystem = \"Be brief.\"\nmax_tokens = {max_tokens}\n\n\
         [provider]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"fake-1\"\n\n\
         [[tools]]\nname = \"read_file\"\naction = \"fs.read\"\n\n[[tools]]\nname = \"write_file\"\naction = \"fs.write\"\n\n\
         [[tools]]\nname = \"append_note\"\naction = \"fs.append\"\n"
    );
    std::fs::write(ice.path().join("agent.toml"), config).unwrap();
    (ice, token, run)
}

/// `ice agent run` in the background (stderr discarded).
fn spawn_agent(ice: &Ice, token: &str, run: &str, stdout: Stdio) -> std::process::Child {
    let config = ice.path().join("agent.toml");
    Command::new(bin())
        .arg("--dir")
        .arg(ice.path())
        .args(["--token", token, "agent", "run", "--config", config.to_str().unwrap(), "--run", run])
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn agent_run(ice: &Ice, token: &str, run: &str) -> std::process::Output {
    let config = ice.path().join("agent.toml");
    ice.run_token(token, &["agent", "run", "--config", config.to_str().unwrap(), "--run", run])
}

/// The payloads of `agent:writer`'s lifecycle observations, in order.
fn lifecycle(ice: &Ice) -> Vec<Value> {
    ice.events()
        .into_iter()
        .filter(|e| e["kind"] == "ObservationRecorded" && e["origin"] == "agent:writer")
        .map(|e| e["payload"].clone())
        .filter(|p| p.get("lifecycle").is_some())
        .collect()
}

#[test]
fn the_model_proposes_and_a_denied_call_never_runs() {
    let replies = vec![
        json!({"calls": [["read_file", {"path": "notes/today.md"}]], "usage": [40, 8]}),
        json!({"calls": [["write_file", {"path": "reports/summary.md", "content": "Standup at 10."}],
            ["write_file", {"path": "secrets/leak.txt", "content": "Standup moved to 10:00."}],
            ["no_such_tool", {}]], "usage": [90, 30]}),
        json!({"content": "Summary written to reports/summary.md.", "usage": [150, 9]}),
    ];
    let (url, seen) = fake_model(replies, None);
    let (ice, token, run) = agent_home(&url, 256);
    let out = agent_run(&ice, &token, &run);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", crate::stderr(&out));
    assert!(stdout.contains("finished: Summary written"), "{stdout}");
    assert_eq!(std::fs::read_to_string(ice.path().join("sandbox/reports/summary.md")).unwrap(), "Standup at 10.");
    assert!(!ice.path().join("sandbox/secrets/leak.txt").exists(), "a denied call must never execute");

    let events = ice.events();
    let proposal_of = |path: &str| {
        events.iter().find(|e| e["kind"] == "ProposalSubmitted" && e["payload"]["args"]["path"] == path).unwrap()
    };
    let denied = proposal_of("secrets/leak.txt")["event_id"].clone();
    let about =
        |kind: &str| events.iter().filter(|e| e["kind"] == kind && e["payload"]["proposal_id"] == denied).count();
    assert_eq!((about("DecisionMade"), about("PermitIssued"), about("EffectStarted")), (1, 0, 0));
    let decision =
        events.iter().find(|e| e["kind"] == "DecisionMade" && e["payload"]["proposal_id"] == denied).unwrap();
    assert_eq!(decision["payload"]["verdict"], "deny");
    assert_eq!(proposal_of("reports/summary.md")["origin"], "agent:writer", "the principal is the token's");

    // Three model calls, each a governed effect settled with the usage the model reported.
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0]["model"], "fake-1");
    assert_eq!(sent[0]["tools"].as_array().unwrap().len(), 3);
    let settled: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "BudgetSettled" && e["payload"]["actual"]["tokens"].is_u64())
        .map(|e| e["payload"]["actual"]["tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(settled, vec![48, 120, 159]);
    // The model was told what became of each call: the denial with its reason, the unknown tool refused.
    let told: Vec<Value> = sent[2]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(told.len(), 4, "{told:?}");
    assert_eq!(told[0]["status"], "completed");
    assert_eq!(told[0]["output"], "Standup moved to 10:00.\n");
    assert_eq!(told[1]["status"], "completed");
    assert_eq!(told[2]["status"], "denied");
    assert_eq!(told[2]["policies"], json!(["no-secrets"]), "{}", told[2]);
    assert_eq!(told[3]["status"], "refused");

    let states: Vec<String> = lifecycle(&ice).iter().map(|p| p["lifecycle"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["started", "stopped"]);
    ice.ok(&["verify"]);
}

#[test]
fn token_budget_exhaustion_stops_the_agent_before_the_model_is_asked() {
    let read = json!({"calls": [["read_file", {"path": "notes/today.md"}]], "usage": [800, 100]});
    let (url, seen) = fake_model(vec![read.clone(), read.clone(), read], None);
    let (ice, token, run) = agent_home(&url, 500);
    ice.ok(&["budget", "set", "--scope", "agent:agent:writer", "--dimension", "tokens", "--limit", "2000"]);
    let out = agent_run(&ice, &token, &run);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}{}", crate::stderr(&out));
    assert!(stdout.starts_with("refused: the model call was deny (BudgetExceeded"), "{stdout}");
    // Two calls of 900 tokens fit in 2000; the third would need its estimate (max_tokens 500 + the prompt) from
    // the 200 left, so it is denied and never sent.
    assert_eq!(seen.lock().unwrap().len(), 2);
    let last = lifecycle(&ice).pop().unwrap();
    assert_eq!((last["lifecycle"].as_str(), last["reason"].as_str()), (Some("stopped"), Some("refused")));
    assert!(last["detail"].as_str().unwrap().contains("BudgetExceeded"), "{last}");
    let budgets = ice.ok(&["budget", "show", "--json"]);
    assert!(budgets.contains("\"spent\":1800"), "{budgets}");
}

#[test]
fn a_killed_agent_resumes_without_repeating_a_completed_effect() {
    let replies = vec![
        json!({"calls": [["append_note", {"path": "notes/log.md", "content": "paid invoice 42\n"}]]}),
        json!({"content": "Logged."}),
    ];
    // The second model call hangs the first time it is made: the agent is killed while it waits.
    let (url, seen) = fake_model(replies, Some(1));
    let (ice, token, run) = agent_home(&url, 128);
    let mut child = spawn_agent(&ice, &token, &run, Stdio::null());
    wait_for("the agent's second model call", || seen.lock().unwrap().len() >= 2);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let log = ice.path().join("sandbox/notes/log.md");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "paid invoice 42\n");

    let out = agent_run(&ice, &token, &run);
    assert_eq!(out.status.code(), Some(0), "{}", crate::stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("finished: Logged."));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "paid invoice 42\n", "the completed append was repeated");
    let events = ice.events();
    let appends = events.iter().filter(|e| e["kind"] == "EffectStarted" && e["payload"]["action"] == "fs.append");
    assert_eq!(appends.count(), 1);
    // The restarted agent told the model what the ledger says happened, and asked again.
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2]["messages"], sent[1]["messages"], "the resumed conversation is the one the ledger holds");
    let states: Vec<String> = lifecycle(&ice).iter().map(|p| p["lifecycle"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["started", "crashed", "started", "stopped"]);
}

#[test]
fn agent_run_needs_a_token_and_a_valid_configuration() {
    let (ice, token, run) = agent_home("http://127.0.0.1:9/v1", 64);
    let config = ice.path().join("agent.toml");
    let out = ice.run(&["agent", "run", "--config", config.to_str().unwrap(), "--run", &run]);
    assert!(crate::stderr(&out).contains("ICE-E0901"), "{}", crate::stderr(&out));
    std::fs::write(&config, "[agent]\nname = \"x\"\ntask = \"t\"\nmood = 1\n").unwrap();
    let out = agent_run(&ice, &token, &run);
    assert!(
        crate::stderr(&out).contains("ICE-E0403") && crate::stderr(&out).contains("mood"),
        "{}",
        crate::stderr(&out)
    );
    // An unreachable model: the call is recorded as a failed effect and the agent stops (exit 8).
    let good = "[agent]\nname = \"x\"\ntask = \"t\"\n\n[provider]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\ntimeout_secs = 5\n";
    std::fs::write(&config, good).unwrap();
    let out = agent_run(&ice, &token, &run);
    assert_eq!(out.status.code(), Some(8), "{}", crate::stderr(&out));
    assert!(ice.events().iter().any(|e| e["kind"] == "EffectFailed" && e["origin"] == "runtime:ice"));
}

/// Polls `what` every 50 ms for up to 60 s.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_suspended_agent_waits_and_an_irreversible_call_waits_for_a_human() {
    let replies = vec![json!({"calls": [["delete_note", {"path": "notes/today.md"}]]}), json!({"content": "Deleted."})];
    let (url, seen) = fake_model(replies, None);
    let (ice, token, run) = agent_home(&url, 128);
    let config = ice.path().join("agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[[tools]]\nname = \"delete_note\"\naction = \"fs.delete\"\n")).unwrap();
    ice.ok(&["grant", "issue", "--to", "agent:writer", "--action", "fs.delete", "--resource", "file:notes/"]);
    let approver = ice.token("human:carol", "approver");
    ice.ok(&["agent", "suspend", "agent:writer", "--reason", "reviewing its prompt"]);

    let child = spawn_agent(&ice, &token, &run, Stdio::piped());
    // Suspended before its first call: it records so and asks nothing.
    wait_for("the suspension to be recorded", || lifecycle(&ice).iter().any(|p| p["lifecycle"] == "suspended"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(seen.lock().unwrap().len(), 0, "a suspended agent asked its model");
    // A second loop for the same agent and run would interleave with this one: refused.
    let second = agent_run(&ice, &token, &run);
    assert_eq!(second.status.code(), Some(3), "{}", crate::stderr(&second));
    assert!(crate::stderr(&second).contains("already running"), "{}", crate::stderr(&second));
    ice.ok(&["agent", "reconfigure", "agent:writer", "--change", "prompt reviewed"]);
    ice.ok(&["agent", "resume", "agent:writer", "--reason", "reviewed"]);

    // fs.delete is irreversible: the call waits for a human, and runs once approved.
    let mut approval = String::new();
    wait_for("an approval to be requested", || {
        let out = ice.run_token(&approver, &["approvals", "list", "--json"]);
        match crate::stdout(&out).lines().next() {
            Some(line) => {
                approval = serde_json::from_str::<Value>(line).unwrap()["approval_id"].as_str().unwrap().to_owned();
                true
            }
            None => false,
        }
    });
    assert!(ice.path().join("sandbox/notes/today.md").exists(), "deleted before the approval");
    ice.ok_token(&approver, &["approve", &approval]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!ice.path().join("sandbox/notes/today.md").exists());
    let states: Vec<String> = lifecycle(&ice).iter().map(|p| p["lifecycle"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["started", "suspended", "resumed", "stopped"]);
}

#[test]
fn an_agent_calls_mcp_tools_through_the_same_gate() {
    let (ice, data) = super::mcp::gateway_home(5);
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "model.call", "--resource", "model:"]);
    let token = ice.token("agent:a", "agent");
    let run = ice.executing_run();
    let path = data.join("hello.txt").to_str().unwrap().to_owned();
    let replies = vec![json!({"calls": [["read_data", {"path": path}]]}), json!({"content": "It says hello."})];
    let (url, seen) = fake_model(replies, None);
    let config = format!(
        "[agent]\nname = \"reader\"\ntask = \"What does hello.txt say?\"\n\n\
         [provider]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"fake-1\"\n\n\
         [[tools]]\nname = \"read_data\"\naction = \"mcp.fs.read_text_file\"\nresource = \"mcp:fs/read_text_file\"\n\
         description = \"Read a text file\"\n\
         parameters = {{ type = \"object\", properties = {{ path = {{ type = \"string\" }} }}, required = [\"path\"] }}\n"
    );
    std::fs::write(ice.path().join("agent.toml"), config).unwrap();
    let out = agent_run(&ice, &token, &run);
    assert_eq!(out.status.code(), Some(0), "{}{}", crate::stdout(&out), crate::stderr(&out));
    let sent = seen.lock().unwrap().clone();
    let told = sent[1]["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    let told: Value = serde_json::from_str(told["content"].as_str().unwrap()).unwrap();
    assert_eq!(told["status"], "completed", "{told}");
    assert!(told["output"].as_str().unwrap().contains("hello from upstream"), "{told}");
    let events = ice.events();
    let started =
        events.iter().filter(|e| e["kind"] == "EffectStarted" && e["payload"]["action"] == "mcp.fs.read_text_file");
    assert_eq!(started.count(), 1);
}

#[test]
fn an_unanswered_call_is_withdrawn_and_told_to_the_model_as_not_approved() {
    let replies = vec![json!({"calls": [["delete_note", {"path": "notes/today.md"}]]}), json!({"content": "Left it."})];
    let (url, seen) = fake_model(replies, None);
    let (ice, token, run) = agent_home(&url, 128);
    let config = ice.path().join("agent.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_tokens = 128\n", "max_tokens = 128\napproval_timeout_secs = 1\n");
    std::fs::write(&config, format!("{text}\n[[tools]]\nname = \"delete_note\"\naction = \"fs.delete\"\n")).unwrap();
    ice.ok(&["grant", "issue", "--to", "agent:writer", "--action", "fs.delete", "--resource", "file:notes/"]);
    let out = agent_run(&ice, &token, &run);
    assert_eq!(out.status.code(), Some(0), "{}", crate::stderr(&out));
    assert!(ice.path().join("sandbox/notes/today.md").exists());
    let told =
        seen.lock().unwrap()[1]["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    let told: Value = serde_json::from_str(told["content"].as_str().unwrap()).unwrap();
    assert_eq!(told["status"], "not_approved", "{told}");
    let approver = ice.token("human:carol", "approver");
    let pending = ice.run_token(&approver, &["approvals", "list", "--json"]);
    assert_eq!(crate::stdout(&pending).trim(), "", "the approval left the queue");
    let withdrawn: Vec<Value> = ice.events().into_iter().filter(|e| e["kind"] == "ProposalWithdrawn").collect();
    assert_eq!((withdrawn.len(), withdrawn[0]["origin"].as_str()), (1, Some("agent:writer")));
}

/// With `[agent.memory]` the agent recalls memory once, as a read recorded in its run, and every request shows
/// the model those items; the audit of the item links the read to the model call that followed it. A restart
/// shows the same items without searching again.
#[test]
fn an_agent_recalls_memory_as_a_recorded_read_and_the_model_sees_it() {
    let (url, seen) = fake_model(vec![json!({"content": "Standup is at 10:00; noted."})], None);
    let (ice, token, run) = agent_home(&url, 64);
    // A promoted item, from an append the agent made in an earlier run.
    let json = |out: String| -> Value { serde_json::from_str(out.trim()).unwrap() };
    let earlier = ice.executing_run();
    let args = r#"{"path":"notes/log.md","content":"standup 10:00\n"}"#;
    let propose = ["propose", "--as", "agent:writer", "--run", &earlier, "--action", "fs.append"];
    let d = json(ice.ok(&[&propose[..], &["--resource", "file:notes/log.md", "--args", args, "--json"]].concat()));
    let out = json(ice.ok(&["exec", "--as", "agent:writer", d["permit_id"].as_str().unwrap(), "--json"]));
    let grant = ["grant", "issue", "--to", "agent:writer", "--action", "memory.promote,memory.read"];
    ice.ok(&[&grant[..], &["--resource", "memory:team"]].concat());
    let source = out["outcome_id"].as_str().unwrap();
    let text = "The daily standup starts at 10:00.";
    let candidate = ["memory", "propose", "--as", "agent:writer", "--run", &earlier, "--namespace", "team"];
    let c = json(ice.ok(&[&candidate[..], &["--text", text, "--source", source, "--json"]].concat()));
    let promote = ["memory", "promote", c["candidate_id"].as_str().unwrap(), "--as", "agent:writer", "--json"];
    let item = json(ice.ok(&promote))["item_id"].as_str().unwrap().to_owned();
    let config = ice.path().join("agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[provider]", "[agent.memory]\nnamespace = \"team\"\n\n[provider]")).unwrap();

    let out = agent_run(&ice, &token, &run);
    assert_eq!(out.status.code(), Some(0), "{}{}", crate::stdout(&out), crate::stderr(&out));
    let sent = seen.lock().unwrap().clone();
    let shown = sent[0]["messages"].to_string();
    assert!(shown.contains("The daily standup starts at 10:00.") && shown.contains(&item), "{shown}");
    let reads = ice.ok(&["memory", "reads", &item]);
    assert!(reads.contains("agent:writer search") && reads.contains("model.call"), "{reads}");
    // Run again: the conversation is rebuilt from the ledger; the recall is not repeated.
    agent_run(&ice, &token, &run);
    let count = ice.events().iter().filter(|e| e["kind"] == "MemoryRead").count();
    assert_eq!(count, 1, "one recall per run");
}
