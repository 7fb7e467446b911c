//! The run's processes. macOS has no pid namespace or cgroup to hold them, so the supervisor
//! keeps the list itself from the process table: a process of the user's that started during
//! the run belongs to it when its parent or its process group does, or when the Seatbelt
//! profile it runs under is this run's (a process that called setsid(2) and whose parent
//! exited is found that way: its sandbox lets it write this run's private folder and not the
//! folder's sibling, which no other profile does).

use crate::sys::{self, ProcInfo};
use std::collections::HashMap;
use std::ffi::CString;
use std::path::Path;

/// One process of the run: pid and start time (together, an identity a reused pid can't take).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    start_us: u64,
}

/// A sample of the run's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub processes: usize,
    pub resident_bytes: u64,
}

pub struct Tree {
    /// The command: pid, process group and session.
    root: libc::pid_t,
    uid: libc::uid_t,
    started_us: u64,
    members: HashMap<libc::pid_t, Member>,
    /// Processes seen that are not the run's, with their start time.
    strangers: HashMap<libc::pid_t, u64>,
    fingerprint: Option<(CString, CString)>,
}

impl Tree {
    /// The tree of the command `root`; `tmp` is the run's private folder.
    pub fn new(root: libc::pid_t, tmp: &Path) -> Self {
        // A command that already ended leaves the start at 0: any later process of the user's
        // is then weighed by parent, group and profile alone.
        let started_us = sys::proc_info(root).map(|i| i.start_us).unwrap_or(0);
        let mut members = HashMap::new();
        members.insert(root, Member { start_us: started_us });
        Tree { root, uid: sys::uid(), started_us, members, strangers: HashMap::new(), fingerprint: fingerprint(tmp) }
    }

    /// Rescans the process table; returns the run's processes and their resident memory.
    pub fn refresh(&mut self) -> Sample {
        let pids = sys::pids_of_user(self.uid);
        let mut alive: HashMap<libc::pid_t, Member> = HashMap::new();
        let mut fresh: Vec<(libc::pid_t, ProcInfo)> = Vec::new();
        for pid in pids {
            let Some(info) = sys::proc_info(pid).filter(|i| !i.zombie) else { continue };
            match self.members.get(&pid) {
                Some(m) if m.start_us == info.start_us => {
                    alive.insert(pid, *m);
                }
                _ if self.strangers.get(&pid) == Some(&info.start_us) || info.start_us < self.started_us => {}
                _ => fresh.push((pid, info)),
            }
        }
        // Parents first: a new process is the run's when its parent is.
        fresh.sort_by_key(|(_, info)| info.start_us);
        for (pid, info) in fresh {
            if self.belongs(pid, &info, &alive) {
                alive.insert(pid, Member { start_us: info.start_us });
            } else {
                self.strangers.insert(pid, info.start_us);
            }
        }
        self.members = alive;
        let resident_bytes = self.members.keys().filter_map(|&p| sys::resident_bytes(p)).sum();
        Sample { processes: self.members.len(), resident_bytes }
    }

    fn belongs(&self, pid: libc::pid_t, info: &ProcInfo, alive: &HashMap<libc::pid_t, Member>) -> bool {
        if info.uid != self.uid {
            return false;
        }
        if pid == self.root || info.pgid == self.root || alive.contains_key(&info.ppid) {
            return true;
        }
        self.fingerprint
            .as_ref()
            .is_some_and(|(allowed, refused)| sys::sandbox_matches(pid, c"file-write-create", allowed, refused))
    }

    /// Sends `sig` to the command's group and to every known process of the run that is still
    /// the same process.
    pub fn signal(&self, sig: libc::c_int) {
        sys::kill_group(self.root, sig);
        for (&pid, member) in &self.members {
            if sys::proc_info(pid).is_some_and(|i| i.start_us == member.start_us && !i.zombie) {
                sys::kill(pid, sig);
            }
        }
    }

    /// Kills the run's processes until a fresh scan finds none left (bounded, for processes
    /// that fork while being killed).
    pub fn kill_all(&mut self) -> usize {
        for _ in 0..50 {
            self.signal(libc::SIGKILL);
            if self.refresh().processes == 0 {
                return 0;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.members.len()
    }
}

/// A path this run's profile lets the command create and a sibling it refuses.
fn fingerprint(tmp: &Path) -> Option<(CString, CString)> {
    use std::os::unix::ffi::OsStrExt;
    let allowed = tmp.join(".ringfence-fingerprint");
    let mut refused = tmp.as_os_str().to_owned();
    refused.push(".outside");
    Some((CString::new(allowed.as_os_str().as_bytes()).ok()?, CString::new(refused.as_bytes()).ok()?))
}
