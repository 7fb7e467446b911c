//! Security identifiers as plain data: parsing and printing the `S-1-…` form, and the binary
//! layout Windows uses inside ACLs and tokens, so ACL edits and filter conditions can be built
//! and tested without the OS.

use std::fmt;

/// A security identifier (revision 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    /// The 48-bit identifier authority (5 = NT AUTHORITY).
    pub authority: u64,
    /// Up to 15 sub-authorities.
    pub sub: Vec<u32>,
}

/// The most sub-authorities a SID may have.
pub const MAX_SUB_AUTHORITIES: usize = 15;

impl Sid {
    pub fn new(authority: u64, sub: &[u32]) -> Self {
        Sid { authority, sub: sub.to_vec() }
    }

    /// Parses `S-1-<authority>-<sub>…`. The authority is decimal, or hexadecimal with `0x`
    /// (how Windows prints authorities of 2^32 and above).
    pub fn parse(text: &str) -> Result<Sid, String> {
        let bad = |why: &str| format!("`{text}` is not a SID: {why}");
        let mut parts = text.split('-');
        if !matches!(parts.next(), Some("S") | Some("s")) {
            return Err(bad("it must start with `S-`"));
        }
        if parts.next() != Some("1") {
            return Err(bad("only revision 1 exists"));
        }
        let auth = parts.next().ok_or_else(|| bad("the authority is missing"))?;
        let authority = match auth.strip_prefix("0x").or_else(|| auth.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).map_err(|_| bad("bad authority"))?,
            None => auth.parse::<u64>().map_err(|_| bad("bad authority"))?,
        };
        if authority >= 1 << 48 {
            return Err(bad("the authority has more than 48 bits"));
        }
        let sub = parts
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("a sub-authority is not a number"));
                }
                p.parse::<u32>().map_err(|_| bad("a sub-authority exceeds 32 bits"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sub.len() > MAX_SUB_AUTHORITIES {
            return Err(bad("more than 15 sub-authorities"));
        }
        Ok(Sid { authority, sub })
    }

    /// The binary form: revision, count, 6-byte big-endian authority, little-endian
    /// sub-authorities.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.push(1);
        out.push(self.sub.len() as u8);
        out.extend_from_slice(&self.authority.to_be_bytes()[2..]);
        for s in &self.sub {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// The length of the binary form.
    pub fn len(&self) -> usize {
        8 + 4 * self.sub.len()
    }

    /// Never true: a SID has at least its header. (Present for clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Reads a SID at the start of `bytes`; returns it and its length.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Sid, usize), String> {
        if bytes.len() < 8 {
            return Err("a SID is shorter than its 8-byte header".into());
        }
        if bytes[0] != 1 {
            return Err(format!("SID revision {} is unknown", bytes[0]));
        }
        let count = bytes[1] as usize;
        if count > MAX_SUB_AUTHORITIES {
            return Err(format!("a SID claims {count} sub-authorities"));
        }
        let len = 8 + 4 * count;
        if bytes.len() < len {
            return Err("a SID is cut short".into());
        }
        let mut auth = [0u8; 8];
        auth[2..].copy_from_slice(&bytes[2..8]);
        let sub = bytes[8..len].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok((Sid { authority: u64::from_be_bytes(auth), sub }, len))
    }

    /// A logon SID, `S-1-5-5-X-Y`: what a token carries for the logon it came from.
    pub fn is_logon_sid(&self) -> bool {
        self.authority == 5 && self.sub.len() == 3 && self.sub[0] == 5
    }

    /// The SDDL spelling: a two-letter alias for the well-known SIDs ringfence writes, else the
    /// `S-1-…` form (which SDDL accepts for every SID).
    pub fn sddl(&self) -> String {
        let alias = match (self.authority, self.sub.as_slice()) {
            (1, [0]) => Some("WD"),
            (3, [4]) => Some("OW"),
            (5, [18]) => Some("SY"),
            (5, [11]) => Some("AU"),
            (5, [32, 544]) => Some("BA"),
            (5, [32, 545]) => Some("BU"),
            _ => None,
        };
        alias.map(str::to_string).unwrap_or_else(|| self.to_string())
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.authority < 1 << 32 {
            write!(f, "S-1-{}", self.authority)?;
        } else {
            write!(f, "S-1-0x{:012X}", self.authority)?;
        }
        for s in &self.sub {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Sid {
    type Err = String;
    fn from_str(s: &str) -> Result<Sid, String> {
        Sid::parse(s)
    }
}

/// Declares a constructor for each well-known SID: `name = authority, [sub-authorities];`.
macro_rules! well_known_sids {
    ($($(#[$doc:meta])* $name:ident = $authority:literal, [$($sub:literal),+];)+) => {
        $(
            $(#[$doc])*
            pub fn $name() -> Sid {
                Sid::new($authority, &[$($sub),+])
            }
        )+
    };
}

/// Well-known SIDs ringfence names in ACLs and uses to judge what the sandbox can read.
pub mod well_known {
    use super::Sid;

    well_known_sids! {
        /// Everyone (S-1-1-0).
        everyone = 1, [0];
        /// LOCAL (S-1-2-0): users logged on locally.
        local = 2, [0];
        /// CONSOLE LOGON (S-1-2-1).
        console_logon = 2, [1];
        /// OWNER RIGHTS (S-1-3-4): limits what an object's owner gets implicitly.
        owner_rights = 3, [4];
        /// INTERACTIVE (S-1-5-4).
        interactive = 5, [4];
        /// BATCH (S-1-5-3).
        batch = 5, [3];
        /// Authenticated Users (S-1-5-11).
        authenticated_users = 5, [11];
        /// This Organization (S-1-5-15).
        this_organization = 5, [15];
        /// LocalSystem (S-1-5-18).
        local_system = 5, [18];
        /// BUILTIN\Administrators (S-1-5-32-544).
        administrators = 5, [32, 544];
        /// BUILTIN\Users (S-1-5-32-545).
        users = 5, [32, 545];
        /// NTLM Authentication (S-1-5-64-10).
        ntlm_authentication = 5, [64, 10];
    }
}

/// The ringfence capability SID. It is a restricting SID of every sandboxed token and the WFP
/// filters match it, so a filter applies to the command whether or not Windows runs the
/// restricted half of the access check for the filter's "match" right. Nothing else on the
/// machine carries it, and ringfence never puts it in a file's ACL, so it grants no write
/// access anywhere. The numbers are fixed (random, chosen once) so that filters installed by
/// one version match tokens made by another.
pub fn capability() -> Sid {
    Sid::new(5, &[21, 3_168_203_713, 1_290_477_421, 2_771_046_208, 8_201])
}

/// The SIDs a sandboxed command's token holds that ACL entries on files commonly grant: the
/// account, the run's logon SID, the capability and the groups every local interactive
/// user gets. Used conservatively: an entry granting any of them counts as readable.
pub fn sandbox_token_sids(account: &Sid, logon: &Sid) -> Vec<Sid> {
    use well_known::*;
    vec![
        account.clone(),
        logon.clone(),
        capability(),
        everyone(),
        local(),
        console_logon(),
        interactive(),
        batch(),
        authenticated_users(),
        this_organization(),
        users(),
        ntlm_authentication(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for text in ["S-1-5-18", "S-1-1-0", "S-1-5-21-3623811015-3361044348-30300820-1013", "S-1-5-5-0-123456", "S-1-0"]
        {
            let sid = Sid::parse(text).unwrap();
            assert_eq!(sid.to_string(), text);
        }
        let big = Sid::parse("S-1-0x123456789ABC-7").unwrap();
        assert_eq!(big.authority, 0x1234_5678_9ABC);
        assert_eq!(big.to_string(), "S-1-0x123456789ABC-7");
        assert_eq!(Sid::parse("s-1-5-32-544").unwrap(), well_known::administrators());
    }

    #[test]
    fn rejects_malformed_sids() {
        for text in [
            "",
            "S",
            "S-2-5",
            "X-1-5",
            "S-1",
            "S-1-5-",
            "S-1-5-abc",
            "S-1-5--1",
            "S-1-5-4294967296",
            "S-1-281474976710656",
            "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16",
        ] {
            assert!(Sid::parse(text).is_err(), "{text} parsed");
        }
    }

    #[test]
    fn binary_layout_matches_windows() {
        // S-1-5-32-544 as Windows stores it (the bytes `CreateWellKnownSid` writes).
        let expected = [1u8, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 2, 0, 0];
        let sid = well_known::administrators();
        assert_eq!(sid.to_bytes(), expected);
        assert_eq!(sid.len(), expected.len());
        let (back, len) = Sid::from_bytes(&expected).unwrap();
        assert_eq!((back, len), (sid, 16));
    }

    #[test]
    fn binary_round_trip_and_errors() {
        let sid = Sid::parse("S-1-5-21-1-2-4294967295-500").unwrap();
        let mut bytes = sid.to_bytes();
        bytes.extend_from_slice(&[9, 9]);
        assert_eq!(Sid::from_bytes(&bytes).unwrap(), (sid.clone(), sid.len()));
        assert!(Sid::from_bytes(&bytes[..7]).is_err());
        assert!(Sid::from_bytes(&bytes[..sid.len() - 1]).is_err());
        let mut bad = sid.to_bytes();
        bad[0] = 2;
        assert!(Sid::from_bytes(&bad).is_err());
        bad[0] = 1;
        bad[1] = 16;
        assert!(Sid::from_bytes(&bad).is_err());
    }

    #[test]
    fn logon_sids_are_recognised() {
        assert!(Sid::parse("S-1-5-5-0-98765").unwrap().is_logon_sid());
        assert!(!Sid::parse("S-1-5-5-0").unwrap().is_logon_sid());
        assert!(!well_known::local_system().is_logon_sid());
    }

    #[test]
    fn sddl_aliases() {
        assert_eq!(well_known::local_system().sddl(), "SY");
        assert_eq!(well_known::administrators().sddl(), "BA");
        assert_eq!(well_known::owner_rights().sddl(), "OW");
        assert_eq!(capability().sddl(), capability().to_string());
    }

    #[test]
    fn capability_is_a_valid_unique_sid() {
        let cap = capability();
        assert_eq!(Sid::parse(&cap.to_string()).unwrap(), cap);
        let account = Sid::parse("S-1-5-21-1-2-3-1001").unwrap();
        let logon = Sid::parse("S-1-5-5-0-1").unwrap();
        let sids = sandbox_token_sids(&account, &logon);
        assert!(sids.contains(&cap) && sids.contains(&account) && sids.contains(&logon));
        assert!(!sids.contains(&well_known::administrators()));
        assert!(!sids.contains(&well_known::local_system()));
    }
}
