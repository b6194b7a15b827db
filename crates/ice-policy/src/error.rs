//! The crate's error type: every way a policy directory, a policy set or a policy test file can be refused, each
//! with a stable `ICE-E06xx` code, a message naming the input at fault, and a hint for the fix.

use ice_core::ErrorCode;

/// Why a policy source, a policy set or a policy test file was refused.
///
/// `Display` is `ICE-E06xx: message`; [`PolicyError::code`] is the stable code alone and
/// [`PolicyError::hint`] says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `ICE-E0601`: a policy file does not parse (or uses a construct ICE does not accept, such as templates).
    #[error("{}: {}", self.code(), self.message())]
    Parse {
        /// The file name, e.g. `default.cedar`.
        file: String,
        /// 1-based line and column of the first error, when Cedar reports a position.
        location: Option<(usize, usize)>,
        /// The source line at the error (trimmed, shortened), or the policy at fault.
        snippet: Option<String>,
        /// Cedar's message.
        message: String,
    },
    /// `ICE-E0602`: one or more policies do not validate against the schema.
    #[error("{}: {}", self.code(), self.message())]
    Validation {
        /// One entry per validation error: the policy id, its file and Cedar's message.
        issues: Vec<ValidationIssue>,
    },
    /// `ICE-E0603`: the schema file is missing or invalid, or does not declare what ICE needs.
    #[error("{}: {}", self.code(), self.message())]
    Schema {
        /// What is wrong.
        message: String,
    },
    /// `ICE-E0604`: two policies share an id.
    #[error("{}: {}", self.code(), self.message())]
    DuplicateId {
        /// The shared id.
        id: String,
        /// The file of the first policy with that id.
        first: String,
        /// The file of the second policy with that id.
        second: String,
    },
    /// `ICE-E0605`: a policy test case file is invalid.
    #[error("{}: {}", self.code(), self.message())]
    Cases {
        /// The case at fault, e.g. ``case 2 (`writes are permitted`)``; `None` when the file itself is at fault.
        case: Option<String>,
        /// What is wrong, naming the field.
        message: String,
    },
    /// `ICE-E0606`: the policy directory is unreadable or holds no `*.cedar` file.
    #[error("{}: {}", self.code(), self.message())]
    Dir {
        /// The directory (or file inside it) at fault.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// One policy that failed schema validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    /// The policy id (from `@id`, or the generated `file:index`).
    pub policy: String,
    /// The file the policy is in.
    pub file: String,
    /// Cedar's message.
    pub message: String,
}

impl PolicyError {
    /// The stable code, e.g. `ICE-E0601`.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The stable code as the core's [`ErrorCode`] (the same codes `ice-core` documents).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Parse { .. } => ErrorCode::PolicyParse,
            Self::Validation { .. } => ErrorCode::PolicyValidation,
            Self::Schema { .. } => ErrorCode::PolicySchema,
            Self::DuplicateId { .. } => ErrorCode::PolicyDuplicateId,
            Self::Cases { .. } => ErrorCode::PolicyCases,
            Self::Dir { .. } => ErrorCode::PolicyDir,
        }
    }

    /// What was wrong with which input, without the code.
    pub fn message(&self) -> String {
        match self {
            Self::Parse { file, location, snippet, message } => {
                let at = location.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default();
                let near = snippet.as_ref().map(|s| format!(" (near `{s}`)")).unwrap_or_default();
                format!("policy file `{file}` does not parse{at}{near}: {message}")
            }
            Self::Validation { issues } => {
                // Cedar reports a bad policy once per action it could apply to: show the first error of each
                // policy and count the rest.
                let mut parts: Vec<(String, usize)> = Vec::new();
                let mut seen: Vec<&str> = Vec::new();
                for i in issues {
                    match seen.iter().position(|p| *p == i.policy) {
                        Some(at) => parts[at].1 += 1,
                        None => {
                            seen.push(&i.policy);
                            parts.push((format!("policy `{}` in `{}`: {}", i.policy, i.file, i.message), 0));
                        }
                    }
                }
                let parts: Vec<String> = parts
                    .into_iter()
                    .map(|(p, more)| if more == 0 { p } else { format!("{p} (and {more} more like it)") })
                    .collect();
                let n = seen.len();
                let noun = if n == 1 { "policy does" } else { "policies do" };
                format!("{n} {noun} not validate against the schema: {}", parts.join("; "))
            }
            Self::Schema { message } => format!("policy schema: {message}"),
            Self::DuplicateId { id, first, second } => {
                if first == second {
                    format!("two policies in `{first}` have the id `{id}`")
                } else {
                    format!("policy id `{id}` is used in both `{first}` and `{second}`")
                }
            }
            Self::Cases { case: Some(case), message } => format!("policy test {case}: {message}"),
            Self::Cases { case: None, message } => format!("policy test file: {message}"),
            Self::Dir { path, message } => format!("policy directory `{path}`: {message}"),
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Parse { .. } => {
                "fix the Cedar syntax at the position shown (templates with ?principal/?resource are not \
                 supported); `ice policy validate` re-checks"
            }
            Self::Validation { .. } => {
                "make the policy match schema.cedarschema (attribute names and types, action names), or extend \
                 the schema"
            }
            Self::Schema { .. } => {
                "provide a valid schema.cedarschema declaring namespace Ice with entity types Agent, Human, \
                 Runtime, Policy, Effector (no attributes) and Resource = { scheme: String, path: String }"
            }
            Self::DuplicateId { .. } => "give every policy a unique @id(\"...\")",
            Self::Cases { .. } => {
                "see README.md, section Policies (or the ice-policy crate docs), for the case file format"
            }
            Self::Dir { .. } => "put one or more *.cedar files and schema.cedarschema in the policy directory",
        }
    }
}

/// An error's message followed by those of its sources (Cedar often keeps the detail in the source).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
