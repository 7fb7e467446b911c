//! What a launch sets up on the host, owned in one place and undone in one place.

use crate::caches::{FolderId, HeldLayers};
use crate::cgroup::RunCgroup;
use crate::cleaner::{Cleaner, Leftovers};
use crate::gitcheck::{Review, ReviewReport};
use crate::placeholder;
use crate::plan::MountPlan;
use ringfence_audit::LaunchError;
use ringfence_policy::RuleKind;
use std::path::{Path, PathBuf};

/// What a launch has set up on the host so far: the run's cgroup directories, the cache layers
/// it locked or made, the placeholders it holds, and the cleaner that removes all that if the
/// supervisor dies. Each step of the launch registers what it makes here before (or as) it makes
/// it, so whichever step fails, dropping the guard undoes all the steps before it, and warns on
/// stderr about what it could not remove. A run that started is ended by [`Rollback::settle`],
/// once nothing of the sandbox runs, and [`Rollback::finish`]; [`Rollback::take_left`] then
/// hands the caller what could not be removed instead of warning.
#[derive(Default)]
pub(crate) struct Rollback {
    /// What the cleaner would remove; the same, and the review, for us.
    leftovers: Leftovers,
    cleaner: Option<Cleaner>,
    /// Placeholders this run uses, locked shared until it ends.
    held: Vec<placeholder::Held>,
    /// The cache layers this run uses, locked until it ends.
    layers: HeldLayers,
    /// What the review of the writable roots found, once settled.
    review: Option<ReviewReport>,
    /// What could not be removed.
    left: Vec<String>,
    finished: bool,
}

impl Rollback {
    /// Registers the run's cgroup directories, which exist.
    pub fn add_cgroup(&mut self, cgroup: &RunCgroup) {
        self.leftovers.cgroups.extend(cgroup.dirs.iter().map(|(_, dir)| dir.clone()));
    }

    /// Opens and locks the plan's cache layers (see `caches::hold`).
    pub fn hold_cache_layers(&mut self, plan: &mut MountPlan, home: &Path) -> Result<(), LaunchError> {
        self.layers = crate::caches::hold(plan, home)?;
        Ok(())
    }

    /// Starts the cleaner before anything it cleans exists, so a SIGKILL at any later point
    /// leaves nothing behind: the plan's placeholders, the private cache layers `hold_cache_layers`
    /// chose, and the review of the writable roots. Any writable root may get a new repository
    /// whose hooks the cleaner must review if the supervisor dies; only a run that writes
    /// nothing needs no cleaner.
    pub fn start_cleaner(&mut self, plan: &MountPlan, home: &Path) -> Result<(), LaunchError> {
        self.leftovers.placeholders = plan.placeholders.clone();
        self.leftovers.cache_layers = self.layers.private.clone();
        self.leftovers.review = Review::new(plan, home);
        if self.leftovers.is_empty() && plan.rules.of_kind(RuleKind::Write).next().is_none() {
            return Ok(());
        }
        let cleaner = Cleaner::spawn(self.leftovers.clone())
            .map_err(|e| LaunchError::internal(format!("starting the cleaner: {e}")))?;
        self.cleaner = Some(cleaner);
        Ok(())
    }

    /// Reaps the process that started the cleaner (long gone by the time init is cloned).
    pub fn reap_cleaner_middle(&mut self) {
        if let Some(cleaner) = &mut self.cleaner {
            cleaner.reap_middle();
        }
    }

    /// Makes the private cache layers and creates (or joins) the plan's placeholders. One the
    /// caller may not create (a folder it can't write, a read-only filesystem) is one the
    /// sandbox can't create either: its mount is dropped.
    pub fn make_placeholders(&mut self, plan: &mut MountPlan, home: &Path) -> Result<(), LaunchError> {
        crate::caches::make_private(&mut self.layers, home)?;
        for p in &plan.placeholders {
            match placeholder::hold(p) {
                Ok(Some(held)) => self.held.push(held),
                Ok(None) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT)) => {
                    plan.ops.retain(|op| op.path() != p.path);
                }
                Err(e) => {
                    return Err(LaunchError::internal(format!("creating the placeholder {}: {e}", p.path.display())))
                }
            }
        }
        Ok(())
    }

    /// For the child: each cache overlay's path and the identities of its layers.
    pub fn overlay_ids(&self) -> Result<Vec<(PathBuf, [FolderId; 3])>, LaunchError> {
        self.layers.ids()
    }

    /// Once nothing of the sandbox runs: reviews the writable roots and removes the
    /// placeholders. Only the first call does anything.
    pub fn settle(&mut self) {
        if self.review.is_none() {
            self.review = Some(self.leftovers.review.run());
            crate::trace::supervisor("git review");
            self.release_placeholders();
            crate::trace::supervisor("placeholders released");
        }
    }

    /// Reviews the writable roots now, while the sandbox lives on (a session's command ended).
    pub fn review_again(&mut self) -> ReviewReport {
        self.leftovers.review.run_again()
    }

    /// What the review found (nothing before `settle`).
    pub fn take_review(&mut self) -> ReviewReport {
        self.review.take().unwrap_or_default()
    }

    /// Undoes everything: removes the placeholders, the cgroup directories and the private
    /// cache layers, unlocks the persistent ones and dismisses the cleaner. Only the first call
    /// does anything.
    pub fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.release_placeholders();
        self.left.extend(self.leftovers.remove());
        drop(std::mem::take(&mut self.layers));
        if let Some(cleaner) = self.cleaner.take() {
            cleaner.dismiss();
        }
    }

    /// What could not be removed so far, each naming the path.
    pub fn take_left(&mut self) -> Vec<String> {
        std::mem::take(&mut self.left)
    }

    /// Releases the placeholders, deepest first; our own shared locks would keep them from
    /// being removed.
    fn release_placeholders(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.left.extend(held.into_iter().rev().filter_map(placeholder::Held::release));
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        self.finish();
        crate::cleaner::warn(self.take_left());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::LimitMechanism;
    use crate::plan::{Placeholder, PlaceholderKind};

    /// A launch step that fails leaves the guard to undo the steps before it: the placeholder
    /// made before the failing one, and the cgroup directory, are gone once the guard drops.
    #[test]
    fn dropping_the_guard_undoes_every_step_before_the_failure() {
        let dir = Path::new("/var/tmp").join(format!("rf-rollback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cgroup")).unwrap();
        std::fs::write(dir.join("file"), "").unwrap();
        let mut rollback = Rollback::default();
        rollback.add_cgroup(&RunCgroup {
            mechanism: LimitMechanism::CgroupV2,
            dirs: vec![(String::new(), dir.join("cgroup"))],
        });
        let made = Placeholder { path: dir.join(".envrc"), kind: PlaceholderKind::Dir };
        // mkdir below a regular file fails with ENOTDIR: not a path the sandbox merely can't
        // create, so the launch fails there.
        let failing = Placeholder { path: dir.join("file/.envrc"), kind: PlaceholderKind::Dir };
        let mut plan = MountPlan { placeholders: vec![made.clone(), failing], ..Default::default() };
        let err = rollback.make_placeholders(&mut plan, &dir).unwrap_err();
        assert!(err.message.contains("file/.envrc"), "{err}");
        assert!(made.path.is_dir(), "the step before the failure had run");
        drop(rollback);
        assert!(!made.path.exists() && !dir.join("cgroup").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
