use super::*;
use std::path::Path;

const HOME: &str = "/home/u";

fn guardrails() -> ExecRules {
    let mut rules = ExecRules::default();
    rules.add_preset(ExecPreset::Guardrails, Origin::flag("--exec-preset guardrails"));
    rules.assemble(Vec::new(), Path::new(HOME));
    rules
}

/// The rule that decides `argv` run from `cwd` (the program found at /usr/bin unless absolute).
fn decided<'a>(rules: &'a ExecRules, cwd: &str, argv: &[&str]) -> Option<&'a ExecRule> {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let executed = if argv[0].starts_with('/') { argv[0].clone() } else { format!("/usr/bin/{}", argv[0]) };
    let call = ExecCall { executed, resolved: None, argv: &argv, cwd, home: Path::new(HOME) };
    rules.decide(&call)
}

fn denied(argv: &[&str]) -> bool {
    decided(&guardrails(), "/home/u/project", argv).is_some_and(|r| r.decision == ExecDecision::Deny)
}

#[test]
fn the_guardrails_catch_git_push_in_every_option_order() {
    for argv in [
        &["git", "push"][..],
        &["git", "push", "--force", "origin", "main"],
        &["git", "-C", "dir", "push"],
        &["git", "-Cdir", "push"],
        &["git", "--git-dir=x", "push"],
        &["git", "--git-dir", "x", "push"],
        &["git", "-c", "user.name=x", "--no-pager", "push"],
        &["/usr/lib/git-core/git-push", "origin"],
        &["git", "remote", "add", "o", "url"],
        &["git", "-C", "d", "remote", "set-url", "o", "url"],
        &["npm", "publish"],
        &["npm", "--registry", "https://r", "publish"],
        &["cargo", "publish"],
        &["twine", "upload", "dist/*"],
        &["gh", "release", "create", "v1"],
        &["sudo", "id"],
        &["su"],
        &["doas", "sh"],
    ] {
        assert!(denied(argv), "{argv:?} should be denied");
    }
}

#[test]
fn the_guardrails_let_everyday_commands_through() {
    for argv in [
        &["git", "status"][..],
        &["git", "commit", "-m", "push"],
        &["git", "log", "--", "push"],
        &["git", "-C", "push", "status"],
        &["git", "remote", "-v"],
        &["git", "remote", "remove", "x"],
        &["npm", "install"],
        &["npm", "run", "publish-docs"],
        &["cargo", "build"],
        &["gh", "release", "list"],
        &["rm", "-rf", "build"],
        &["rm", "-rf", "/home/u/project/target"],
        &["rm", "/"],
        &["rm", "-f", "/home/u/x"],
    ] {
        assert!(!denied(argv), "{argv:?} should run");
    }
}

#[test]
fn recursive_removal_of_the_root_or_home_is_caught_in_any_spelling() {
    for argv in [
        &["rm", "-rf", "/"][..],
        &["rm", "-fr", "/"],
        &["rm", "-r", "-f", "/"],
        &["rm", "--recursive", "--force", "/"],
        &["rm", "-rf", "--", "/"],
        &["rm", "-rf", "build", "/"],
        &["rm", "-R", "/usr"],
        &["rm", "-rf", "/home/u"],
        &["rm", "-rf", "/home/u/"],
        &["rm", "-rf", "~"],
        &["rm", "-rf", "/home/u/.config"],
        &["rm", "-rf", "//"],
        &["rm", "-rf", "/."],
        &["rm", "-rf", "../../.."],
        &["rm", "-rf", ".."],
    ] {
        assert!(denied(argv), "{argv:?} should be denied");
    }
}

#[test]
fn the_loader_is_seen_through() {
    assert!(denied(&["/lib64/ld-linux-x86-64.so.2", "/usr/bin/git", "push"]));
    assert!(denied(&["/lib64/ld-linux-x86-64.so.2", "--library-path", "/x", "/usr/bin/git", "push"]));
    assert!(!denied(&["/lib64/ld-linux-x86-64.so.2", "/usr/bin/git", "status"]));
}

#[test]
fn first_match_wins_and_flags_come_first() {
    let home = Path::new(HOME);
    let allow = ExecRule::new("git", vec!["push".into()], ExecDecision::Allow, None, Origin::flag("x"), home).unwrap();
    let mut rules = ExecRules::default();
    rules.add_preset(ExecPreset::Guardrails, Origin::flag("--exec-preset guardrails"));
    // Layers in the order they are applied: user, project, flags.
    let deny = ExecRule::from_flag("--deny-exec", "git status", ExecDecision::Deny, home).unwrap();
    rules.assemble(vec![vec![allow], Vec::new(), vec![deny]], home);
    assert_eq!(decided(&rules, "/", &["git", "push"]).unwrap().decision, ExecDecision::Allow);
    assert_eq!(decided(&rules, "/", &["git", "status"]).unwrap().origin, Origin::flag("--deny-exec 'git status'"));
    assert_eq!(rules.rules.len(), 2 + guardrails().rules.len());
}

// Unix paths: the Windows build (under Wine) spells them otherwise.
#[cfg(unix)]
#[test]
fn program_patterns_match_names_paths_and_globs() {
    let home = Path::new(HOME);
    let rule = |p: &str| ExecRule::new(p, vec![], ExecDecision::Deny, None, Origin::flag("x"), home).unwrap();
    let call = |executed: &str, resolved: Option<&str>| ExecCall {
        executed: executed.into(),
        resolved: resolved.map(str::to_string),
        argv: &[],
        cwd: "/",
        home,
    };
    assert!(call("/usr/bin/python3", Some("/usr/bin/python3.11")).matches(&rule("python3.11")));
    assert!(call("/ws/py", Some("/usr/bin/python3.11")).matches(&rule("python3*")));
    assert!(call("/usr/bin/git", None).matches(&rule("/usr/bin/git")));
    assert!(call("/usr/bin/git", None).matches(&rule("/usr/*/git")));
    assert!(!call("/usr/local/bin/x/git", None).matches(&rule("/usr/*/git")));
    assert!(call("/usr/local/bin/x/git", None).matches(&rule("/usr/**/git")));
    assert!(call("/home/u/bin/tool", None).matches(&rule("~/bin/tool")));
    assert_eq!(rule("/usr/bin/git").whole_program_path(), Some("/usr/bin/git".into()));
    assert_eq!(rule("/usr/*/git").whole_program_path(), None);
    assert_eq!(rule("git").whole_program_path(), None);
}

#[test]
fn bad_patterns_are_refused() {
    let home = Path::new(HOME);
    for (program, args) in [("", vec![]), ("bin/git", vec![]), ("git", vec!["-r|push"]), ("git", vec!["a||b"])] {
        let args = args.into_iter().map(str::to_string).collect();
        assert!(ExecRule::new(program, args, ExecDecision::Deny, None, Origin::flag("x"), home).is_err());
    }
    assert!(ExecRule::from_flag("--deny-exec", "  ", ExecDecision::Deny, home).is_err());
}

#[test]
fn every_preset_rule_parses() {
    assert_eq!(guardrails().rules.len(), 12);
}

/// A script's interpreter is checked as well: `#!/usr/bin/git push` runs git push.
#[test]
fn any_of_the_calls_of_one_exec_decides_in_rule_order() {
    let rules = guardrails();
    let script: Vec<String> = vec!["./deploy".into(), "origin".into()];
    let interpreter: Vec<String> = vec!["/usr/bin/git".into(), "push".into(), "./deploy".into(), "origin".into()];
    let call = |executed: &str, argv| ExecCall {
        executed: executed.into(),
        resolved: None,
        argv,
        cwd: "/home/u/project",
        home: Path::new(HOME),
    };
    let calls = [call("/home/u/project/deploy", &script), call("/usr/bin/git", &interpreter)];
    assert_eq!(rules.decide(&calls[0]), None);
    assert_eq!(rules.decide_any(&calls).map(ExecRule::pattern).as_deref(), Some("git push"));
}
