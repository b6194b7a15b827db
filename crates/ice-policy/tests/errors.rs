//! Every refusal has its stable code, names the input at fault and carries a hint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use ice_policy::{
    DEFAULT_SCHEMA, PolicyEngine, PolicyError, PolicyFile, PolicySource, default_source, parse_policy_cases,
    run_policy_tests,
};

fn source(files: &[(&str, &str)]) -> PolicySource {
    PolicySource {
        files: files.iter().map(|(n, t)| PolicyFile { name: (*n).to_owned(), text: (*t).to_owned() }).collect(),
        schema: DEFAULT_SCHEMA.to_owned(),
    }
}

fn compile_err(s: &PolicySource) -> PolicyError {
    match PolicyEngine::compile(s) {
        Ok(_) => panic!("expected the policy set to be refused"),
        Err(e) => e,
    }
}

fn with_default(extra: (&str, &str)) -> PolicySource {
    let mut s = default_source();
    s.files.push(PolicyFile { name: extra.0.to_owned(), text: extra.1.to_owned() });
    s
}

#[test]
fn bad_syntax_names_file_line_and_column() {
    let text = "// first line\n@id(\"ok\") permit(principal, action, resource);\npermit(principal, action, resource) when { context. };\n";
    let e = compile_err(&with_default(("broken.cedar", text)));
    assert_eq!(e.code(), "ICE-E0601");
    let shown = e.to_string();
    assert!(shown.starts_with("ICE-E0601: policy file `broken.cedar` does not parse at line 3"), "{shown}");
    assert!(shown.contains("near `permit(principal, action, resource) when { context. };`"), "{shown}");
    assert!(!e.hint().is_empty());
    let PolicyError::Parse { location: Some((3, col)), .. } = e else { panic!("no location: {e:?}") };
    assert!(col > 40, "{col}");
}

#[test]
fn unterminated_policy_is_a_parse_error() {
    let e = compile_err(&with_default(("broken.cedar", "permit(principal, action, resource) when { context.")));
    assert_eq!(e.code(), "ICE-E0601");
    assert!(e.to_string().contains("`broken.cedar`"), "{e}");
}

#[test]
fn templates_are_refused() {
    let e = compile_err(&with_default(("t.cedar", "permit(principal == ?principal, action, resource);")));
    assert_eq!(e.code(), "ICE-E0601");
    assert!(e.to_string().contains("templates"), "{e}");
}

#[test]
fn empty_id_is_refused() {
    let e = compile_err(&with_default(("e.cedar", "@id(\" \") permit(principal, action, resource);")));
    assert_eq!(e.code(), "ICE-E0601");
}

#[test]
fn unknown_attribute_fails_validation_naming_the_policy() {
    let text = "@id(\"bad\") forbid(principal, action, resource) when { context.no_such_field == 1 };";
    let e = compile_err(&with_default(("bad-attr.cedar", text)));
    assert_eq!(e.code(), "ICE-E0602");
    let PolicyError::Validation { issues } = &e else { panic!("{e:?}") };
    assert_eq!(issues[0].policy, "bad");
    assert_eq!(issues[0].file, "bad-attr.cedar");
    assert!(e.to_string().contains("no_such_field"), "{e}");
}

#[test]
fn wrong_types_and_unknown_actions_fail_validation() {
    for text in [
        "forbid(principal, action, resource) when { context.classification.risk_level == \"high\" };",
        "forbid(principal, action == Ice::Action::\"fs.teleport\", resource);",
        "forbid(principal is Ice::Robot, action, resource);",
        // Optional args must be tested with `has` first.
        "forbid(principal, action == Ice::Action::\"process.exec\", resource) when { context.args.cwd == \"/\" };",
    ] {
        let e = compile_err(&with_default(("x.cedar", text)));
        assert_eq!(e.code(), "ICE-E0602", "{text}: {e}");
        let PolicyError::Validation { issues } = &e else { panic!("{e:?}") };
        assert_eq!(issues[0].policy, "x:0", "generated ids name the file and index");
    }
}

#[test]
fn schema_missing_invalid_or_unfit_is_refused() {
    let mut s = default_source();
    s.schema = String::new();
    assert_eq!(compile_err(&s).code(), "ICE-E0603");

    s.schema =
        "namespace Ice { entity Agent; action \"x\" appliesTo { principal: [Agent], resource: [Nope] }; }".to_owned();
    let e = compile_err(&s);
    assert_eq!(e.code(), "ICE-E0603", "{e}");

    s.schema = "namespace Ice { entity Agent = { ".to_owned();
    let e = compile_err(&s);
    assert_eq!(e.code(), "ICE-E0603");
    assert!(e.to_string().contains("line 1"), "{e}");

    // Valid Cedar, but ICE cannot build entities it accepts: the resource needs an `owner` ICE never sets.
    let unfit = DEFAULT_SCHEMA.replace(
        "entity Resource = { scheme: String, path: String };",
        "entity Resource = { scheme: String, path: String, owner: String };",
    );
    let s = PolicySource { files: source(&[("p.cedar", "permit(principal, action, resource);")]).files, schema: unfit };
    let e = compile_err(&s);
    assert_eq!(e.code(), "ICE-E0603", "{e}");
    assert!(e.to_string().contains("owner"), "{e}");

    // No action at all.
    let s = PolicySource {
        files: source(&[("p.cedar", "permit(principal, action, resource);")]).files,
        schema: "namespace Ice { entity Agent, Human, Runtime, Policy, Effector; \
                 entity Resource = { scheme: String, path: String }; }"
            .to_owned(),
    };
    assert_eq!(compile_err(&s).code(), "ICE-E0603");
}

#[test]
fn duplicate_ids_are_refused_across_and_within_files() {
    let e = compile_err(&with_default(("dup.cedar", "@id(\"default-permit\") forbid(principal, action, resource);")));
    assert_eq!(e.code(), "ICE-E0604");
    assert_eq!(e.to_string(), "ICE-E0604: policy id `default-permit` is used in both `default.cedar` and `dup.cedar`");

    let twice = "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") forbid(principal, action, resource);";
    let e = compile_err(&source(&[("one.cedar", twice)]));
    assert_eq!(e.code(), "ICE-E0604");
    assert!(e.to_string().contains("two policies in `one.cedar`"), "{e}");

    // A generated id can collide with an explicit one.
    let e = compile_err(&source(&[
        ("a.cedar", "@id(\"b:0\") permit(principal, action, resource);"),
        ("b.cedar", "forbid(principal, action, resource);"),
    ]));
    assert_eq!(e.code(), "ICE-E0604");
}

#[test]
fn no_policy_files_is_a_directory_error() {
    let e = compile_err(&source(&[]));
    assert_eq!(e.code(), "ICE-E0606");
}

#[test]
fn bad_case_files_name_the_case_and_field() {
    let engine = PolicyEngine::compile(&default_source()).unwrap();
    let case = |extra: &str| {
        format!(
            "[[case]]\nname = \"first\"\nprincipal = \"agent:a\"\naction = \"fs.read\"\nresource = \"file:/a\"\n\
             args = {{ path = \"/a\" }}\nexpect = \"permit\"\n\n[[case]]\nname = \"second\"\n{extra}"
        )
    };
    let full = "principal = \"agent:a\"\naction = \"fs.read\"\nresource = \"file:/a\"\nexpect = \"permit\"\n";
    for (text, needle) in [
        (case("principal = \"agent:a\"\naction = \"fs.read\"\nresource = \"file:/a\"\n"), "`expect`"),
        (case(&format!("{full}expct = \"permit\"\n")), "`expct`"),
        (case(&full.replace("agent:a", "robot:a")), "field `principal`"),
        (case(&full.replace("permit", "allow")), "allow"),
        (case(&format!("{full}cost = {{ gold = 1 }}\n")), "field `cost`"),
        (case(&format!("{full}run_state = \"RUNNING\"\n")), "RUNNING"),
        (case(&format!("{full}time = \"yesterday\"\n")), "field `time`"),
        (case(&format!("{full}classification = {{ risk = \"extreme\" }}\n")), "extreme"),
        (case(&format!("{full}args = [1]\n")), "args"),
    ] {
        let e = run_policy_tests(&engine, &text).unwrap_err();
        assert_eq!(e.code(), "ICE-E0605", "{text}");
        let shown = e.to_string();
        assert!(shown.contains("case 2 (`second`)"), "{shown}");
        assert!(shown.contains(needle), "expected {needle} in {shown}");
    }
    for (text, needle) in [
        ("", "no [[case]]"),
        ("[[cases]]\nname = \"x\"\n", "unknown top-level key `cases`"),
        ("case = 1", "array of tables"),
        ("[[case]\n", "not valid TOML"),
    ] {
        let e = parse_policy_cases(text).unwrap_err();
        assert_eq!(e.code(), "ICE-E0605");
        assert!(e.to_string().contains(needle), "expected {needle} in {e}");
    }
}

#[test]
fn every_error_has_code_message_and_hint() {
    let errors = [
        PolicyError::Parse { file: "f.cedar".into(), location: None, snippet: None, message: "m".into() },
        PolicyError::Validation { issues: vec![] },
        PolicyError::Schema { message: "m".into() },
        PolicyError::DuplicateId { id: "i".into(), first: "a".into(), second: "b".into() },
        PolicyError::Cases { case: None, message: "m".into() },
        PolicyError::Dir { path: "d".into(), message: "m".into() },
    ];
    let codes: Vec<&str> = errors.iter().map(PolicyError::code).collect();
    assert_eq!(codes, ["ICE-E0601", "ICE-E0602", "ICE-E0603", "ICE-E0604", "ICE-E0605", "ICE-E0606"]);
    for e in &errors {
        assert_eq!(e.to_string(), format!("{}: {}", e.code(), e.message()));
        assert_eq!(e.error_code().as_str(), e.code());
        assert!(!e.hint().is_empty());
    }
}
