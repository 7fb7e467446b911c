//! The run journal: every change a run makes to the filesystem, written (and flushed) before
//! the change is made, so a run that dies (power loss, a killed supervisor) is undone by the
//! next `spawn`. One file per run under `%ProgramData%\ringfence\runs`; the live run keeps it
//! open without delete sharing, which is how a later run tells a live journal from a stale
//! one.
//!
//! Lines are UTF-8 text: a header, the run's logon SID, then one entry per change, its path
//! written as [`crate::escape`] writes it.

use crate::escape::{escape, unescape};
use crate::plan::Kind;
use crate::sid::Sid;

pub const HEADER: &str = "ringfence-journal 1";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// ACL entries naming the run's logon SID were (or were about to be) added here.
    Ace(Vec<u16>),
    /// A folder created on the way to a placeholder.
    Folder(Vec<u16>),
    /// A placeholder.
    Placeholder(Kind, Vec<u16>),
    /// The run's private temporary folder (removed with its content).
    TempDir(Vec<u16>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// The logon SID the run's ACL entries name (absent if the run died before learning it).
    pub logon: Option<Sid>,
    pub entries: Vec<Entry>,
}

/// The line for the logon SID.
pub fn logon_line(sid: &Sid) -> String {
    format!("logon {sid}\n")
}

/// The line for one entry.
pub fn entry_line(entry: &Entry) -> String {
    match entry {
        Entry::Ace(p) => format!("ace {}\n", escape(p)),
        Entry::Folder(p) => format!("folder {}\n", escape(p)),
        Entry::Placeholder(Kind::Dir, p) => format!("placeholder dir {}\n", escape(p)),
        Entry::Placeholder(Kind::File, p) => format!("placeholder file {}\n", escape(p)),
        Entry::TempDir(p) => format!("tempdir {}\n", escape(p)),
    }
}

/// Parses a journal. A last line without its newline was being written when the run died: the
/// change it announces never started, so it is dropped.
pub fn parse(text: &str) -> Result<Journal, String> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if !text.ends_with('\n') {
        lines.pop();
    } else {
        lines.pop(); // the empty string after the final newline
    }
    let mut it = lines.into_iter();
    match it.next() {
        Some(HEADER) => {}
        Some(other) => return Err(format!("not a ringfence journal (first line `{other}`)")),
        None => return Ok(Journal::default()),
    }
    let mut journal = Journal::default();
    for line in it {
        let (word, rest) = line.split_once(' ').ok_or_else(|| format!("bad journal line `{line}`"))?;
        let entry = match word {
            "logon" => {
                journal.logon = Some(Sid::parse(rest)?);
                continue;
            }
            "ace" => Entry::Ace(unescape(rest)?),
            "folder" => Entry::Folder(unescape(rest)?),
            "tempdir" => Entry::TempDir(unescape(rest)?),
            "placeholder" => match rest.split_once(' ') {
                Some(("dir", p)) => Entry::Placeholder(Kind::Dir, unescape(p)?),
                Some(("file", p)) => Entry::Placeholder(Kind::File, unescape(p)?),
                _ => return Err(format!("bad journal line `{line}`")),
            },
            _ => return Err(format!("bad journal line `{line}`")),
        };
        journal.entries.push(entry);
    }
    Ok(journal)
}

/// The journal's file name for a run: the supervisor's pid and a per-process counter, which
/// together are unique among live runs.
pub fn file_name(pid: u32, counter: u32) -> String {
    format!("run-{pid}-{counter}.journal")
}

/// The order to undo a journal in: ACL entries first (so nothing of the run's stays granted),
/// then placeholders, then folders innermost first, then temporary folders.
pub fn undo_order(journal: &Journal) -> Vec<&Entry> {
    let rank = |e: &Entry| match e {
        Entry::Ace(_) => 0,
        Entry::Placeholder(..) => 1,
        Entry::Folder(_) => 2,
        Entry::TempDir(_) => 3,
    };
    let mut out: Vec<(usize, &Entry)> = journal.entries.iter().enumerate().collect();
    // Stable by rank; within a rank, later entries first (folders were created parents first).
    out.sort_by_key(|(i, e)| (rank(e), std::cmp::Reverse(*i)));
    let mut seen = std::collections::HashSet::new();
    out.into_iter().map(|(_, e)| e).filter(|e| seen.insert(*e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::w;

    #[test]
    fn parses_what_it_writes() {
        let logon = Sid::parse("S-1-5-5-0-31337").unwrap();
        let entries = vec![
            Entry::TempDir(w(r"C:\Users\me\AppData\Local\Temp\ringfence-1")),
            Entry::Folder(w(r"C:\w\.config")),
            Entry::Placeholder(Kind::Dir, w(r"C:\w\.config\git")),
            Entry::Placeholder(Kind::File, w(r"C:\w\.gitconfig")),
            Entry::Ace(w(r"C:\w")),
        ];
        let mut text = format!("{HEADER}\n{}", logon_line(&logon));
        for e in &entries {
            text.push_str(&entry_line(e));
        }
        let j = parse(&text).unwrap();
        assert_eq!(j.logon, Some(logon));
        assert_eq!(j.entries, entries);
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let text = format!("{HEADER}\nlogon S-1-5-5-0-1\nace C:\\w\nace C:\\x");
        let j = parse(&text).unwrap();
        assert_eq!(j.entries, vec![Entry::Ace(w(r"C:\w"))]);
        assert_eq!(parse("").unwrap(), Journal::default());
        assert_eq!(parse("ringfence-jour").unwrap(), Journal::default(), "a torn header");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("something else\n").is_err());
        assert!(parse(&format!("{HEADER}\nfrobnicate x\n")).is_err());
        assert!(parse(&format!("{HEADER}\nlogon nonsense\n")).is_err());
        assert!(parse(&format!("{HEADER}\nplaceholder sock C:\\x\n")).is_err());
    }

    #[test]
    fn undo_order_strips_entries_first_and_folders_innermost_first() {
        let j = Journal {
            logon: None,
            entries: vec![
                Entry::TempDir(w("T")),
                Entry::Folder(w("F1")),
                Entry::Folder(w("F1\\F2")),
                Entry::Placeholder(Kind::Dir, w("F1\\F2\\P")),
                Entry::Ace(w("A")),
                Entry::Ace(w("A")),
            ],
        };
        let order: Vec<String> = undo_order(&j).into_iter().map(entry_line).collect();
        assert_eq!(order, ["ace A\n", "placeholder dir F1\\F2\\P\n", "folder F1\\F2\n", "folder F1\n", "tempdir T\n"]);
    }

    #[test]
    fn file_names_are_unique_per_process_and_counter() {
        assert_eq!(file_name(12, 3), "run-12-3.journal");
        assert_ne!(file_name(12, 3), file_name(123, 0));
    }
}
