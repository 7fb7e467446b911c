//! The ACL plan: what a run changes on the filesystem, derived from the policy's rules. Every
//! entry names the run's logon SID, so entries from concurrent runs never collide and
//! a crashed run's entries are found by that SID alone.
//!
//! - A writable root, and a read root below the home folder or elsewhere, becomes a
//!   [`RootUse`]: it is opened through its persistent slot grant (see [`crate::grants`]), at
//!   no per-run cost. A read root that is a drive root or holds the home folder gets nothing:
//!   those stay under the system's own ACLs, which already let any local user read system
//!   folders and keep other users' (and the caller's) profile closed.
//! - A protected path inside a writable root gets a deny of every write right, inherited; each
//!   folder between the root and it gets a deny of DELETE ("pins"), so neither it nor a parent
//!   can be renamed away and replaced. An absent protected path gets a placeholder (an empty
//!   folder or file) first, unless its rule applies only while present, or it lies in an
//!   absent `.git` (`git init` must keep working).
//! - A hidden path gets a deny of reading and writing. Outside writable and read roots it
//!   needs one only if the run could read it at all, which is judged from its ACL at launch.
//! - A read rule inside a writable root makes that part read-only (a deny of writing).

use crate::acl::{flags, mask, Ace};
use crate::error::LaunchError;
use crate::grants::RootUse;
use crate::sid::Sid;
use crate::wpath;
use ringfence_policy::{FsRule, FsRules, Origin, Placeholder, RuleKind};

/// What exists at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create a missing folder on the way to a placeholder; writable like the tree it is in,
    /// removed after the run if empty.
    Folder { path: String },
    /// Create an empty file or folder where a protected or hidden path is absent; removed
    /// after the run if still empty.
    Placeholder { path: String, kind: Kind },
    /// Allow entries for the run: `this` on the object, `children` inherited below it (the
    /// run's own temporary folder, created empty).
    Grant { path: String, this: u32, children: u32 },
    /// A deny entry for the run; `tree`: inherited below too.
    Deny { path: String, mask: u32, tree: bool },
    /// A deny entry, added only if the path's ACL would let the run read it.
    DenyIfReadable { path: String, mask: u32, tree: bool },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Folder { path }
            | Op::Placeholder { path, .. }
            | Op::Grant { path, .. }
            | Op::Deny { path, .. }
            | Op::DenyIfReadable { path, .. } => path,
        }
    }

    /// The entries this operation adds for the run's logon SID (none for creations).
    pub fn aces(&self, logon: &Sid) -> Vec<Ace> {
        match self {
            Op::Folder { .. } | Op::Placeholder { .. } => vec![],
            Op::Grant { this, children, .. } => {
                let mut out = vec![Ace::Allow { flags: 0, mask: *this, sid: logon.clone() }];
                if *children != 0 {
                    out.push(Ace::Allow {
                        flags: flags::TREE | flags::INHERIT_ONLY,
                        mask: *children,
                        sid: logon.clone(),
                    });
                }
                out
            }
            Op::Deny { mask, tree, .. } | Op::DenyIfReadable { mask, tree, .. } => {
                vec![Ace::Deny { flags: if *tree { flags::TREE } else { 0 }, mask: *mask, sid: logon.clone() }]
            }
        }
    }
}

/// The plan for one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclPlan {
    pub ops: Vec<Op>,
    /// The writable roots, normalized.
    pub write_roots: Vec<String>,
    /// Read roots left to the system's ACLs, for `explain`.
    pub system_read_roots: Vec<String>,
    /// The roots opened through their slot grants, writable ones first.
    pub roots: Vec<RootUse>,
}

impl AclPlan {
    pub fn count(&self, f: impl Fn(&Op) -> bool) -> usize {
        self.ops.iter().filter(|o| f(o)).count()
    }

    /// A one-line summary for `run.start`.
    pub fn summary(&self) -> String {
        let denies = self.count(|o| matches!(o, Op::Deny { .. } | Op::DenyIfReadable { .. }));
        let placeholders = self.count(|o| matches!(o, Op::Placeholder { .. }));
        let read_only = self.roots.iter().filter(|r| !r.write).count();
        format!(
            "{} writable and {read_only} read-only roots through their slot groups (other roots closed); \
             up to {denies} deny entries for this run's logon SID and {placeholders} placeholders, removed \
             when the run ends",
            self.write_roots.len()
        )
    }
}

/// The "pins" of `path` below `root`: a deny of DELETE on each folder between them, so none
/// can be renamed away and replaced.
fn pins(root: &str, path: &str) -> impl Iterator<Item = Op> {
    wpath::between(root, path).into_iter().map(|pin| Op::Deny { path: pin, mask: mask::DELETE, tree: false })
}

fn text(path: &std::path::Path) -> Result<String, LaunchError> {
    let s = path.to_str().ok_or_else(|| {
        LaunchError::policy(
            format!("the path {} is not valid Unicode", path.display()),
            "rename it, or leave it out of the policy",
        )
    })?;
    Ok(wpath::normalize(s))
}

/// One rule, its path normalized.
type Rule<'a> = (RuleKind, String, &'a FsRule);

/// The plan while it is built.
struct Builder<'a> {
    home: String,
    kind: &'a dyn Fn(&str) -> Option<Kind>,
    out: AclPlan,
    creations: Vec<Op>,
    denies: Vec<Op>,
    /// Read roots opened through their slots: a hidden path inside one needs a deny.
    read_grants: Vec<String>,
}

fn push(list: &mut Vec<Op>, op: Op) {
    if !list.iter().any(|o| o.path().eq_ignore_ascii_case(op.path()) && *o == op) {
        list.push(op);
    }
}

impl Builder<'_> {
    fn writable_root_of(&self, p: &str) -> Option<String> {
        self.out.write_roots.iter().filter(|w| wpath::is_within(p, w)).min_by_key(|w| w.len()).cloned()
    }

    /// A deny of `mask` on `path` inside `root`, with the pins between them.
    fn deny_in_root(&mut self, root: &str, path: &str, mask: u32, tree: bool) {
        push(&mut self.denies, Op::Deny { path: path.to_string(), mask, tree });
        for pin in pins(root, path) {
            push(&mut self.denies, pin);
        }
    }

    fn writable_root(&mut self, path: &str, origin: &Origin, allow_writable_home: bool) -> Result<(), LaunchError> {
        if self.out.write_roots.iter().any(|w| wpath::same(w, path)) {
            return Ok(());
        }
        if wpath::is_root(path) {
            return Err(LaunchError::policy(
                format!("the writable root {path} ({origin}) is a whole drive"),
                "make a folder writable, not a drive",
            ));
        }
        if wpath::is_within(&self.home, path) && !allow_writable_home {
            return Err(LaunchError::policy(
                format!("the writable root {path} ({origin}) holds the home folder {}", self.home),
                "make a narrower folder writable, or pass --allow-writable-home",
            ));
        }
        if (self.kind)(path).is_none() {
            return Err(LaunchError::policy(
                format!("the writable root {path} ({origin}) does not exist"),
                "create it first, or remove the rule",
            ));
        }
        self.out.roots.push(RootUse { path: path.to_string(), write: true });
        self.out.write_roots.push(path.to_string());
        Ok(())
    }

    fn read_root(&mut self, path: &str) {
        let existing = (self.kind)(path);
        if let Some(root) = self.writable_root_of(path) {
            if !wpath::same(&root, path) && existing.is_some() {
                // A read-only area inside a writable root.
                self.deny_in_root(&root, path, mask::ANY_WRITE, existing == Some(Kind::Dir));
            }
            return;
        }
        if wpath::is_root(path) || wpath::is_within(&self.home, path) {
            self.out.system_read_roots.push(path.to_string());
            return;
        }
        if existing.is_some() {
            self.out.roots.push(RootUse { path: path.to_string(), write: false });
            self.read_grants.push(path.to_string());
        }
    }

    /// A protected (`deny_write`) or hidden (`deny_read`) path.
    fn denied(&mut self, k: RuleKind, path: &str, placeholder: Placeholder) {
        let deny_mask = match k {
            RuleKind::DenyWrite => mask::ANY_WRITE,
            RuleKind::DenyRead => mask::ANY_READ | mask::ANY_WRITE,
            _ => return,
        };
        match ((self.kind)(path), self.writable_root_of(path)) {
            (Some(what), Some(root)) => self.deny_in_root(&root, path, deny_mask, what == Kind::Dir),
            (Some(what), None) if k == RuleKind::DenyRead => {
                let tree = what == Kind::Dir;
                let p = path.to_string();
                if self.read_grants.iter().any(|g| wpath::is_within(path, g)) {
                    push(&mut self.denies, Op::Deny { path: p, mask: deny_mask, tree });
                } else {
                    push(&mut self.denies, Op::DenyIfReadable { path: p, mask: deny_mask, tree });
                }
            }
            // Outside writable roots the run can't write anyway.
            (Some(_), None) | (None, None) => {}
            (None, Some(root)) => self.placeholder(&root, path, deny_mask, placeholder),
        }
    }

    /// An absent protected or hidden path inside `root`: a placeholder with the deny, and the
    /// folders on the way, unless nothing should be created there (its rule asks for none).
    fn placeholder(&mut self, root: &str, path: &str, deny_mask: u32, placeholder: Placeholder) {
        let placeholder_kind = match placeholder {
            Placeholder::None => return,
            Placeholder::Dir => Kind::Dir,
            Placeholder::File => Kind::File,
        };
        if wpath::same(root, path) {
            return;
        }
        let between = wpath::between(root, path);
        let missing: Vec<&String> = between.iter().filter(|p| (self.kind)(p).is_none()).collect();
        if missing.iter().any(|p| wpath::file_name(p).eq_ignore_ascii_case(".git")) {
            return;
        }
        if between.iter().any(|p| (self.kind)(p) == Some(Kind::File)) {
            // A file where a folder on the way should be: nothing can be created below.
            return;
        }
        for folder in &missing {
            push(&mut self.creations, Op::Folder { path: (*folder).clone() });
        }
        push(&mut self.creations, Op::Placeholder { path: path.to_string(), kind: placeholder_kind });
        self.deny_in_root(root, path, deny_mask, placeholder_kind == Kind::Dir);
    }
}

/// Builds the plan. `kind` reports what exists at a normalized path (following links, as the
/// access check does).
pub fn plan(
    fs: &FsRules,
    home: &std::path::Path,
    allow_writable_home: bool,
    kind: &dyn Fn(&str) -> Option<Kind>,
) -> Result<AclPlan, LaunchError> {
    let mut rules: Vec<Rule<'_>> = Vec::with_capacity(fs.rules.len());
    for r in &fs.rules {
        rules.push((r.kind, text(&r.path)?, r));
    }
    let mut b = Builder {
        home: text(home)?,
        kind,
        out: AclPlan::default(),
        creations: Vec::new(),
        denies: Vec::new(),
        read_grants: Vec::new(),
    };
    for (_, path, rule) in rules.iter().filter(|r| r.0 == RuleKind::Write) {
        b.writable_root(path, &rule.origin, allow_writable_home)?;
    }
    for (_, path, _) in rules.iter().filter(|r| r.0 == RuleKind::Read) {
        b.read_root(path);
    }
    for (k, path, rule) in &rules {
        b.denied(*k, path, rule.placeholder);
    }
    // Parents before children, so creation works in order.
    b.creations.sort_by_key(|o| o.path().matches('\\').count());
    let mut out = b.out;
    out.roots = crate::grants::merge_roots(&out.roots);
    out.ops = b.creations.into_iter().chain(b.denies).collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_policy::Builtin;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    const HOME: &str = r"C:\Users\me";
    const WS: &str = r"C:\Users\me\proj";

    struct Fake(HashMap<String, Kind>);

    impl Fake {
        fn new(entries: &[(&str, Kind)]) -> Self {
            Fake(entries.iter().map(|(p, k)| (p.to_lowercase(), *k)).collect())
        }
        fn kind(&self, p: &str) -> Option<Kind> {
            self.0.get(&p.to_lowercase()).copied()
        }
    }

    fn fs(rules: &[(RuleKind, &str)]) -> FsRules {
        let mut fs = FsRules::default();
        for (k, p) in rules {
            fs.push(*k, PathBuf::from(*p), Origin::flag("--test"));
        }
        fs
    }

    fn default_fs() -> Fake {
        use Kind::*;
        Fake::new(&[
            (r"C:\", Dir),
            (HOME, Dir),
            (WS, Dir),
            (r"C:\Users\me\proj\.git", Dir),
            (r"C:\Users\me\proj\.git\config", File),
            (r"C:\Users\me\proj\.vscode", Dir),
            (r"C:\Users\me\.ssh", Dir),
            (r"C:\Users\me\.cargo", Dir),
            (r"D:\data", Dir),
            (r"D:\data\secret.txt", File),
        ])
    }

    fn deny(path: &str, mask: u32, tree: bool) -> Op {
        Op::Deny { path: path.into(), mask, tree }
    }

    fn pin(path: &str) -> Op {
        deny(path, mask::DELETE, false)
    }

    fn placeholder(path: &str, kind: Kind) -> Op {
        Op::Placeholder { path: path.into(), kind }
    }

    fn run(rules: &[(RuleKind, &str)], f: &Fake) -> AclPlan {
        plan(&fs(rules), Path::new(HOME), false, &|p| f.kind(p)).unwrap()
    }

    fn root(path: &str, write: bool) -> RootUse {
        RootUse { path: path.into(), write }
    }

    #[test]
    fn a_writable_root_is_opened_through_its_slot_not_per_run_entries() {
        let p = run(&[(RuleKind::Write, WS)], &default_fs());
        assert_eq!(p.write_roots, vec![WS.to_string()]);
        assert_eq!(p.roots, vec![root(WS, true)]);
        assert!(p.ops.is_empty(), "nothing per run on the tree: {:?}", p.ops);
    }

    #[test]
    fn a_root_both_read_and_written_is_writable_once() {
        let p = run(&[(RuleKind::Read, WS), (RuleKind::Write, WS)], &default_fs());
        assert_eq!(p.roots, vec![root(WS, true)]);
    }

    #[test]
    fn bad_writable_roots_are_refused() {
        let f = default_fs();
        let err = |rules: &[(RuleKind, &str)]| plan(&fs(rules), Path::new(HOME), false, &|p| f.kind(p)).unwrap_err();
        assert!(err(&[(RuleKind::Write, r"C:\")]).message.contains("whole drive"));
        let e = err(&[(RuleKind::Write, HOME)]);
        assert!(e.message.contains("holds the home folder") && e.remedy.unwrap().contains("--allow-writable-home"));
        assert!(err(&[(RuleKind::Write, r"C:\Users")]).message.contains("holds the home folder"));
        assert!(err(&[(RuleKind::Write, r"C:\missing")]).message.contains("does not exist"));
        let ok = plan(&fs(&[(RuleKind::Write, HOME)]), Path::new(HOME), true, &|p| f.kind(p)).unwrap();
        assert_eq!(ok.write_roots, vec![HOME.to_string()]);
    }

    #[test]
    fn protected_paths_get_denies_and_pins() {
        let p = run(&[(RuleKind::Write, WS), (RuleKind::DenyWrite, r"C:\Users\me\proj\.git\config")], &default_fs());
        assert!(p.ops.contains(&deny(r"C:\Users\me\proj\.git\config", mask::ANY_WRITE, false)));
        assert!(p.ops.contains(&pin(r"C:\Users\me\proj\.git")));
    }

    #[test]
    fn absent_protected_paths_get_placeholders_but_not_in_an_absent_git() {
        let mut f = default_fs();
        let p = run(
            &[
                (RuleKind::Write, WS),
                (RuleKind::DenyWrite, r"C:\Users\me\proj\.git\hooks"),
                (RuleKind::DenyWrite, r"C:\Users\me\proj\.envrc"),
            ],
            &f,
        );
        assert!(p.ops.contains(&placeholder(r"C:\Users\me\proj\.git\hooks", Kind::Dir)));
        assert!(p.ops.contains(&placeholder(r"C:\Users\me\proj\.envrc", Kind::Dir)));
        assert!(p.ops.contains(&deny(r"C:\Users\me\proj\.git\hooks", mask::ANY_WRITE, true)));
        assert!(p.ops.contains(&pin(r"C:\Users\me\proj\.git")));
        // Creations come first.
        assert!(matches!(p.ops[0], Op::Placeholder { .. }));

        f.0.remove(&r"C:\Users\me\proj\.git".to_lowercase());
        let p = run(&[(RuleKind::Write, WS), (RuleKind::DenyWrite, r"C:\Users\me\proj\.git\hooks")], &f);
        assert!(!p.ops.iter().any(|o| o.path().contains(".git")), "{:#?}", p.ops);
    }

    #[test]
    fn missing_folders_on_the_way_are_created_and_pinned() {
        let mut f = default_fs();
        f.0.insert(r"C:\Users\me\proj\a".to_lowercase(), Kind::Dir);
        let p = run(&[(RuleKind::Write, WS), (RuleKind::DenyWrite, r"C:\Users\me\proj\a\b\c")], &f);
        assert_eq!(p.ops[0], Op::Folder { path: r"C:\Users\me\proj\a\b".into() });
        assert_eq!(p.ops[1], placeholder(r"C:\Users\me\proj\a\b\c", Kind::Dir));
        for pin_path in [r"C:\Users\me\proj\a", r"C:\Users\me\proj\a\b"] {
            assert!(p.ops.contains(&pin(pin_path)), "{pin_path}");
        }
        // A file in the way: nothing can be created below it, and nothing is.
        f.0.insert(r"C:\Users\me\proj\a\b".to_lowercase(), Kind::File);
        let p = run(&[(RuleKind::Write, WS), (RuleKind::DenyWrite, r"C:\Users\me\proj\a\b\c")], &f);
        assert!(!p.ops.iter().any(|o| o.path().ends_with(r"\c")));
    }

    #[test]
    fn home_rc_files_get_file_placeholders() {
        let f = default_fs();
        let p = plan(
            &fs(&[
                (RuleKind::Write, HOME),
                (RuleKind::DenyWrite, r"C:\Users\me\.gitconfig"),
                (RuleKind::DenyWrite, r"C:\Users\me\.config\autostart"),
                (RuleKind::DenyRead, r"C:\Users\me\.netrc"),
            ]),
            Path::new(HOME),
            true,
            &|p| f.kind(p),
        )
        .unwrap();
        assert!(p.ops.contains(&placeholder(r"C:\Users\me\.gitconfig", Kind::File)));
        assert!(p.ops.contains(&Op::Folder { path: r"C:\Users\me\.config".into() }));
        assert!(p.ops.contains(&placeholder(r"C:\Users\me\.config\autostart", Kind::Dir)));
        assert!(p.ops.contains(&pin(r"C:\Users\me\.config")));
        assert!(p.ops.contains(&placeholder(r"C:\Users\me\.netrc", Kind::File)));
        assert!(p.ops.contains(&deny(r"C:\Users\me\.netrc", mask::ANY_READ | mask::ANY_WRITE, false)));
        let folder = p.ops.iter().position(|o| *o == Op::Folder { path: r"C:\Users\me\.config".into() }).unwrap();
        let inside = p
            .ops
            .iter()
            .position(|o| matches!(o, Op::Placeholder { path, .. } if path.ends_with("autostart")))
            .unwrap();
        assert!(folder < inside, "parents first");
    }

    #[test]
    fn while_present_rules_make_no_placeholder() {
        let mut fs_rules = fs(&[(RuleKind::Write, WS)]);
        let husky = PathBuf::from(r"C:\Users\me\proj\.husky");
        fs_rules.add(FsRule::new(RuleKind::DenyWrite, husky, Builtin::ProtectedWhilePresent).while_present());
        let f = default_fs();
        let p = plan(&fs_rules, Path::new(HOME), false, &|p| f.kind(p)).unwrap();
        assert!(!p.ops.iter().any(|o| o.path().ends_with(".husky")));
    }

    #[test]
    fn protected_paths_outside_writable_roots_need_nothing() {
        let p = run(&[(RuleKind::Write, WS), (RuleKind::DenyWrite, r"C:\Users\me\.ssh")], &default_fs());
        assert!(!p.ops.iter().any(|o| o.path().ends_with(".ssh")));
    }

    #[test]
    fn hidden_paths_outside_grants_are_checked_at_launch() {
        let p = run(
            &[(RuleKind::Write, WS), (RuleKind::DenyRead, r"C:\Users\me\.ssh"), (RuleKind::DenyRead, "/etc/shadow")],
            &default_fs(),
        );
        assert!(p.ops.contains(&Op::DenyIfReadable {
            path: r"C:\Users\me\.ssh".into(),
            mask: mask::ANY_READ | mask::ANY_WRITE,
            tree: true
        }));
        assert!(!p.ops.iter().any(|o| o.path().contains("shadow")), "absent outside roots: nothing");
    }

    #[test]
    fn read_roots() {
        let p = run(
            &[
                (RuleKind::Read, "/"),
                (RuleKind::Read, r"C:\Users"),
                (RuleKind::Read, r"C:\Users\me\.cargo"),
                (RuleKind::Read, r"D:\data"),
                (RuleKind::DenyRead, r"D:\data\secret.txt"),
                (RuleKind::Read, r"D:\absent"),
            ],
            &default_fs(),
        );
        assert_eq!(p.system_read_roots, vec![r"\".to_string(), r"C:\Users".to_string()]);
        assert_eq!(p.roots, vec![root(r"C:\Users\me\.cargo", false), root(r"D:\data", false)]);
        assert!(!p.ops.iter().any(|o| matches!(o, Op::Grant { .. })), "no per-run grant on a read root");
        // Inside a read grant, a hidden path is denied unconditionally.
        assert!(p.ops.contains(&deny(r"D:\data\secret.txt", mask::ANY_READ | mask::ANY_WRITE, false)));
        assert!(!p.ops.iter().any(|o| o.path().contains("absent")));
    }

    #[test]
    fn a_read_rule_inside_a_writable_root_makes_it_read_only() {
        let p = run(&[(RuleKind::Write, WS), (RuleKind::Read, r"C:\Users\me\proj\.vscode")], &default_fs());
        assert!(p.ops.contains(&deny(r"C:\Users\me\proj\.vscode", mask::ANY_WRITE, true)));
    }

    #[test]
    fn summary_counts() {
        let p = run(&[(RuleKind::Write, WS), (RuleKind::DenyWrite, r"C:\Users\me\proj\.git\config")], &default_fs());
        let s = p.summary();
        assert!(s.starts_with("1 writable and 0 read-only roots through their slot groups"), "{s}");
        assert!(s.contains("up to 2 deny entries"), "{s}");
    }

    #[test]
    fn paths_from_canonicalize_are_normalized() {
        let p = run(&[(RuleKind::Write, r"\\?\C:\Users\me\proj\")], &default_fs());
        assert_eq!(p.write_roots, vec![WS.to_string()]);
    }
}
