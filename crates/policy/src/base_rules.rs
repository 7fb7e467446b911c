//! The rules a profile starts with, and the protected paths added below every writable root,
//! made from the lists in `profile`. Each rule gets its placeholder here, from the list it
//! comes from.

use crate::modes::ProfileName;
use crate::origin::Builtin;
use crate::profile::{
    HOME_DIRS, HOME_FILES, HOME_SECRET_DIRS, HOME_SECRET_FILES, PROTECTED_IN_WRITE_ROOTS, PROTECTED_WHILE_PRESENT,
    STRICT_TOOLCHAINS, SYSTEM_SECRETS,
};
use crate::rules::{FsRule, FsRules, Placeholder, RuleKind};
use std::path::Path;

/// The rules a profile starts with.
pub fn base_rules(profile: ProfileName, workspace: &Path, home: &Path) -> FsRules {
    let mut fs = FsRules::default();
    fs.push(RuleKind::Read, "/".into(), Builtin::ReadRoot { profile });
    if profile == ProfileName::Strict {
        for dir in ["/home", "/root"] {
            fs.push(RuleKind::DenyRead, dir.into(), Builtin::HomeDirectories { profile });
        }
        fs.push(RuleKind::DenyRead, home.to_path_buf(), Builtin::HomeDirectory { profile });
        for dir in STRICT_TOOLCHAINS {
            fs.push(RuleKind::Read, home.join(dir), Builtin::Toolchain { profile });
        }
    }
    let secrets = Builtin::SecretList { profile };
    add_listed(&mut fs, home, HOME_SECRET_DIRS, RuleKind::DenyRead, &secrets, Placeholder::Dir);
    add_listed(&mut fs, home, HOME_SECRET_FILES, RuleKind::DenyRead, &secrets, Placeholder::File);
    for secret in SYSTEM_SECRETS {
        fs.push(RuleKind::DenyRead, secret.into(), secrets.clone());
    }
    let workspace_kind = if profile == ProfileName::ReadOnly { RuleKind::Read } else { RuleKind::Write };
    fs.push(workspace_kind, workspace.to_path_buf(), Builtin::Workspace { profile });
    let startup = Builtin::HomeStartup { profile };
    add_listed(&mut fs, home, HOME_FILES, RuleKind::DenyWrite, &startup, Placeholder::File);
    add_listed(&mut fs, home, HOME_DIRS, RuleKind::DenyWrite, &startup, Placeholder::Dir);
    fs
}

/// Adds a rule for each of `names` below `base`.
fn add_listed(
    fs: &mut FsRules,
    base: &Path,
    names: &[&str],
    kind: RuleKind,
    origin: &Builtin,
    placeholder: Placeholder,
) {
    for name in names {
        fs.add(FsRule::new(kind, base.join(name), origin.clone()).with_placeholder(placeholder));
    }
}

/// Adds the protected paths below every writable root; called once all roots are known.
/// `PROTECTED_IN_WRITE_ROOTS` hold always (an absent one gets an empty directory);
/// `PROTECTED_WHILE_PRESENT` only while present.
/// An agent profile's paths inside its own state folder are its credential files, re-allowed
/// over the secret list: files, with nothing to protect below them.
pub fn protect_write_roots(fs: &mut FsRules) {
    let roots: Vec<_> =
        fs.of_kind(RuleKind::Write).map(|r| r.path.clone()).filter(|path| !fs.is_agent_file(path)).collect();
    for root in roots {
        let always = PROTECTED_IN_WRITE_ROOTS.iter().map(|name| {
            FsRule::new(RuleKind::DenyWrite, root.join(name), Builtin::ProtectedPath).with_placeholder(Placeholder::Dir)
        });
        let while_present = PROTECTED_WHILE_PRESENT.iter().map(|name| {
            FsRule::new(RuleKind::DenyWrite, root.join(name), Builtin::ProtectedWhilePresent).while_present()
        });
        for rule in always.chain(while_present).collect::<Vec<_>>() {
            if !fs.at(&rule.path).any(|r| r.kind == RuleKind::DenyWrite) {
                fs.add(rule);
            }
        }
    }
}
