//! Capability grants: an authority lets a principal perform some actions on some resources, for one run or all,
//! until a time, for a number of uses. Issue, use, expiry and revocation are all ledger events.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};
use crate::ids::{EventId, RunId, Timestamp};
use crate::principal::Principal;

/// Payload of `GrantIssued`. The grant id is the event id; the run (if any) is the event's run; the issuer is
/// the event's origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantIssued {
    /// Who may act.
    pub principal: Principal,
    /// Action names, or patterns ending in `*` (`fs.*`, `*`).
    pub actions: Vec<String>,
    /// Resource prefix (`file:/sandbox/`), or a pattern where `*` matches any run of characters.
    pub resource: String,
    /// When the grant stops being usable (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// How many allowed decisions may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// Whether it can be revoked (default true).
    #[serde(default = "yes")]
    pub revocable: bool,
}

fn yes() -> bool {
    true
}

/// Payload of `GrantUsed`, `GrantExpired` and `GrantRevoked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRef {
    /// The grant.
    pub grant_id: EventId,
    /// For `GrantUsed`: the proposal whose allowed decision used it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<EventId>,
    /// For `GrantRevoked`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A grant as derived state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Id (the `GrantIssued` event id).
    pub id: EventId,
    /// Run scope, if any.
    pub run: Option<RunId>,
    /// Terms.
    pub terms: GrantIssued,
    /// Who issued it.
    pub issued_by: Principal,
    /// When.
    pub issued_at: Timestamp,
    /// Allowed decisions that used it.
    pub uses: u64,
    /// Revoked (reason).
    pub revoked: Option<String>,
    /// A `GrantExpired` event was recorded.
    pub expiry_recorded: bool,
}

/// Why a grant is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Usable now.
    Live,
    /// Past `expires_at`.
    Expired,
    /// All uses consumed.
    UsedUp,
    /// Revoked.
    Revoked,
}

impl Grant {
    /// Status at time `now`.
    pub fn status(&self, now: Timestamp) -> GrantStatus {
        if self.revoked.is_some() {
            GrantStatus::Revoked
        } else if self.expiry_recorded || self.terms.expires_at.is_some_and(|t| now >= t) {
            GrantStatus::Expired
        } else if self.terms.max_uses.is_some_and(|m| self.uses >= m) {
            GrantStatus::UsedUp
        } else {
            GrantStatus::Live
        }
    }

    /// Whether the grant's terms cover this principal, run, action and resource (ignoring liveness).
    pub fn covers(&self, who: &Principal, run: Option<RunId>, action: &str, resource: &str) -> bool {
        self.terms.principal == *who
            && (self.run.is_none() || self.run == run)
            && self.terms.actions.iter().any(|a| pattern_matches(a, action))
            && resource_matches(&self.terms.resource, resource)
    }
}

fn pattern_matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    }
}

/// A resource pattern without `*` covers the resource itself and what lies below it, by whole segments:
/// `file:notes` covers `file:notes` and `file:notes/a.md` but not `file:notes-private/a.md`; a pattern that ends
/// in a separator (`/`, `:`, `?`, `#`) covers everything that starts with it (`file:/sandbox/`, `file:`). With `*`,
/// a glob where `*` matches any run of characters.
pub fn resource_matches(pattern: &str, resource: &str) -> bool {
    const SEPARATORS: [char; 4] = ['/', ':', '?', '#'];
    if !pattern.contains('*') {
        return match resource.strip_prefix(pattern) {
            None => false,
            Some(rest) => rest.is_empty() || pattern.ends_with(SEPARATORS) || rest.starts_with(['/', '?', '#']),
        };
    }
    glob(pattern.as_bytes(), resource.as_bytes())
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with backtracking to the last `*`: linear in practice, no recursion.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Checks that a resource string is normalised: no NUL, no control characters, no `.` or `..` path segments
/// (so a prefix grant on `file:/sandbox/` cannot be escaped with `file:/sandbox/../etc`).
pub fn check_resource(resource: &str) -> Result<(), Rejection> {
    let bad = |why: &str| Err(Rejection::new(ErrorCode::BadResource, format!("resource `{resource}` {why}")));
    if resource.is_empty() || resource.len() > 2048 {
        return bad("must be 1–2048 bytes");
    }
    if resource.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    let path = resource.split_once(':').map_or(resource, |(_, p)| p);
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return bad("has a `.` or `..` path segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_patterns() {
        assert!(resource_matches("file:/sandbox/", "file:/sandbox/a/b.txt"));
        assert!(!resource_matches("file:/sandbox/", "file:/sandboxed"));
        // Whole segments: a grant on `file:notes` does not reach a sibling that merely shares the prefix.
        assert!(resource_matches("file:notes", "file:notes"));
        assert!(resource_matches("file:notes", "file:notes/a.md"));
        assert!(!resource_matches("file:notes", "file:notes-private/secret.txt"));
        assert!(!resource_matches("file:notes", "file:notes.bak"));
        assert!(resource_matches("file:", "file:anything/at/all"));
        assert!(resource_matches("http:https://api.example.com", "http:https://api.example.com/v1?x=1"));
        assert!(!resource_matches("http:https://api.example.com", "http:https://api.example.com.evil.net/"));
        assert!(resource_matches("file:/sandbox/*.txt", "file:/sandbox/a/b.txt"));
        assert!(!resource_matches("file:/sandbox/*.txt", "file:/sandbox/a.md"));
        assert!(resource_matches("*", "anything"));
        assert!(resource_matches("http:*example.com/*", "http://api.example.com/v1"));
    }

    #[test]
    fn action_patterns() {
        assert!(pattern_matches("fs.*", "fs.write"));
        assert!(!pattern_matches("fs.*", "process.exec"));
        assert!(pattern_matches("*", "process.exec"));
        assert!(pattern_matches("fs.read", "fs.read"));
        assert!(!pattern_matches("fs.read", "fs.readx"));
    }

    #[test]
    fn resources_must_be_normalised() {
        assert!(check_resource("file:/sandbox/a.txt").is_ok());
        assert!(check_resource("file:/sandbox/../etc/passwd").is_err());
        assert!(check_resource("file:/sandbox/./a").is_err());
        assert!(check_resource("file:/a\0b").is_err());
        assert!(check_resource("").is_err());
    }
}
