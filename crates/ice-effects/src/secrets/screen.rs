//! The intake screen: what [`crate::Effectors::screen_args`] runs on a proposal's args before anything is recorded
//! or decided, because the ledger keeps args whole and forever.
//!
//! Two kinds of check. Field checks (run by the HTTP and process effectors' [`crate::Effector::screen`]): a
//! credential-bearing header or environment variable whose value is literal instead of a `${secret:NAME}`
//! reference. Shape checks (run here for every action, served or not): a string anywhere in the args that looks
//! like a well-known credential ([`SHAPES`]). Refusals use `LiteralSecret` and name the field, never the value.
//!
//! The shape matchers are hand-written and deliberately narrow (a boundary before the prefix, a minimum length
//! and, where the prefix is an ordinary word, a mix of character classes), so that prose such as "a bearer of
//! good news" passes. They catch accidents and lazy agents, not a determined one, who could split or encode a
//! credential; the field checks and the fact that agents never hold the values are the real defence.

use ice_core::ErrorCode;
use serde_json::Value;

use super::{OPEN, has_reference};
use crate::EffectError;

/// Request header names (lowercase) that carry credentials: a literal value is refused. `[effects.http]
/// redact_headers` adds to these.
pub(crate) const CREDENTIAL_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token"];

/// Parts of environment variable names (compared in upper case) that mark a credential, each with the
/// continuations that make it an ordinary word instead (`TOKENIZERS_PARALLELISM` is not a token).
const CREDENTIAL_ENV_MARKERS: &[(&str, &[&str])] = &[
    ("TOKEN", &["IZ"]),
    ("SECRET", &[]),
    ("PASSWORD", &[]),
    ("PASSWD", &[]),
    ("API_KEY", &[]),
    ("APIKEY", &[]),
    ("PRIVATE_KEY", &[]),
    ("CREDENTIAL", &[]),
];

/// Whether an environment variable of this name holds a credential.
pub(crate) fn is_credential_env_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CREDENTIAL_ENV_MARKERS.iter().any(|(marker, unless)| {
        upper.match_indices(marker).any(|(i, _)| {
            let rest = &upper[i + marker.len()..];
            !unless.iter().any(|u| rest.starts_with(u))
        })
    })
}

/// A well-known credential shape.
struct Shape {
    /// What it is, as named in the refusal.
    what: &'static str,
    /// Whether a string contains one.
    found_in: fn(&str) -> bool,
}

/// Credential shapes refused in any string of any action's args.
const SHAPES: &[Shape] = &[
    // `Bearer ` / `Basic ` + 16 or more token68 characters that look random (a digit, or both letter cases).
    Shape { what: "an HTTP Bearer or Basic credential", found_in: auth_scheme },
    // `ghp_`, `gho_`, `ghs_`, `ghu_`, `ghr_` + 20 or more alphanumerics; `github_pat_` + 20 or more of [A-Za-z0-9_].
    Shape { what: "a GitHub token", found_in: github },
    // `sk-` + 20 or more of [A-Za-z0-9_-] with upper case, lower case and a digit (OpenAI, Anthropic keys).
    Shape { what: "an API secret key (sk-...)", found_in: sk_key },
    // `AKIA` / `ASIA` + exactly 16 of [A-Z0-9].
    Shape { what: "an AWS access key id", found_in: aws_key_id },
    // `xoxa-`, `xoxb-`, `xoxp-`, `xoxr-`, `xoxs-` + 10 or more of [A-Za-z0-9-] with a digit.
    Shape { what: "a Slack token", found_in: slack },
    // `-----BEGIN <label> PRIVATE KEY-----`, label of [A-Z0-9 ].
    Shape { what: "a PEM private key", found_in: pem_private_key },
];

/// The first shape `s` contains, if any.
pub(crate) fn credential_shape(s: &str) -> Option<&'static str> {
    SHAPES.iter().find(|shape| (shape.found_in)(s)).map(|shape| shape.what)
}

/// Refuses (`LiteralSecret`) the first string or object key in `args` that has a credential shape.
pub(crate) fn refuse_credential_shapes(action: &str, args: &Value) -> Result<(), EffectError> {
    match first(args, "args", &credential_shape) {
        None => Ok(()),
        Some((field, what)) => Err(EffectError::new(
            ErrorCode::LiteralSecret,
            format!("{action}: {field} looks like {what}; credentials must not be literal args"),
        )),
    }
}

/// Refuses (`NotAllowlisted`) a secret reference anywhere in `args` except inside the top-level `resolved` field,
/// whose entries the effector checks itself; `where_resolved` says where references are resolved.
pub(crate) fn refuse_references_outside(
    action: &str,
    args: &Value,
    resolved: Option<&str>,
    where_resolved: &str,
) -> Result<(), EffectError> {
    let probe = |s: &str| has_reference(s).then_some(());
    let found = match args {
        Value::Object(map) => map.iter().find_map(|(key, value)| {
            if probe(key).is_some() {
                return Some("a key of args".to_owned());
            }
            if Some(key.as_str()) == resolved {
                return None;
            }
            first(value, &format!("args.{}", shown_key(key)), &probe).map(|(field, ())| field)
        }),
        other => first(other, "args", &probe).map(|(field, ())| field),
    };
    match found {
        None => Ok(()),
        Some(field) => Err(EffectError::new(
            ErrorCode::NotAllowlisted,
            format!(
                "{action}: {field} has a secret reference ({OPEN}...}}); references are resolved only in {where_resolved}"
            ),
        )),
    }
}

/// One entry of a `Name<sep>value` list (`args.headers`, `args.env`), seen leniently for screening.
pub(crate) struct Entry {
    /// How to name it in a message: its index, and its name when that is safe to show.
    pub(crate) label: String,
    /// The name.
    pub(crate) name: String,
    /// The value, spaces and tabs around it dropped.
    pub(crate) value: String,
}

/// The entries of `args.<field>` in whatever form they came: the array of `Name<sep>value` strings effectors
/// accept, or an object (which `plan` refuses, but which is recorded all the same if not screened). Other values
/// are left to `plan`; the shape check still sees their strings.
pub(crate) fn entries(args: &Value, field: &str, sep: char) -> Vec<Entry> {
    let label = |i: usize, name: &str| {
        let safe = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic() && b != b'`');
        if safe { format!("args.{field} entry {i} (`{name}`)") } else { format!("args.{field} entry {i}") }
    };
    let trim = |v: &str| v.trim_matches([' ', '\t']).to_owned();
    match args.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let entry = item.as_str()?;
                let (name, value) = entry.split_once(sep).unwrap_or((entry, ""));
                Some(Entry { label: label(i, name), name: name.to_owned(), value: trim(value) })
            })
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .enumerate()
            .filter_map(|(i, (name, value))| {
                Some(Entry { label: label(i, name), name: name.clone(), value: trim(value.as_str()?) })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The refusal for a credential field given literally.
pub(crate) fn literal(action: &str, label: &str) -> EffectError {
    EffectError::new(
        ErrorCode::LiteralSecret,
        format!("{action}: {label} carries a literal credential; give a secret reference instead"),
    )
}

/// Whether a URL carries user info (`user[:password]@`) in its authority.
pub(crate) fn url_has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
}

/// The first string (or object key) under `value` that `probe` accepts, with its path from `path`.
fn first<T>(value: &Value, path: &str, probe: &dyn Fn(&str) -> Option<T>) -> Option<(String, T)> {
    match value {
        Value::String(s) => probe(s).map(|t| (path.to_owned(), t)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| first(v, &format!("{path}[{i}]"), probe)),
        Value::Object(map) => map.iter().find_map(|(key, v)| match probe(key) {
            Some(t) => Some((format!("a key of {path}"), t)),
            None => first(v, &format!("{path}.{}", shown_key(key)), probe),
        }),
        _ => None,
    }
}

/// An object key as shown in a path: itself when short and plain, else a placeholder (a key is agent input).
fn shown_key(key: &str) -> &str {
    let plain =
        !key.is_empty() && key.len() <= 40 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain { key } else { "<key>" }
}

/// Whether the byte before `i` ends a word (so a prefix at `i` starts one).
fn at_boundary(bytes: &[u8], i: usize) -> bool {
    i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

/// The bytes from `start` for as long as `allowed` holds.
fn run(bytes: &[u8], start: usize, allowed: impl Fn(u8) -> bool) -> &[u8] {
    let len = bytes.get(start..).unwrap_or_default().iter().take_while(|&&b| allowed(b)).count();
    &bytes[start..start + len]
}

/// For each place where `prefix` starts a word in `s`: the run of `class` bytes after it, and the byte after that.
///
/// A prefix found inside the previous run is skipped, which keeps input such as `sk-sk-sk-...` linear rather than
/// quadratic. That loses nothing: where `class` has only word characters such a prefix does not start a word,
/// and otherwise (`sk-`, `xox?-`) its run would be a suffix of the previous one, which the matcher's test (a
/// minimum length and minimum character classes) cannot accept when it rejected the whole.
fn runs_after<'a>(
    s: &'a str,
    prefix: &'a str,
    class: impl Fn(u8) -> bool + 'a,
) -> impl Iterator<Item = (&'a [u8], Option<u8>)> + 'a {
    let bytes = s.as_bytes();
    let mut end = 0;
    s.match_indices(prefix).filter_map(move |(i, _)| {
        if i < end || !at_boundary(bytes, i) {
            return None;
        }
        let found = run(bytes, i + prefix.len(), &class);
        end = i + prefix.len() + found.len();
        Some((found, bytes.get(end).copied()))
    })
}

fn has_digit(run: &[u8]) -> bool {
    run.iter().any(u8::is_ascii_digit)
}

fn has_both_cases(run: &[u8]) -> bool {
    run.iter().any(u8::is_ascii_uppercase) && run.iter().any(u8::is_ascii_lowercase)
}

/// Each token-run is bounded by the space that begins the next `Bearer `, so every byte is looked at a bounded
/// number of times.
fn auth_scheme(s: &str) -> bool {
    let bytes = s.as_bytes();
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    // The scheme is case-insensitive: search for its tail in lower and upper case, then check the first letter.
    ["earer ", "EARER ", "asic ", "ASIC "].iter().any(|tail| {
        s.match_indices(tail).any(|(at, _)| {
            let Some(i) = at.checked_sub(1) else { return false };
            let spaces = run(bytes, at + tail.len(), |b| b == b' ').len();
            let token = run(bytes, at + tail.len() + spaces, token68);
            bytes[i].eq_ignore_ascii_case(&b'b')
                && at_boundary(bytes, i)
                && token.len() >= 16
                && (has_digit(token) || has_both_cases(token))
        })
    })
}

fn github(s: &str) -> bool {
    let classic = ["ghp_", "gho_", "ghs_", "ghu_", "ghr_"]
        .iter()
        .any(|prefix| runs_after(s, prefix, |b| b.is_ascii_alphanumeric()).any(|(token, _)| token.len() >= 20));
    classic
        || runs_after(s, "github_pat_", |b| b.is_ascii_alphanumeric() || b == b'_').any(|(token, _)| token.len() >= 20)
}

fn sk_key(s: &str) -> bool {
    runs_after(s, "sk-", |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        .any(|(key, _)| key.len() >= 20 && has_digit(key) && has_both_cases(key))
}

fn aws_key_id(s: &str) -> bool {
    ["AKIA", "ASIA"].iter().any(|prefix| {
        runs_after(s, prefix, |b| b.is_ascii_uppercase() || b.is_ascii_digit())
            .any(|(id, after)| id.len() == 16 && !after.is_some_and(|b| b.is_ascii_alphanumeric()))
    })
}

fn slack(s: &str) -> bool {
    ["xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-"].iter().any(|prefix| {
        runs_after(s, prefix, |b| b.is_ascii_alphanumeric() || b == b'-')
            .any(|(token, _)| token.len() >= 10 && has_digit(token))
    })
}

fn pem_private_key(s: &str) -> bool {
    let bytes = s.as_bytes();
    s.match_indices("-----BEGIN ").any(|(i, open)| {
        let start = i + open.len();
        let label = run(bytes, start, |b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
        bytes[start + label.len()..].starts_with(b"-----") && label.ends_with(b"PRIVATE KEY")
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credential_env_names() {
        for name in
            ["GITHUB_TOKEN", "gh_token", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "MYSQL_PASSWD", "OPENAI_API_KEY"]
        {
            assert!(is_credential_env_name(name), "{name}");
        }
        for name in ["PATH", "LANG", "TOKENIZERS_PARALLELISM", "HOME", "KEYBOARD", "API_URL"] {
            assert!(!is_credential_env_name(name), "{name}");
        }
        // A marker that also appears as an ordinary word elsewhere in the name still counts.
        assert!(is_credential_env_name("TOKENIZER_TOKEN"));
    }

    #[test]
    fn each_shape_has_a_hit_and_a_near_miss() {
        let cases: &[(&str, &str, &str)] = &[
            ("an HTTP Bearer", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "a bearer of good news"),
            ("an HTTP Bearer", "Basic dXNlcjpwYXNzd29yZA==", "Basic internationalization"),
            ("a GitHub token", "token ghp_0123456789abcdefghijABCDEFGHIJ", "ghp_short1234"),
            ("a GitHub token", "github_pat_11ABCDEFG0123456789_abcdef", "my_github_pat_notes"),
            ("an API secret key", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "task-management-2023-plan-final-v2"),
            ("an AWS access key id", "id=AKIAIOSFODNN7EXAMPLE;", "AKIAIOSFODNN7EXAMPLEX"),
            ("a Slack token", "xoxb-123456789012-abcdef", "xoxb-abcdefghijkl"),
            ("a PEM private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn", "-----BEGIN PUBLIC KEY-----"),
        ];
        for (what, hit, miss) in cases {
            assert!(credential_shape(hit).is_some_and(|w| w.starts_with(what)), "{hit}: {:?}", credential_shape(hit));
            assert_eq!(credential_shape(miss), None, "{miss}");
        }
        assert_eq!(credential_shape("Bearer ${secret:GITHUB_TOKEN}"), None);
        assert_eq!(credential_shape("the ghp_ prefix"), None);
        assert_eq!(credential_shape("xghp_0123456789abcdefghijABCDEFGHIJ"), None);
        assert_eq!(credential_shape(""), None);
        assert_eq!(credential_shape("sk-"), None);
        // The scheme's case does not matter, a word boundary before it does.
        assert!(credential_shape("BEARER abcdef0123456789ABCD").is_some());
        assert!(credential_shape("authorization: bearer abcdef0123456789").is_some());
        assert_eq!(credential_shape("xBearer abcdef0123456789ABCD"), None);
        assert_eq!(credential_shape("earer abcdef0123456789ABCD"), None);
    }

    #[test]
    fn adversarial_input_stays_linear() {
        // Every prefix repeated back to back: each match may only look a bounded distance ahead.
        for unit in ["sk-", "ghp_", "xoxb-", "AKIA", "Bearer ", "-----BEGIN "] {
            let big = unit.repeat(4 * 1024 * 1024 / unit.len());
            let start = std::time::Instant::now();
            let _ = credential_shape(&big);
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "{unit}: {:?}", start.elapsed());
        }
    }

    #[test]
    fn refusals_name_the_field_not_the_value() {
        let args = json!({"cmd": {"list": ["ok", "x ghp_0123456789abcdefghijABCDEFGHIJ"]}});
        let err = refuse_credential_shapes("process.exec", &args).unwrap_err();
        assert_eq!(err.code, ErrorCode::LiteralSecret);
        assert_eq!(
            err.message,
            "process.exec: args.cmd.list[1] looks like a GitHub token; credentials must not be literal args"
        );
        let key = json!({"m": {"AKIAIOSFODNN7EXAMPLE": 1}});
        let err = refuse_credential_shapes("x", &key).unwrap_err();
        assert!(err.message.starts_with("x: a key of args.m looks like"), "{err}");
    }

    #[test]
    fn references_outside_the_resolved_field_are_refused() {
        let ok = json!({"url": "http://h:1/", "headers": ["A: ${secret:X}"]});
        refuse_references_outside("http.request", &ok, Some("headers"), "header values").unwrap();
        for (args, field) in [
            (json!({"url": "http://h:1/${secret:X}", "headers": []}), "args.url"),
            (json!({"argv": ["sh", "${secret:X}"]}), "args.argv[1]"),
            (json!({"a": {"${secret:X}": 1}}), "a key of args.a"),
            (json!("${secret:X}"), "args"),
        ] {
            let err = refuse_references_outside("x", &args, Some("headers"), "header values").unwrap_err();
            assert_eq!(err.code, ErrorCode::NotAllowlisted);
            assert!(err.message.starts_with(&format!("x: {field} has a secret reference")), "{err}");
        }
    }

    #[test]
    fn entries_are_read_in_both_forms() {
        let array = entries(&json!({"headers": ["Authorization: Bearer x ", "bad", 3]}), "headers", ':');
        let seen: Vec<_> = array.iter().map(|e| (e.label.as_str(), e.name.as_str(), e.value.as_str())).collect();
        assert_eq!(
            seen,
            [
                ("args.headers entry 0 (`Authorization`)", "Authorization", "Bearer x"),
                ("args.headers entry 1 (`bad`)", "bad", "")
            ]
        );
        let object = entries(&json!({"env": {"A TOKEN": "v"}}), "env", '=');
        assert_eq!((object[0].label.as_str(), object[0].value.as_str()), ("args.env entry 0", "v"));
        assert!(entries(&json!({"env": "x"}), "env", '=').is_empty());
    }

    #[test]
    fn user_info_in_urls() {
        assert!(url_has_userinfo("http://user:pw@h:1/"));
        assert!(url_has_userinfo("http://token@h:1/"));
        assert!(!url_has_userinfo("http://h:1/a@b?c=d@e"));
        assert!(!url_has_userinfo("http://h:1"));
    }
}
