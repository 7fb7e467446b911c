//! Access-control lists as plain data: ACEs, ACLs and self-relative security descriptors in the
//! binary layout Windows uses, SDDL text for the descriptors `setup` writes, and the few edits
//! a run makes (add an entry in canonical order, remove every entry naming one SID). The OS
//! layer only reads and writes the bytes.

use crate::sid::Sid;
use std::fmt::Write as _;

/// Access-mask bits ringfence uses (winnt.h).
pub mod mask {
    pub const FILE_READ_DATA: u32 = 0x0001;
    pub const FILE_WRITE_DATA: u32 = 0x0002;
    pub const FILE_APPEND_DATA: u32 = 0x0004;
    pub const FILE_READ_EA: u32 = 0x0008;
    pub const FILE_WRITE_EA: u32 = 0x0010;
    pub const FILE_EXECUTE: u32 = 0x0020;
    pub const FILE_DELETE_CHILD: u32 = 0x0040;
    pub const FILE_READ_ATTRIBUTES: u32 = 0x0080;
    pub const FILE_WRITE_ATTRIBUTES: u32 = 0x0100;
    pub const DELETE: u32 = 0x0001_0000;
    pub const READ_CONTROL: u32 = 0x0002_0000;
    pub const WRITE_DAC: u32 = 0x0004_0000;
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    pub const SYNCHRONIZE: u32 = 0x0010_0000;
    pub const GENERIC_ALL: u32 = 0x1000_0000;
    pub const GENERIC_EXECUTE: u32 = 0x2000_0000;
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
    pub const GENERIC_READ: u32 = 0x8000_0000;
    /// FILE_GENERIC_READ.
    pub const FILE_READ: u32 = READ_CONTROL | SYNCHRONIZE | FILE_READ_DATA | FILE_READ_EA | FILE_READ_ATTRIBUTES;
    /// FILE_GENERIC_WRITE.
    pub const FILE_WRITE: u32 =
        READ_CONTROL | SYNCHRONIZE | FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_EA | FILE_WRITE_ATTRIBUTES;
    /// FILE_GENERIC_EXECUTE.
    pub const FILE_EXEC: u32 = READ_CONTROL | SYNCHRONIZE | FILE_EXECUTE | FILE_READ_ATTRIBUTES;
    /// Read and execute (list and traverse for folders).
    pub const READ_EXECUTE: u32 = FILE_READ | FILE_EXEC;
    /// "Modify": read, write, execute and delete, but not change permissions or owner.
    pub const MODIFY: u32 = FILE_READ | FILE_WRITE | FILE_EXEC | DELETE;
    /// FILE_ALL_ACCESS.
    pub const FILE_ALL: u32 = 0x001F_01FF;
    /// Everything that changes a file or folder, its name or its protection. Without
    /// SYNCHRONIZE and READ_CONTROL, which reading needs too: a deny entry with them would
    /// deny reading as well.
    pub const ANY_WRITE: u32 = FILE_WRITE_DATA
        | FILE_APPEND_DATA
        | FILE_WRITE_EA
        | FILE_WRITE_ATTRIBUTES
        | FILE_DELETE_CHILD
        | DELETE
        | WRITE_DAC
        | WRITE_OWNER;
    /// Reading content (listing, for folders), extended attributes, and executing
    /// (traversing). Attributes stay readable: the name is visible, as a mask is on Linux.
    pub const ANY_READ: u32 = FILE_READ_DATA | FILE_READ_EA | FILE_EXECUTE;
}

/// ACE flags (winnt.h).
pub mod flags {
    pub const OBJECT_INHERIT: u8 = 0x01;
    pub const CONTAINER_INHERIT: u8 = 0x02;
    pub const NO_PROPAGATE_INHERIT: u8 = 0x04;
    pub const INHERIT_ONLY: u8 = 0x08;
    pub const INHERITED: u8 = 0x10;
    /// Applies to the object and everything below it.
    pub const TREE: u8 = OBJECT_INHERIT | CONTAINER_INHERIT;
}

const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;
const ACCESS_DENIED_ACE_TYPE: u8 = 1;
/// The ACL revision for ACLs of only standard ACEs.
pub const ACL_REVISION: u8 = 2;

/// One access-control entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ace {
    Allow {
        flags: u8,
        mask: u32,
        sid: Sid,
    },
    Deny {
        flags: u8,
        mask: u32,
        sid: Sid,
    },
    /// Any other type (object, callback, label…), kept byte for byte.
    Other {
        ace_type: u8,
        flags: u8,
        body: Vec<u8>,
    },
}

impl Ace {
    pub fn flags(&self) -> u8 {
        match self {
            Ace::Allow { flags, .. } | Ace::Deny { flags, .. } | Ace::Other { flags, .. } => *flags,
        }
    }

    pub fn sid(&self) -> Option<&Sid> {
        match self {
            Ace::Allow { sid, .. } | Ace::Deny { sid, .. } => Some(sid),
            Ace::Other { .. } => None,
        }
    }

    pub fn is_inherited(&self) -> bool {
        self.flags() & flags::INHERITED != 0
    }

    /// Whether the entry takes part in access checks on the object it sits on (not
    /// inherit-only).
    pub fn applies_here(&self) -> bool {
        self.flags() & flags::INHERIT_ONLY == 0
    }

    fn write(&self, out: &mut Vec<u8>) {
        let (ace_type, flags, body) = match self {
            Ace::Allow { flags, mask, sid } | Ace::Deny { flags, mask, sid } => {
                let mut body = mask.to_le_bytes().to_vec();
                body.extend(sid.to_bytes());
                let t =
                    if matches!(self, Ace::Allow { .. }) { ACCESS_ALLOWED_ACE_TYPE } else { ACCESS_DENIED_ACE_TYPE };
                (t, *flags, body)
            }
            Ace::Other { ace_type, flags, body } => (*ace_type, *flags, body.clone()),
        };
        let size = 4 + body.len();
        out.push(ace_type);
        out.push(flags);
        out.extend_from_slice(&(size as u16).to_le_bytes());
        out.extend_from_slice(&body);
    }

    fn encoded_len(&self) -> usize {
        match self {
            Ace::Allow { sid, .. } | Ace::Deny { sid, .. } => 8 + sid.len(),
            Ace::Other { body, .. } => 4 + body.len(),
        }
    }

    /// The entry in SDDL: `(A;OICI;0x1301bf;;;S-1-…)`.
    pub fn sddl(&self) -> String {
        let (kind, flags, mask, sid) = match self {
            Ace::Allow { flags, mask, sid } => ("A", *flags, *mask, sid.sddl()),
            Ace::Deny { flags, mask, sid } => ("D", *flags, *mask, sid.sddl()),
            Ace::Other { ace_type, .. } => return format!("(?{ace_type})"),
        };
        let mut f = String::new();
        for (bit, text) in [
            (flags::OBJECT_INHERIT, "OI"),
            (flags::CONTAINER_INHERIT, "CI"),
            (flags::NO_PROPAGATE_INHERIT, "NP"),
            (flags::INHERIT_ONLY, "IO"),
            (flags::INHERITED, "ID"),
        ] {
            if flags & bit != 0 {
                f.push_str(text);
            }
        }
        format!("({kind};{f};0x{mask:x};;;{sid})")
    }
}

/// An access-control list: the entries in order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Acl {
    pub aces: Vec<Ace>,
}

/// Reads a little-endian u16 at `at`.
fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| "cut short".to_string())
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| "cut short".to_string())
}

impl Acl {
    pub fn new(aces: Vec<Ace>) -> Self {
        Acl { aces }
    }

    /// The binary ACL: the 8-byte header, then each entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size = 8 + self.aces.iter().map(Ace::encoded_len).sum::<usize>();
        // Object ACEs (types 5 to 8) need the DS revision.
        let revision =
            if self.aces.iter().any(|a| matches!(a, Ace::Other { ace_type: 5..=8, .. })) { 4 } else { ACL_REVISION };
        let mut out = Vec::with_capacity(size);
        out.push(revision);
        out.push(0);
        out.extend_from_slice(&(size as u16).to_le_bytes());
        out.extend_from_slice(&(self.aces.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        for ace in &self.aces {
            ace.write(&mut out);
        }
        out
    }

    /// Parses a binary ACL (as `GetNamedSecurityInfoW` returns it).
    pub fn from_bytes(bytes: &[u8]) -> Result<Acl, String> {
        let err = |why: String| format!("malformed ACL: {why}");
        if bytes.len() < 8 {
            return Err(err("shorter than its header".into()));
        }
        if !(2..=4).contains(&bytes[0]) {
            return Err(err(format!("revision {}", bytes[0])));
        }
        let size = u16_at(bytes, 2).map_err(err)? as usize;
        let count = u16_at(bytes, 4).map_err(err)? as usize;
        if size < 8 || size > bytes.len() {
            return Err(err(format!("size {size} for {} bytes", bytes.len())));
        }
        let mut aces = Vec::with_capacity(count);
        let mut at = 8;
        for i in 0..count {
            let header = bytes.get(at..at + 4).ok_or_else(|| err(format!("entry {i} is cut short")))?;
            let (ace_type, ace_flags) = (header[0], header[1]);
            let ace_size = u16::from_le_bytes([header[2], header[3]]) as usize;
            if ace_size < 4 || at + ace_size > size {
                return Err(err(format!("entry {i} has size {ace_size}")));
            }
            let body = &bytes[at + 4..at + ace_size];
            let ace = match ace_type {
                ACCESS_ALLOWED_ACE_TYPE | ACCESS_DENIED_ACE_TYPE => {
                    let mask = u32_at(body, 0).map_err(|e| err(format!("entry {i}: {e}")))?;
                    let (sid, _) =
                        Sid::from_bytes(&body[4.min(body.len())..]).map_err(|e| err(format!("entry {i}: {e}")))?;
                    if ace_type == ACCESS_ALLOWED_ACE_TYPE {
                        Ace::Allow { flags: ace_flags, mask, sid }
                    } else {
                        Ace::Deny { flags: ace_flags, mask, sid }
                    }
                }
                _ => Ace::Other { ace_type, flags: ace_flags, body: body.to_vec() },
            };
            aces.push(ace);
            at += ace_size;
        }
        Ok(Acl { aces })
    }

    /// Adds an explicit entry where Windows' canonical order puts it: explicit denies first,
    /// then explicit allows, then inherited entries. An identical entry already present is not
    /// added twice. Returns whether the list changed.
    pub fn add_explicit(&mut self, ace: Ace) -> bool {
        debug_assert!(!ace.is_inherited());
        if self.aces.contains(&ace) {
            return false;
        }
        let is_deny = matches!(ace, Ace::Deny { .. });
        let pos = self
            .aces
            .iter()
            .position(|a| a.is_inherited() || (is_deny && !matches!(a, Ace::Deny { .. })))
            .unwrap_or(self.aces.len());
        self.aces.insert(pos, ace);
        true
    }

    /// Removes every explicit allow and deny entry naming `sid`. Returns how many went.
    pub fn remove_explicit_for(&mut self, sid: &Sid) -> usize {
        let before = self.aces.len();
        self.aces.retain(|a| a.is_inherited() || a.sid() != Some(sid));
        before - self.aces.len()
    }

    /// Removes the explicit entry equal to `ace` (the one ringfence added, not others for the
    /// same SID). Returns whether it was there.
    pub fn remove_explicit(&mut self, ace: &Ace) -> bool {
        match self.aces.iter().position(|a| !a.is_inherited() && a == ace) {
            Some(i) => {
                self.aces.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether any entry (explicit or inherited) names `sid`.
    pub fn mentions(&self, sid: &Sid) -> bool {
        self.aces.iter().any(|a| a.sid() == Some(sid))
    }

    /// The explicit entries only: what to hand back to Windows when the list inherits from
    /// its parent (the inherited ones are recomputed from the parent).
    pub fn explicit(&self) -> Acl {
        Acl { aces: self.aces.iter().filter(|a| !a.is_inherited()).cloned().collect() }
    }

    /// Whether a token holding any of `sids` may read the object's content under this list,
    /// judged conservatively: entries are walked in order as the access check does, with
    /// generic rights mapped to the file rights, and an allow of FILE_READ_DATA not denied
    /// before it counts as readable.
    pub fn may_read(&self, sids: &[Sid]) -> bool {
        let want = mask::FILE_READ_DATA;
        let file_bits = |m: u32| {
            let mut out = m & 0x00FF_FFFF;
            if m & (mask::GENERIC_READ | mask::GENERIC_ALL) != 0 {
                out |= mask::FILE_READ_DATA;
            }
            out
        };
        for ace in self.aces.iter().filter(|a| a.applies_here()) {
            match ace {
                Ace::Deny { mask, sid, .. } if sids.contains(sid) && file_bits(*mask) & want != 0 => return false,
                Ace::Allow { mask, sid, .. } if sids.contains(sid) && file_bits(*mask) & want != 0 => return true,
                _ => {}
            }
        }
        false
    }

    /// The list in SDDL (`D:` part without the `D:`), flags included.
    pub fn sddl(&self) -> String {
        self.aces.iter().map(Ace::sddl).collect()
    }
}

/// SE_DACL_PRESENT.
const SE_DACL_PRESENT: u16 = 0x0004;
/// SE_DACL_AUTO_INHERITED.
const SE_DACL_AUTO_INHERITED: u16 = 0x0400;
/// SE_DACL_PROTECTED: the list does not inherit from the parent.
pub const SE_DACL_PROTECTED: u16 = 0x1000;
/// SE_SELF_RELATIVE.
const SE_SELF_RELATIVE: u16 = 0x8000;

/// A security descriptor's parts, for building and reading self-relative descriptors.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SecurityDescriptor {
    pub owner: Option<Sid>,
    pub group: Option<Sid>,
    /// None: no DACL (everyone has full access). Some(empty): nobody has access.
    pub dacl: Option<Acl>,
    /// The DACL does not inherit from the parent.
    pub protected: bool,
}

impl SecurityDescriptor {
    /// A descriptor with only a DACL of `aces`, protected from inheritance: exactly these
    /// entries and no others apply.
    pub fn protected_dacl(aces: Vec<Ace>) -> SecurityDescriptor {
        SecurityDescriptor { owner: None, group: None, dacl: Some(Acl::new(aces)), protected: true }
    }

    /// The self-relative form: the 20-byte header, then owner, group and DACL.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut control = SE_SELF_RELATIVE;
        if self.dacl.is_some() {
            control |= SE_DACL_PRESENT;
        }
        if self.protected {
            control |= SE_DACL_PROTECTED;
        } else if self.dacl.is_some() {
            control |= SE_DACL_AUTO_INHERITED;
        }
        let mut body = Vec::new();
        let mut place = |bytes: Option<Vec<u8>>| -> u32 {
            match bytes {
                Some(b) => {
                    let at = 20 + body.len();
                    body.extend(b);
                    at as u32
                }
                None => 0,
            }
        };
        let owner = place(self.owner.as_ref().map(Sid::to_bytes));
        let group = place(self.group.as_ref().map(Sid::to_bytes));
        let dacl = place(self.dacl.as_ref().map(Acl::to_bytes));
        let mut out = vec![1, 0];
        out.extend_from_slice(&control.to_le_bytes());
        for offset in [owner, group, 0, dacl] {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend(body);
        out
    }

    /// Reads a self-relative descriptor.
    pub fn from_bytes(bytes: &[u8]) -> Result<SecurityDescriptor, String> {
        if bytes.len() < 20 || bytes[0] != 1 {
            return Err("not a self-relative security descriptor".into());
        }
        let control = u16_at(bytes, 2)?;
        if control & SE_SELF_RELATIVE == 0 {
            return Err("the security descriptor is not self-relative".into());
        }
        let at = |i: usize| u32_at(bytes, 4 + 4 * i).map(|v| v as usize);
        let sid_at = |offset: usize| -> Result<Option<Sid>, String> {
            if offset == 0 {
                return Ok(None);
            }
            Sid::from_bytes(bytes.get(offset..).ok_or("owner offset out of range")?).map(|(s, _)| Some(s))
        };
        let dacl_offset = at(3)?;
        let dacl = if control & SE_DACL_PRESENT != 0 && dacl_offset != 0 {
            Some(Acl::from_bytes(bytes.get(dacl_offset..).ok_or("DACL offset out of range")?)?)
        } else {
            None
        };
        Ok(SecurityDescriptor {
            owner: sid_at(at(0)?)?,
            group: sid_at(at(1)?)?,
            dacl,
            protected: control & SE_DACL_PROTECTED != 0,
        })
    }

    /// The descriptor in SDDL.
    pub fn sddl(&self) -> String {
        let mut out = String::new();
        if let Some(o) = &self.owner {
            let _ = write!(out, "O:{}", o.sddl());
        }
        if let Some(g) = &self.group {
            let _ = write!(out, "G:{}", g.sddl());
        }
        match &self.dacl {
            Some(acl) => {
                let _ = write!(out, "D:{}{}", if self.protected { "P" } else { "" }, acl.sddl());
            }
            None => out.push_str("D:NO_ACCESS_CONTROL"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{logon, user};
    use crate::sid::well_known::*;

    /// A typical folder in a user's profile: explicit nothing, inherited full control for the
    /// user, SYSTEM and Administrators.
    fn profile_acl() -> Acl {
        let inh = flags::INHERITED | flags::TREE;
        Acl::new(vec![
            Ace::Allow { flags: inh, mask: mask::FILE_ALL, sid: local_system() },
            Ace::Allow { flags: inh, mask: mask::FILE_ALL, sid: administrators() },
            Ace::Allow { flags: inh, mask: mask::FILE_ALL, sid: user() },
        ])
    }

    #[test]
    fn ace_bytes_match_windows() {
        // (A;;FA;;;SY) as Windows encodes it: type 0, flags 0, size 20, mask, S-1-5-18.
        let ace = Ace::Allow { flags: 0, mask: mask::FILE_ALL, sid: local_system() };
        let acl = Acl::new(vec![ace]);
        let bytes = acl.to_bytes();
        assert_eq!(
            bytes,
            [2, 0, 28, 0, 1, 0, 0, 0, 0, 0, 20, 0, 0xff, 0x01, 0x1f, 0x00, 1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]
        );
        assert_eq!(Acl::from_bytes(&bytes).unwrap(), acl);
    }

    #[test]
    fn acl_round_trips_with_unknown_entries() {
        let mut acl = profile_acl();
        acl.aces.push(Ace::Other { ace_type: 0x11, flags: 0, body: vec![1, 2, 3, 4, 5, 6, 7, 8] });
        acl.aces.insert(0, Ace::Deny { flags: flags::TREE, mask: mask::ANY_WRITE, sid: logon() });
        let bytes = acl.to_bytes();
        assert_eq!(u16::from_le_bytes([bytes[2], bytes[3]]) as usize, bytes.len());
        assert_eq!(Acl::from_bytes(&bytes).unwrap(), acl);
    }

    #[test]
    fn malformed_acls_are_errors() {
        let good = profile_acl().to_bytes();
        assert!(Acl::from_bytes(&good[..7]).is_err());
        let mut short = good.clone();
        short.truncate(good.len() - 1);
        assert!(Acl::from_bytes(&short).is_err(), "size beyond the buffer");
        let mut count = good.clone();
        count[4] = 9;
        assert!(Acl::from_bytes(&count).is_err(), "more entries than bytes");
        let mut rev = good.clone();
        rev[0] = 7;
        assert!(Acl::from_bytes(&rev).is_err());
        let mut tiny = good;
        tiny[10] = 2;
        tiny[11] = 0;
        assert!(Acl::from_bytes(&tiny).is_err(), "entry smaller than its header");
    }

    #[test]
    fn explicit_entries_go_in_canonical_order() {
        let mut acl = profile_acl();
        let allow = Ace::Allow { flags: flags::TREE, mask: mask::MODIFY, sid: logon() };
        let deny = Ace::Deny { flags: flags::TREE, mask: mask::ANY_WRITE, sid: logon() };
        assert!(acl.add_explicit(allow.clone()));
        assert_eq!(acl.aces[0], allow, "explicit allow before inherited entries");
        assert!(acl.add_explicit(deny.clone()));
        assert_eq!(acl.aces[0], deny, "explicit deny before explicit allow");
        assert_eq!(acl.aces[1], allow);
        assert!(!acl.add_explicit(deny.clone()), "no duplicates");
        let other_allow = Ace::Allow { flags: 0, mask: mask::READ_EXECUTE, sid: everyone() };
        acl.add_explicit(other_allow.clone());
        assert_eq!(acl.aces[2], other_allow, "after existing explicit allows");
        assert!(acl.aces[3..].iter().all(Ace::is_inherited));
    }

    #[test]
    fn removing_a_sid_keeps_everything_else() {
        let mut acl = profile_acl();
        acl.add_explicit(Ace::Allow { flags: flags::TREE, mask: mask::MODIFY, sid: logon() });
        acl.add_explicit(Ace::Deny { flags: 0, mask: mask::DELETE, sid: logon() });
        acl.add_explicit(Ace::Allow { flags: 0, mask: mask::READ_EXECUTE, sid: everyone() });
        // An inherited entry naming the SID comes from the parent: not ours to remove here.
        let inherited = Ace::Allow { flags: flags::INHERITED, mask: mask::MODIFY, sid: logon() };
        acl.aces.push(inherited.clone());
        assert_eq!(acl.remove_explicit_for(&logon()), 2);
        assert_eq!(acl.remove_explicit_for(&logon()), 0);
        assert!(acl.aces.contains(&inherited));
        assert_eq!(acl.aces.len(), 5);
        assert_eq!(acl.explicit().aces, vec![Ace::Allow { flags: 0, mask: mask::READ_EXECUTE, sid: everyone() }]);
    }

    #[test]
    fn removing_one_exact_entry_leaves_the_users_own() {
        let mut acl = profile_acl();
        let users_own = Ace::Allow { flags: flags::TREE, mask: mask::MODIFY, sid: everyone() };
        let ours = Ace::Allow { flags: flags::TREE, mask: mask::FILE_ALL, sid: everyone() };
        acl.add_explicit(users_own.clone());
        acl.add_explicit(ours.clone());
        assert!(acl.aces.contains(&ours));
        assert!(acl.remove_explicit(&ours));
        assert!(!acl.remove_explicit(&ours), "only once");
        assert!(!acl.aces.contains(&ours));
        assert!(acl.aces.contains(&users_own), "another entry for the same SID stays");
    }

    #[test]
    fn readability_is_judged_like_the_access_check() {
        let account = Sid::parse("S-1-5-21-9-9-9-1005").unwrap();
        let sids = crate::sid::sandbox_token_sids(&account, &logon());
        // A profile folder: only the user, SYSTEM and Administrators.
        assert!(!profile_acl().may_read(&sids));
        // Users may read (C:\Program Files, most of C:\ProgramData).
        let mut shared = profile_acl();
        shared.aces.push(Ace::Allow { flags: flags::INHERITED, mask: mask::GENERIC_READ, sid: users() });
        assert!(shared.may_read(&sids));
        // A deny before the allow wins.
        shared.add_explicit(Ace::Deny { flags: 0, mask: mask::ANY_READ, sid: logon() });
        assert!(!shared.may_read(&sids));
        // Inherit-only entries don't apply to the object itself.
        let io = Acl::new(vec![Ace::Allow {
            flags: flags::INHERIT_ONLY | flags::TREE,
            mask: mask::FILE_ALL,
            sid: everyone(),
        }]);
        assert!(!io.may_read(&sids));
        // A deny of something other than reading doesn't stop reading.
        let mut w = Acl::new(vec![Ace::Deny { flags: 0, mask: mask::ANY_WRITE, sid: everyone() }]);
        w.aces.push(Ace::Allow { flags: 0, mask: mask::READ_EXECUTE, sid: authenticated_users() });
        assert!(w.may_read(&sids));
        assert!(Acl::new(vec![Ace::Allow { flags: 0, mask: mask::GENERIC_ALL, sid: account }]).may_read(&sids));
    }

    #[test]
    fn masks_do_not_overlap_where_they_must_not() {
        // A deny entry must never carry the rights reading needs.
        assert_eq!(mask::ANY_WRITE & (mask::SYNCHRONIZE | mask::READ_CONTROL | mask::FILE_READ_DATA), 0);
        assert_eq!(mask::ANY_READ & mask::FILE_READ_ATTRIBUTES, 0);
        assert_eq!(mask::MODIFY, 0x0013_01BF);
        assert_eq!(mask::READ_EXECUTE, 0x0012_00A9);
        assert_eq!(mask::FILE_WRITE_DATA & mask::MODIFY & !mask::DELETE, mask::FILE_WRITE_DATA);
        assert_eq!(mask::MODIFY & (mask::WRITE_DAC | mask::WRITE_OWNER | mask::FILE_DELETE_CHILD), 0);
    }

    #[test]
    fn security_descriptor_round_trip_and_sddl() {
        let sd = SecurityDescriptor {
            owner: Some(administrators()),
            group: None,
            dacl: Some(Acl::new(vec![
                Ace::Allow { flags: flags::TREE, mask: mask::FILE_ALL, sid: local_system() },
                Ace::Allow { flags: flags::TREE, mask: mask::FILE_ALL, sid: administrators() },
                Ace::Allow { flags: 0, mask: mask::FILE_READ, sid: user() },
            ])),
            protected: true,
        };
        let bytes = sd.to_bytes();
        assert_eq!(SecurityDescriptor::from_bytes(&bytes).unwrap(), sd);
        assert_eq!(sd.sddl(), format!("O:BAD:P(A;OICI;0x1f01ff;;;SY)(A;OICI;0x1f01ff;;;BA)(A;;0x120089;;;{})", user()));
        let open = SecurityDescriptor::default();
        assert_eq!(SecurityDescriptor::from_bytes(&open.to_bytes()).unwrap(), open);
        assert_eq!(open.sddl(), "D:NO_ACCESS_CONTROL");
        assert!(SecurityDescriptor::from_bytes(&bytes[..10]).is_err());
    }

    #[test]
    fn ace_sddl_spells_flags() {
        let ace = Ace::Deny {
            flags: flags::TREE | flags::INHERIT_ONLY | flags::INHERITED | flags::NO_PROPAGATE_INHERIT,
            mask: mask::DELETE,
            sid: logon(),
        };
        assert_eq!(ace.sddl(), "(D;OICINPIOID;0x10000;;;S-1-5-5-0-4242)");
    }
}
