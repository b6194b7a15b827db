//! The OpenAI-compatible client against a local fake chat-completions server started by the test (no hosted API
//! is reachable here): the request it sends (model, messages, tools, the key from a secret file), the tool calls
//! and usage it parses, and its errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use ice_effects::SecretSource;
use ice_providers::{Intent, Message, OpenAiCompatible, OpenAiConfig, Provider, Request, ToolSpec, intents};
use serde_json::{Value, json};

/// What the fake server received: (request line, authorization header, body).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Serves each connection the next (status, body) of `answers`.
fn fake_server(answers: Vec<(u16, String)>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Seen = Arc::default();
    let keep = seen.clone();
    std::thread::spawn(move || {
        for ((status, body), conn) in answers.into_iter().zip(listener.incoming()) {
            let mut reader = BufReader::new(conn.unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let (mut length, mut auth) = (0, String::new());
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap(),
                    "authorization" => auth = v.trim().to_owned(),
                    _ => {}
                }
            }
            let mut buf = vec![0; length];
            reader.read_exact(&mut buf).unwrap();
            keep.lock().unwrap().push((line.trim().to_owned(), auth, serde_json::from_slice(&buf).unwrap()));
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            reader.get_mut().write_all(reply.as_bytes()).unwrap();
        }
    });
    (addr, seen)
}

fn request() -> Request {
    Request {
        messages: vec![Message::text("system", "You are careful."), Message::text("user", "Read a.txt")],
        tools: vec![ToolSpec {
            name: "fs__read_text_file".into(),
            description: "Read a file".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }],
        max_tokens: Some(256),
    }
}

#[test]
fn a_tool_call_becomes_an_intent_with_usage_and_hashes() {
    let answer = json!({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "fs__read_text_file",
        "arguments": "{\"path\":\"a.txt\"}"}}, {"id": "call_2", "type": "function",
        "function": {"name": "fs__read_text_file", "arguments": "{path: oops"}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}});
    let (addr, seen) = fake_server(vec![(200, answer.to_string())]);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-test-123\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let secrets = BTreeMap::from([("MODEL_KEY".to_owned(), SecretSource { env: None, file: Some(key) })]);
    let config = OpenAiConfig {
        base_url: format!("http://{addr}/v1"),
        model: "local-model".into(),
        api_key: Some("${secret:MODEL_KEY}".into()),
        timeout_secs: 10,
    };
    let provider = OpenAiCompatible::new(config, secrets).unwrap();
    let ex = provider.complete(&request()).unwrap();
    assert_eq!((ex.usage.prompt_tokens, ex.usage.completion_tokens, ex.usage.total()), (42, 7, 49));
    assert_eq!(ex.prompt_hash.len(), 64);
    assert_ne!(ex.prompt_hash, ex.response_hash);
    let got = intents(&ex.message);
    assert!(matches!(&got[0], Intent::Call { call_id, tool, args }
        if call_id == "call_1" && tool == "fs__read_text_file" && args["path"] == "a.txt"));
    assert!(matches!(&got[1], Intent::Malformed { call_id, .. } if call_id == "call_2"));
    let (line, auth, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(auth, "Bearer sk-test-123", "the key from the secret file, in the header only");
    assert_eq!(body["model"], "local-model");
    assert_eq!(body["messages"][1]["content"], "Read a.txt");
    assert_eq!(body["tools"][0]["function"]["name"], "fs__read_text_file");
    assert_eq!(body["max_tokens"], 256);
}

#[test]
fn errors_are_reported_with_codes_and_never_the_key() {
    let (addr, _) = fake_server(vec![(500, r#"{"error":"overloaded"}"#.into()), (200, "not json".into())]);
    let config = OpenAiConfig { base_url: format!("http://{addr}"), model: "m".into(), api_key: None, timeout_secs: 5 };
    let provider = OpenAiCompatible::new(config.clone(), BTreeMap::new()).unwrap();
    let e = provider.complete(&request()).unwrap_err();
    assert!(e.to_string().contains("HTTP 500") && e.to_string().contains("overloaded"), "{e}");
    let e = provider.complete(&request()).unwrap_err();
    assert!(e.to_string().contains("garbage"), "{e}");
    // A literal key, an https URL and an undeclared secret are refused before anything is sent.
    let literal = OpenAiConfig { api_key: Some("sk-live-abc".into()), ..config.clone() };
    assert!(OpenAiCompatible::new(literal, BTreeMap::new()).unwrap_err().to_string().contains("secret reference"));
    let https = OpenAiConfig { base_url: "https://api.example.com/v1".into(), ..config.clone() };
    assert!(OpenAiCompatible::new(https, BTreeMap::new()).is_err());
    let undeclared = OpenAiConfig { api_key: Some("${secret:NOPE}".into()), ..config };
    let e = OpenAiCompatible::new(undeclared, BTreeMap::new()).unwrap().complete(&request()).unwrap_err();
    assert_eq!(e.code(), ice_core::ErrorCode::BadConfig, "{e}");
}

#[test]
fn the_scripted_provider_answers_by_conversation_then_ends() {
    let call = ice_providers::ToolCall { id: "1".into(), name: "t".into(), arguments: "{}".into() };
    let first =
        Message { role: "assistant".into(), content: String::new(), tool_calls: vec![call], tool_call_id: None };
    let p = ice_providers::Scripted::new([(
        first.clone(),
        ice_providers::Usage { prompt_tokens: 3, completion_tokens: 1 },
    )]);
    let a = p.complete(&request()).unwrap();
    assert_eq!((a.message.clone(), a.usage.total()), (first.clone(), 4));
    // The reply depends on the conversation, not on what was asked before: the same request, the same answer.
    assert_eq!(p.complete(&request()).unwrap().message, first);
    let mut next = request();
    next.messages.push(a.message);
    let b = p.complete(&next).unwrap();
    assert!(b.message.tool_calls.is_empty() && b.message.content == "done");
    let script = r#"[{"content": "hi", "usage": {"prompt_tokens": 2, "completion_tokens": 1}}]"#;
    assert_eq!(ice_providers::Scripted::from_json(script).unwrap().complete(&request()).unwrap().message.content, "hi");
    assert!(ice_providers::Scripted::from_json(r#"{"content": "hi"}"#).is_err());
}
