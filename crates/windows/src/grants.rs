//! Persistent grants: how a run gets access to a big tree without touching every file in it.
//!
//! Changing an inherited ACL entry makes Windows rewrite the ACL of every file below, so a
//! per-run entry on a workspace of 100,000 files costs seconds to minutes, twice per run.
//! Instead, `setup` creates a fixed pool of local groups ("slots", `ringfence-ws-00` …), and
//! makes the sandbox account a member of all of them. The first run that uses a root (a
//! writable root, or a read root below the home folder) gives the root a slot: one inherited
//! allow entry for the slot's group, propagated once. Every later run is O(1) for that root:
//!
//! - the runner makes the command's token with every slot group **deny-only** except the slots
//!   of this run's roots: other roots (another workspace, another run's tree) are neither
//!   readable nor writable, because a deny-only group matches no allow entry;
//! - the slots of this run's *writable* roots are also restricting SIDs of the
//!   write-restricted token, so writes there pass both halves of the access check; a root used
//!   read-only has its slot enabled but not restricting, so writes fail the restricted half.
//!
//! The registry of grants (`%ProgramData%\ringfence\grants\grants.txt`) records each root, its
//! slot, whether its entries are complete, and when it was last used. A grant is recorded as
//! incomplete before its entries are added or removed, so a crash in between is finished by
//! the next run (or by `uninstall`, which removes every grant). When every slot is taken, the
//! least recently used one that no live run holds is taken back from its root (a one-off
//! propagation) and given to the new root.
//!
//! A root that is writable also gets an inherited full-control entry for the user who runs
//! ringfence, so whatever the command creates there stays the user's to change, whatever the
//! folder's own ACL (files the command creates are owned by the sandbox account).

use crate::acl::{flags, mask, Ace};
use crate::escape::{escape, unescape};
use crate::sid::Sid;
use crate::wpath;

/// How many slot groups `setup` creates.
pub const SLOT_COUNT: u16 = 64;

/// The local group of slot `index`.
pub fn group_name(index: u16) -> String {
    format!("ringfence-ws-{index:02}")
}

/// The first line of the registry.
pub const HEADER: &str = "ringfence-grants 1";

/// One root's grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub slot: u16,
    /// The root, normalized.
    pub path: String,
    /// The entries are on the root and propagated below it. False while they are being added
    /// or taken away: the next run (or `uninstall`) finishes the job.
    pub complete: bool,
    /// The inherited full-control entry for the user was added (on the first writable use).
    pub user_entry: bool,
    /// When a run last used it, in seconds since the Unix epoch.
    pub used: u64,
}

/// What to do for a root that needs a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The root has this slot already.
    Existing(u16),
    /// No root has this slot.
    Free(u16),
    /// Every slot is taken: take this grant's slot back from its root first.
    Recycle(Grant),
    /// Every slot is held by a live run.
    Exhausted,
}

/// The registry of grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    pub grants: Vec<Grant>,
}

impl Registry {
    pub fn parse(text: &str) -> Result<Registry, String> {
        let mut lines = text.lines();
        match lines.next() {
            None => return Ok(Registry::default()),
            Some(HEADER) => {}
            Some(other) => return Err(format!("not a ringfence grants registry (first line `{other}`)")),
        }
        let mut out = Registry::default();
        for line in lines {
            let bad = || format!("bad line `{line}` in the grants registry");
            let mut parts = line.splitn(6, ' ');
            if parts.next() != Some("grant") {
                return Err(bad());
            }
            let mut field = || parts.next().ok_or_else(bad);
            let slot: u16 = field()?.parse().map_err(|_| bad())?;
            let complete = field()? == "1";
            let user_entry = field()? == "1";
            let used: u64 = field()?.parse().map_err(|_| bad())?;
            let path = String::from_utf16(&unescape(field()?)?).map_err(|_| bad())?;
            if slot >= SLOT_COUNT || out.grants.iter().any(|g| g.slot == slot || wpath::same(&g.path, &path)) {
                return Err(bad());
            }
            out.grants.push(Grant { slot, path, complete, user_entry, used });
        }
        Ok(out)
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for g in &self.grants {
            let units: Vec<u16> = g.path.encode_utf16().collect();
            out.push_str(&format!(
                "grant {} {} {} {} {}\n",
                g.slot,
                g.complete as u8,
                g.user_entry as u8,
                g.used,
                escape(&units)
            ));
        }
        out
    }

    /// The grant of `path`, if it has one.
    pub fn find(&self, path: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| wpath::same(&g.path, path))
    }

    pub fn find_mut(&mut self, path: &str) -> Option<&mut Grant> {
        self.grants.iter_mut().find(|g| wpath::same(&g.path, path))
    }

    /// Records `grant`, replacing whatever had its slot or its path.
    pub fn put(&mut self, grant: Grant) {
        self.grants.retain(|g| g.slot != grant.slot && !wpath::same(&g.path, &grant.path));
        self.grants.push(grant);
        self.grants.sort_by_key(|g| g.slot);
    }

    /// Forgets the grant of `path`.
    pub fn remove(&mut self, path: &str) {
        self.grants.retain(|g| !wpath::same(&g.path, path));
    }

    /// Which slot `path` gets. `busy(slot)`: a live run holds the slot (and its root's
    /// entries must stay). `taken`: slots this run has already chosen for its other roots.
    pub fn choose(&self, path: &str, busy: &dyn Fn(u16) -> bool, taken: &[u16]) -> Choice {
        if let Some(g) = self.find(path) {
            return Choice::Existing(g.slot);
        }
        if let Some(free) = (0..SLOT_COUNT).find(|s| !taken.contains(s) && !self.grants.iter().any(|g| g.slot == *s)) {
            return Choice::Free(free);
        }
        let oldest =
            self.grants.iter().filter(|g| !taken.contains(&g.slot) && !busy(g.slot)).min_by_key(|g| (g.used, g.slot));
        match oldest {
            Some(g) => Choice::Recycle(g.clone()),
            None => Choice::Exhausted,
        }
    }
}

/// The entries a root gets for its slot: modify on the root itself without DELETE (so the
/// root can't be renamed away) and, for a folder, modify inherited by everything below.
pub fn slot_aces(slot: &Sid, is_dir: bool) -> Vec<Ace> {
    let mut out = vec![Ace::Allow { flags: 0, mask: mask::MODIFY & !mask::DELETE, sid: slot.clone() }];
    if is_dir {
        out.push(Ace::Allow { flags: flags::TREE | flags::INHERIT_ONLY, mask: mask::MODIFY, sid: slot.clone() });
    }
    out
}

/// The entry a writable root gets for the user who runs ringfence: full control, inherited by
/// everything below, so what the command creates stays the user's to change.
pub fn user_ace(user: &Sid, is_dir: bool) -> Ace {
    Ace::Allow { flags: if is_dir { flags::TREE } else { 0 }, mask: mask::FILE_ALL, sid: user.clone() }
}

/// How one run uses a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootUse {
    pub path: String,
    pub write: bool,
}

/// The slot SIDs of one run: its roots' slots (enabled in the token), the writable ones among
/// them (also restricting SIDs), and every other slot (deny-only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSlots {
    pub enabled: Vec<Sid>,
    pub restricting: Vec<Sid>,
    pub deny_only: Vec<Sid>,
}

impl TokenSlots {
    /// Splits `all` (every slot's SID, by index) for a run whose roots have these
    /// (slot, writable) pairs.
    pub fn new(all: &[Sid], used: &[(u16, bool)]) -> TokenSlots {
        let mut out = TokenSlots::default();
        for (i, sid) in all.iter().enumerate() {
            let uses: Vec<bool> = used.iter().filter(|(s, _)| *s as usize == i).map(|(_, w)| *w).collect();
            if uses.is_empty() {
                out.deny_only.push(sid.clone());
                continue;
            }
            out.enabled.push(sid.clone());
            if uses.contains(&true) {
                out.restricting.push(sid.clone());
            }
        }
        out
    }
}

/// The run's roots, each once: writable wins over read-only for the same path.
pub fn merge_roots(roots: &[RootUse]) -> Vec<RootUse> {
    let mut out: Vec<RootUse> = Vec::new();
    for r in roots {
        match out.iter_mut().find(|o| wpath::same(&o.path, &r.path)) {
            Some(o) => o.write |= r.write,
            None => out.push(r.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{logon, user};

    fn grant(slot: u16, path: &str, used: u64) -> Grant {
        Grant { slot, path: path.into(), complete: true, user_entry: false, used }
    }

    fn slot_sid(i: u16) -> Sid {
        Sid::parse(&format!("S-1-5-21-1-2-3-{}", 2000 + i)).unwrap()
    }

    #[test]
    fn the_registry_round_trips() {
        let mut r = Registry::default();
        r.put(grant(3, r"C:\Users\Zoë\100% proj", 1_700_000_000));
        r.put(Grant { slot: 0, path: r"D:\w".into(), complete: false, user_entry: true, used: 5 });
        let text = r.to_text();
        assert!(text.starts_with(HEADER));
        assert_eq!(Registry::parse(&text).unwrap(), r);
        assert_eq!(r.grants[0].slot, 0, "kept in slot order");
        assert_eq!(Registry::parse("").unwrap(), Registry::default());
    }

    #[test]
    fn damaged_registries_are_errors() {
        for bad in [
            "something\n".to_string(),
            format!("{HEADER}\ngrant x 1 1 1 C:\\w\n"),
            format!("{HEADER}\ngrant 1 1 1\n"),
            format!("{HEADER}\ngrant {SLOT_COUNT} 1 1 1 C:\\w\n"),
            format!("{HEADER}\ngrant 1 1 1 1 C:\\w\ngrant 1 1 1 1 C:\\x\n"),
            format!("{HEADER}\ngrant 1 1 1 1 C:\\w\ngrant 2 1 1 1 c:\\W\n"),
            format!("{HEADER}\nslot 1\n"),
        ] {
            assert!(Registry::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_root_keeps_its_slot_and_new_roots_take_free_ones() {
        let mut r = Registry::default();
        r.put(grant(0, r"C:\w", 1));
        let never = |_: u16| false;
        assert_eq!(r.choose(r"c:\W", &never, &[]), Choice::Existing(0), "paths compare without case");
        assert_eq!(r.choose(r"C:\x", &never, &[]), Choice::Free(1));
        assert_eq!(r.choose(r"C:\x", &never, &[1]), Choice::Free(2), "not a slot this run already chose");
    }

    #[test]
    fn a_full_pool_recycles_the_least_recently_used_idle_slot() {
        let mut r = Registry::default();
        for s in 0..SLOT_COUNT {
            r.put(grant(s, &format!(r"C:\w{s}"), 100 + u64::from(s)));
        }
        r.find_mut(r"C:\w5").unwrap().used = 1;
        r.find_mut(r"C:\w9").unwrap().used = 2;
        let never = |_: u16| false;
        assert_eq!(r.choose(r"C:\new", &never, &[]), Choice::Recycle(grant(5, r"C:\w5", 1)));
        let five_busy = |s: u16| s == 5;
        assert_eq!(r.choose(r"C:\new", &five_busy, &[]), Choice::Recycle(grant(9, r"C:\w9", 2)));
        assert_eq!(r.choose(r"C:\new", &|_| true, &[]), Choice::Exhausted);
        assert_eq!(r.choose(r"C:\w7", &|_| true, &[]), Choice::Existing(7), "an existing grant needs no slot");
    }

    #[test]
    fn put_replaces_by_slot_and_by_path() {
        let mut r = Registry::default();
        r.put(grant(0, r"C:\a", 1));
        r.put(grant(0, r"C:\b", 2));
        assert_eq!(r.grants, vec![grant(0, r"C:\b", 2)]);
        r.put(grant(4, r"c:\B", 3));
        assert_eq!(r.grants, vec![grant(4, r"c:\B", 3)]);
        r.remove(r"C:\b");
        assert!(r.grants.is_empty());
    }

    #[test]
    fn root_entries() {
        let slot = slot_sid(1);
        let aces = slot_aces(&slot, true);
        assert_eq!(aces.len(), 2);
        assert!(matches!(&aces[0], Ace::Allow { flags: 0, mask: m, sid } if m & mask::DELETE == 0 && *sid == slot));
        assert!(
            matches!(&aces[1], Ace::Allow { flags: f, mask: mask::MODIFY, .. } if *f == flags::TREE | flags::INHERIT_ONLY)
        );
        assert!(
            matches!(user_ace(&user(), true), Ace::Allow { flags: flags::TREE, mask: mask::FILE_ALL, sid } if sid == user())
        );
        let file = slot_aces(&slot, false);
        assert_eq!(file.len(), 1, "a file root: nothing inherited");
        assert_eq!(user_ace(&user(), false).flags(), 0);
        assert!(!aces.iter().any(|a| a.sid() == Some(&logon())), "never a run's logon SID");
        assert!(aces
            .iter()
            .all(|a| !matches!(a, Ace::Allow { mask: m, .. } if m & (mask::WRITE_DAC | mask::WRITE_OWNER) != 0)));
    }

    #[test]
    fn token_slots_enable_the_runs_roots_only() {
        let all: Vec<Sid> = (0..4).map(slot_sid).collect();
        let t = TokenSlots::new(&all, &[(1, false), (2, true), (2, false)]);
        assert_eq!(t.enabled, vec![slot_sid(1), slot_sid(2)]);
        assert_eq!(t.restricting, vec![slot_sid(2)], "only writable roots restrict");
        assert_eq!(t.deny_only, vec![slot_sid(0), slot_sid(3)], "every other slot is deny-only");
        let none = TokenSlots::new(&all, &[]);
        assert_eq!(none.deny_only.len(), 4);
        assert!(none.enabled.is_empty() && none.restricting.is_empty());
    }

    #[test]
    fn roots_merge_with_write_winning() {
        let roots = merge_roots(&[
            RootUse { path: r"C:\a".into(), write: false },
            RootUse { path: r"c:\A".into(), write: true },
            RootUse { path: r"C:\b".into(), write: false },
        ]);
        assert_eq!(
            roots,
            vec![RootUse { path: r"C:\a".into(), write: true }, RootUse { path: r"C:\b".into(), write: false }]
        );
    }

    #[test]
    fn group_names_fit_the_local_group_limit() {
        assert_eq!(group_name(0), "ringfence-ws-00");
        assert_eq!(group_name(SLOT_COUNT - 1), "ringfence-ws-63");
        assert!(group_name(SLOT_COUNT - 1).len() <= 20);
    }
}
