//! Carrying out the persistent grants of [`crate::grants`]: the registry file, read and written
//! under a lock; the slot entries on the roots (propagated once, when a root gets its slot);
//! and each run's hold on the slots it uses, so no other supervisor takes them back meanwhile.

use crate::changes::edit_dacl;
use crate::error::LaunchError;
use crate::grants::{self, Choice, Grant, Registry, RootUse, TokenSlots};
use crate::plan::Kind;
use crate::sid::Sid;
use crate::sys::fs as sfs;
use std::fs::{File, OpenOptions};
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use windows_sys::Win32::Storage::FileSystem::FILE_SHARE_READ;

/// How long a supervisor waits for another to finish with the registry (which may be giving a
/// big tree its slot).
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// ERROR_SHARING_VIOLATION: another handle's sharing mode refuses ours.
const SHARING_VIOLATION: i32 = 32;

/// The grants of one installation.
pub struct Slots {
    dir: PathBuf,
    /// Every slot group's SID, by index.
    sids: Vec<Sid>,
    /// The user who runs ringfence: gets full control of writable roots.
    user: Sid,
}

/// The slots one run uses, held until it ends.
pub struct RunSlots {
    pub token: TokenSlots,
    _holds: Vec<File>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Slots {
    pub fn new(dir: &str, sids: Vec<Sid>, user: Sid) -> Slots {
        Slots { dir: PathBuf::from(dir), sids, user }
    }

    fn registry_path(&self) -> PathBuf {
        self.dir.join("grants.txt")
    }

    fn slot_lock(&self, slot: u16) -> PathBuf {
        self.dir.join(format!("slot-{slot:02}.lock"))
    }

    /// Takes the registry's lock (waits for another supervisor to finish with it).
    fn lock(&self) -> Result<File, LaunchError> {
        let path = self.dir.join("registry.lock");
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            match OpenOptions::new().read(true).write(true).create(true).truncate(false).share_mode(0).open(&path) {
                Ok(f) => return Ok(f),
                Err(e) if e.raw_os_error() == Some(SHARING_VIOLATION) => {
                    if Instant::now() >= deadline {
                        return Err(LaunchError::internal(format!(
                            "another ringfence held the grants' registry {} for {} minutes (giving a big tree \
                             its slot?)",
                            path.display(),
                            LOCK_TIMEOUT.as_secs() / 60
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => {
                    return Err(crate::error::needs_setup(format!(
                        "locking the grants' registry {}: {e}",
                        path.display()
                    )))
                }
            }
        }
    }

    fn read(&self) -> Result<Registry, LaunchError> {
        let path = self.registry_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(LaunchError::internal(format!("reading {}: {e}", path.display()))),
        };
        Registry::parse(&text).map_err(|e| {
            LaunchError::unsupported(
                format!("{}: {e}", path.display()),
                "run `ringfence uninstall` and `ringfence setup` from an elevated prompt to start the grants afresh",
            )
        })
    }

    /// Writes the registry (whole, through a new file renamed over the old one).
    fn write(&self, registry: &Registry) -> Result<(), LaunchError> {
        let path = self.registry_path();
        let tmp = path.with_extension("new");
        let io = |e: std::io::Error| LaunchError::internal(format!("writing {}: {e}", path.display()));
        let mut f = File::create(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut f, registry.to_text().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Holds `slot` for a run: many runs may hold it at once.
    fn hold(&self, slot: u16) -> Result<File, LaunchError> {
        let path = self.slot_lock(slot);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .access_mode(windows_sys::Win32::Foundation::GENERIC_READ)
            .share_mode(FILE_SHARE_READ)
            .open(&path)
            .map_err(|e| LaunchError::internal(format!("holding {}: {e}", path.display())))
    }

    /// Whether a live run may hold `slot`: only a lock file that opens exclusively, or none
    /// at all, says no.
    fn busy(&self, slot: u16) -> bool {
        let path = self.slot_lock(slot);
        match OpenOptions::new().read(true).write(true).share_mode(0).open(&path) {
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    }

    fn sid(&self, slot: u16) -> Result<&Sid, LaunchError> {
        self.sids
            .get(usize::from(slot))
            .ok_or_else(|| crate::error::needs_setup(format!("slot {slot} has no group in the installation record")))
    }

    /// Gives each of `roots` its slot (granting it on first use), holds them for the run, and
    /// returns how the command's token uses the slots.
    pub fn open(&self, roots: &[RootUse]) -> Result<RunSlots, LaunchError> {
        let _lock = self.lock()?;
        let mut registry = self.read()?;
        let mut used: Vec<(u16, bool)> = Vec::new();
        let mut holds = Vec::new();
        for root in roots {
            let taken: Vec<u16> = used.iter().map(|(s, _)| *s).collect();
            let slot = match registry.choose(&root.path, &|s| self.busy(s), &taken) {
                Choice::Existing(s) | Choice::Free(s) => s,
                Choice::Recycle(old) => {
                    self.take_back(&mut registry, &old)?;
                    old.slot
                }
                Choice::Exhausted => return Err(exhausted(&root.path)),
            };
            holds.push(self.hold(slot)?);
            self.ensure(&mut registry, slot, root)?;
            used.push((slot, root.write));
        }
        self.write(&registry)?;
        Ok(RunSlots { token: TokenSlots::new(&self.sids, &used), _holds: holds })
    }

    /// Makes sure `root` carries the entries of `slot` (and, when writable, the user's), adding
    /// and propagating them if not. Checking costs one ACL read; only a root new to its slot,
    /// or one whose entries were taken away, is propagated.
    fn ensure(&self, registry: &mut Registry, slot: u16, root: &RootUse) -> Result<(), LaunchError> {
        let sid = self.sid(slot)?.clone();
        let is_dir = sfs::kind(Path::new(&root.path)) == Some(Kind::Dir);
        let (dacl, _) = crate::sys::security::file_dacl(&root.path)?;
        let acl = dacl.unwrap_or_default();
        // Only ringfence names slot groups: any explicit entry for the slot is ours.
        let slot_present = acl.aces.iter().any(|a| !a.is_inherited() && a.sid() == Some(&sid));
        let user_ace = grants::user_ace(&self.user, is_dir);
        let wants_user = root.write && !acl.aces.contains(&user_ace);
        let mut grant = registry.find(&root.path).filter(|g| g.slot == slot).cloned().unwrap_or(Grant {
            slot,
            path: root.path.clone(),
            complete: false,
            user_entry: false,
            used: 0,
        });
        grant.used = now();
        if slot_present && grant.complete && !wants_user {
            registry.put(grant);
            return Ok(());
        }
        // Journal first: a crash from here on leaves the grant marked incomplete.
        grant.complete = false;
        registry.put(grant.clone());
        self.write(registry)?;
        let aces = grants::slot_aces(&sid, is_dir);
        let mut added_user = false;
        edit_dacl(&root.path, |acl| {
            let mut changed = aces.iter().fold(false, |c, a| acl.add_explicit(a.clone()) | c);
            if wants_user {
                added_user = acl.add_explicit(user_ace.clone());
                changed |= added_user;
            }
            changed
        })
        .map_err(|e| e.context(format!("giving {} its slot", root.path)))?;
        grant.complete = true;
        grant.user_entry |= added_user;
        registry.put(grant);
        Ok(())
    }

    /// Takes `grant`'s entries off its root and forgets it.
    fn take_back(&self, registry: &mut Registry, grant: &Grant) -> Result<(), LaunchError> {
        let mut marked = grant.clone();
        marked.complete = false;
        registry.put(marked);
        self.write(registry)?;
        if sfs::kind(Path::new(&grant.path)).is_some() {
            let sid = self.sid(grant.slot)?.clone();
            let is_dir = sfs::kind(Path::new(&grant.path)) == Some(Kind::Dir);
            let user_ace = grant.user_entry.then(|| grants::user_ace(&self.user, is_dir));
            edit_dacl(&grant.path, |acl| {
                let mut changed = acl.remove_explicit_for(&sid) > 0;
                if let Some(u) = &user_ace {
                    changed |= acl.remove_explicit(u);
                }
                changed
            })
            .map_err(|e| e.context(format!("taking slot {} back from {}", grant.slot, grant.path)))?;
        }
        registry.remove(&grant.path);
        self.write(registry)
    }

    /// Takes the grant of `path` back, if it has one (no run may hold its slot).
    pub fn forget(&self, path: &str) -> Result<(), LaunchError> {
        let _lock = self.lock()?;
        let mut registry = self.read()?;
        let Some(grant) = registry.find(path).cloned() else { return Ok(()) };
        if self.busy(grant.slot) {
            return Err(LaunchError::policy(
                format!("{path} is in use by a running sandboxed command"),
                "wait for it to end, then try again",
            ));
        }
        self.take_back(&mut registry, &grant)
    }

    /// Takes every grant back (for `uninstall`); returns what could not be.
    pub fn forget_all(&self) -> Vec<String> {
        let paths: Vec<String> = match self.lock().and_then(|_l| self.read()) {
            Ok(r) => r.grants.into_iter().map(|g| g.path).collect(),
            Err(e) => return vec![e.message],
        };
        paths.iter().filter_map(|p| self.forget(p).err().map(|e| e.to_string())).collect()
    }
}

fn exhausted(path: &str) -> LaunchError {
    LaunchError::unsupported(
        format!("no slot is free for {path}: all {} are held by running sandboxed commands", grants::SLOT_COUNT),
        "wait for a run to end and try again",
    )
}
