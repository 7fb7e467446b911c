//! What `setup` installs and where: the folder under `%ProgramData%`, the descriptors that
//! protect each part, the password's shape, and the installation record `spawn` reads.
//!
//! ```text
//! %ProgramData%\ringfence\            SYSTEM, Administrators: full; the installing user: list
//!   bin\ringfence.exe                 + the user and the sandbox account: read and execute
//!   secret.bin                        SYSTEM, Administrators: full; the user: read
//!   install.txt                       SYSTEM, Administrators: full; the user: read
//!   runs\                             + the user: modify (journals of live and crashed runs)
//!   grants\                           + the user: modify (the slot grants' registry and locks)
//! ```
//! Only administrators can change the runner: a sandboxed command that could replace it would
//! run its own code, unconfined, as the sandbox account at the next launch.

use crate::acl::{flags, mask, Ace, SecurityDescriptor};
use crate::sid::{well_known, Sid};
use crate::wpath;

/// The sandbox account's name (at most 20 characters, the limit for local accounts).
pub const ACCOUNT_NAME: &str = "ringfence-sandbox";

/// The folder under `%ProgramData%`.
pub const DIR_NAME: &str = "ringfence";

/// Where everything lives, below `program_data` (the `%ProgramData%` folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub root: String,
}

impl Layout {
    pub fn new(program_data: &str) -> Layout {
        Layout { root: wpath::join(&wpath::normalize(program_data), DIR_NAME) }
    }
    pub fn bin_dir(&self) -> String {
        wpath::join(&self.root, "bin")
    }
    pub fn runner(&self) -> String {
        wpath::join(&self.root, r"bin\ringfence.exe")
    }
    pub fn secret(&self) -> String {
        wpath::join(&self.root, "secret.bin")
    }
    pub fn record(&self) -> String {
        wpath::join(&self.root, "install.txt")
    }
    pub fn runs(&self) -> String {
        wpath::join(&self.root, "runs")
    }
    pub fn grants(&self) -> String {
        wpath::join(&self.root, "grants")
    }
}

fn admin_aces(inherit: u8) -> Vec<Ace> {
    vec![
        Ace::Allow { flags: inherit, mask: mask::FILE_ALL, sid: well_known::local_system() },
        Ace::Allow { flags: inherit, mask: mask::FILE_ALL, sid: well_known::administrators() },
    ]
}

/// The root folder: the installing user may list it (and reach what is inside), nothing more.
pub fn root_sd(user: &Sid) -> SecurityDescriptor {
    let mut aces = admin_aces(flags::TREE);
    aces.push(Ace::Allow { flags: 0, mask: mask::READ_EXECUTE, sid: user.clone() });
    SecurityDescriptor::protected_dacl(aces)
}

/// `bin\`: the runner, readable and executable by the user and the sandbox account.
pub fn bin_sd(user: &Sid, account: &Sid) -> SecurityDescriptor {
    let mut aces = admin_aces(flags::TREE);
    aces.push(Ace::Allow { flags: flags::TREE, mask: mask::READ_EXECUTE, sid: user.clone() });
    aces.push(Ace::Allow { flags: flags::TREE, mask: mask::READ_EXECUTE, sid: account.clone() });
    SecurityDescriptor::protected_dacl(aces)
}

/// `secret.bin` and `install.txt`: readable by the installing user only (and admins).
pub fn secret_sd(user: &Sid) -> SecurityDescriptor {
    let mut aces = admin_aces(0);
    aces.push(Ace::Allow { flags: 0, mask: mask::FILE_READ, sid: user.clone() });
    SecurityDescriptor::protected_dacl(aces)
}

/// `runs\` and `grants\`: the user's supervisors write journals and the grants' registry here.
pub fn runs_sd(user: &Sid) -> SecurityDescriptor {
    let mut aces = admin_aces(flags::TREE);
    aces.push(Ace::Allow { flags: flags::TREE, mask: mask::MODIFY, sid: user.clone() });
    SecurityDescriptor::protected_dacl(aces)
}

/// The optional entropy DPAPI mixes into the secret: ties the blob to ringfence.
pub const DPAPI_ENTROPY: &[u8] = b"ringfence sandbox account password v1";

const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const DIGIT: &[u8] = b"23456789";
const SYMBOL: &[u8] = b"!#%+-.:=?@^_~";
/// The password's length: well past any complexity policy's minimum.
pub const PASSWORD_LEN: usize = 40;

/// Builds the account's password from random bytes (at least [`PASSWORD_LEN`]): every class of
/// character Windows' complexity rule counts, at positions the bytes choose.
pub fn password_from(random: &[u8]) -> String {
    assert!(random.len() >= PASSWORD_LEN, "need {PASSWORD_LEN} random bytes");
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].concat();
    let mut out: Vec<u8> = random[..PASSWORD_LEN].iter().map(|b| all[*b as usize % all.len()]).collect();
    // Force one of each class at distinct positions derived from the first bytes.
    for (i, class) in [UPPER, LOWER, DIGIT, SYMBOL].iter().enumerate() {
        let pos = (random[i] as usize % (PASSWORD_LEN / 4)) + i * (PASSWORD_LEN / 4);
        out[pos] = class[random[PASSWORD_LEN - 1 - i] as usize % class.len()];
    }
    String::from_utf8(out).expect("ASCII")
}

/// The first line of the installation record; a record of another version needs `setup` again.
pub const RECORD_HEADER: &str = "ringfence-install 2";

/// What `setup` recorded: read by `spawn` and by `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub account: Sid,
    pub user: Sid,
    pub filters: usize,
    pub protocol: u32,
    /// The sandbox account's profile folder.
    pub profile: String,
    /// The slot groups' SIDs, by index (see [`crate::grants`]).
    pub slots: Vec<Sid>,
}

impl Record {
    pub fn to_text(&self) -> String {
        let profile: Vec<u16> = self.profile.encode_utf16().collect();
        let mut out = format!(
            "{RECORD_HEADER}\naccount {}\nuser {}\nfilters {}\nprotocol {}\nprofile {}\n",
            self.account,
            self.user,
            self.filters,
            self.protocol,
            crate::escape::escape(&profile)
        );
        for sid in &self.slots {
            out.push_str(&format!("slot {sid}\n"));
        }
        out
    }

    pub fn parse(text: &str) -> Result<Record, String> {
        let mut lines = text.lines();
        if lines.next() != Some(RECORD_HEADER) {
            return Err("not an installation record of this ringfence version".into());
        }
        let (mut account, mut user, mut filters, mut protocol, mut profile) = (None, None, None, None, None);
        let mut slots = Vec::new();
        for line in lines {
            match line.split_once(' ') {
                Some(("account", v)) => account = Some(Sid::parse(v)?),
                Some(("user", v)) => user = Some(Sid::parse(v)?),
                Some(("filters", v)) => filters = Some(v.parse().map_err(|_| "bad filter count")?),
                Some(("protocol", v)) => protocol = Some(v.parse().map_err(|_| "bad protocol")?),
                Some(("profile", v)) => {
                    profile = Some(String::from_utf16(&crate::escape::unescape(v)?).map_err(|_| "bad profile")?)
                }
                Some(("slot", v)) => slots.push(Sid::parse(v)?),
                _ => return Err(format!("bad line `{line}` in the installation record")),
            }
        }
        if slots.len() != usize::from(crate::grants::SLOT_COUNT) {
            return Err(format!("{} slot groups in the installation record", slots.len()));
        }
        Ok(Record {
            account: account.ok_or("no account in the installation record")?,
            user: user.ok_or("no user in the installation record")?,
            filters: filters.ok_or("no filter count in the installation record")?,
            protocol: protocol.ok_or("no protocol in the installation record")?,
            profile: profile.ok_or("no profile in the installation record")?,
            slots,
        })
    }
}

/// The entry `setup` adds to the NUL device (`\\.\NUL`, the kernel's `\Device\Null`): read and
/// write for the capability SID. Every command's token is write-restricted, so a write must
/// also be granted to one of its restricting SIDs. The device's own ACL grants writing to broad
/// groups (Everyone, RESTRICTED) but to none of those, so `> NUL` would fail.
/// The capability SID is in every command's token and in no other ACL (but the WFP filters'),
/// so this opens exactly the bit bucket.
pub fn null_device_ace() -> Ace {
    Ace::Allow { flags: 0, mask: mask::FILE_READ | mask::FILE_WRITE, sid: crate::sid::capability() }
}

/// Whether a DACL of the NUL device lets sandboxed commands write to it: an allow entry for the
/// capability SID with the write-data right, not denied before it. A missing DACL (NULL) lets
/// everyone do everything.
pub fn null_device_writable(dacl: Option<&crate::acl::Acl>) -> bool {
    let Some(acl) = dacl else { return true };
    for ace in acl.aces.iter().filter(|a| a.applies_here()) {
        match ace {
            Ace::Deny { mask: m, sid, .. } if *sid == crate::sid::capability() && m & mask::FILE_WRITE_DATA != 0 => {
                return false
            }
            Ace::Allow { mask: m, sid, .. }
                if *sid == crate::sid::capability()
                    && m & (mask::FILE_WRITE_DATA | mask::GENERIC_WRITE | mask::GENERIC_ALL) != 0 =>
            {
                return true
            }
            _ => {}
        }
    }
    false
}

/// The scheduled task that adds [`null_device_ace`] again at every boot (device ACLs live in
/// memory only).
pub const BOOT_TASK: &str = r"\ringfence\NUL device";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{account, logon, user};

    #[test]
    fn layout() {
        let l = Layout::new(r"C:\ProgramData\");
        assert_eq!(l.root, r"C:\ProgramData\ringfence");
        assert_eq!(l.runner(), r"C:\ProgramData\ringfence\bin\ringfence.exe");
        assert_eq!(l.secret(), r"C:\ProgramData\ringfence\secret.bin");
        assert_eq!(l.runs(), r"C:\ProgramData\ringfence\runs");
        assert_eq!(l.grants(), r"C:\ProgramData\ringfence\grants");
    }

    #[test]
    fn the_secret_is_readable_by_the_user_admins_and_system_only() {
        let sd = secret_sd(&user());
        let acl = sd.dacl.as_ref().unwrap();
        assert!(sd.protected, "no inherited entries from %ProgramData%");
        let readers: Vec<_> = acl.aces.iter().filter_map(|a| a.sid().cloned()).collect();
        assert_eq!(readers, vec![well_known::local_system(), well_known::administrators(), user()]);
        assert!(!acl.may_read(&crate::sid::sandbox_token_sids(&account(), &logon())));
        assert_eq!(sd.sddl(), format!("D:P(A;;0x1f01ff;;;SY)(A;;0x1f01ff;;;BA)(A;;0x120089;;;{})", user()));
    }

    #[test]
    fn only_admins_can_write_the_runner() {
        let sd = bin_sd(&user(), &account());
        for ace in &sd.dacl.as_ref().unwrap().aces {
            let Ace::Allow { mask: m, sid, .. } = ace else { panic!("{ace:?}") };
            if *sid == user() || *sid == account() {
                assert_eq!(m & mask::ANY_WRITE, 0, "{ace:?}");
            }
        }
        let runs = runs_sd(&user());
        assert!(runs
            .dacl
            .unwrap()
            .aces
            .iter()
            .any(|a| matches!(a, Ace::Allow { mask: mask::MODIFY, sid, .. } if *sid == user())));
        let root = root_sd(&user());
        assert!(!root.dacl.unwrap().mentions(&account()), "the account can't list the root");
    }

    #[test]
    fn passwords_have_every_class() {
        let mut state = 7u32;
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..PASSWORD_LEN)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (state >> 16) as u8
                })
                .collect();
            let p = password_from(&bytes);
            assert_eq!(p.len(), PASSWORD_LEN);
            assert!(p.bytes().any(|b| b.is_ascii_uppercase()), "{p}");
            assert!(p.bytes().any(|b| b.is_ascii_lowercase()), "{p}");
            assert!(p.bytes().any(|b| b.is_ascii_digit()), "{p}");
            assert!(p.bytes().any(|b| SYMBOL.contains(&b)), "{p}");
            assert!(!p.contains(ACCOUNT_NAME));
        }
        assert_eq!(password_from(&[0; PASSWORD_LEN]).len(), PASSWORD_LEN);
    }

    #[test]
    fn record_round_trips() {
        let slots = (0..crate::grants::SLOT_COUNT).map(|i| Sid::new(5, &[21, 1, 2, 3, 3000 + u32::from(i)])).collect();
        let r = Record {
            account: account(),
            user: user(),
            filters: 20,
            protocol: 1,
            profile: r"C:\Users\ringfence-sandbox".into(),
            slots,
        };
        assert_eq!(Record::parse(&r.to_text()).unwrap(), r);
        assert!(Record::parse("x\n").is_err());
        assert!(Record::parse("ringfence-install 1\naccount S-1-5-18\n").is_err(), "an older record needs setup");
        assert!(Record::parse(&format!("{RECORD_HEADER}\nbogus 1\n")).is_err());
        let short = r.to_text().replace(&format!("slot {}\n", r.slots[3]), "");
        assert!(Record::parse(&short).unwrap_err().contains("slot groups"));
    }

    #[test]
    fn the_null_device_entry_opens_writing_to_the_capability_only() {
        use crate::acl::Acl;
        use crate::sid::{capability, well_known};
        // An ACL like the one Windows gives \Device\Null: no restricting SID of ours in it.
        let stock = Acl::new(vec![
            Ace::Allow { flags: 0, mask: mask::GENERIC_ALL, sid: well_known::local_system() },
            Ace::Allow { flags: 0, mask: 0xE000_0000, sid: well_known::administrators() },
            Ace::Allow { flags: 0, mask: 0xE000_0000, sid: well_known::everyone() },
            Ace::Allow { flags: 0, mask: 0xE000_0000, sid: Sid::new(5, &[12]) },
        ]);
        assert!(!null_device_writable(Some(&stock)));
        let mut granted = stock.clone();
        granted.add_explicit(null_device_ace());
        assert!(null_device_writable(Some(&granted)));
        let mut denied = granted.clone();
        denied.add_explicit(Ace::Deny { flags: 0, mask: mask::FILE_WRITE_DATA, sid: capability() });
        assert!(!null_device_writable(Some(&denied)), "a deny before it wins");
        assert!(null_device_writable(None), "a NULL DACL lets everyone write");
        let Ace::Allow { mask: m, .. } = null_device_ace() else { panic!() };
        assert_eq!(m & (mask::WRITE_DAC | mask::WRITE_OWNER | mask::DELETE), 0, "only reading and writing data");
    }
}
