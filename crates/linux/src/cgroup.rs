//! Resource limits: a delegated cgroup v2, cgroup v1 as root, or rlimits, in that order.

use ringfence_policy::Limits;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How limits are enforced on this machine for a given request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitMechanism {
    CgroupV2,
    CgroupV1,
    Rlimit,
}

impl std::fmt::Display for LimitMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitMechanism::CgroupV2 => "cgroup v2",
            LimitMechanism::CgroupV1 => "cgroup v1",
            LimitMechanism::Rlimit => "rlimits",
        })
    }
}

/// What the machine offers, found without changing anything.
#[derive(Clone, Debug, Default)]
pub struct CgroupProbe {
    /// Our own cgroup v2 directory, if cgroup2 is mounted.
    pub v2_dir: Option<PathBuf>,
    pub v2_controllers: Vec<String>,
    pub v2_writable: bool,
    /// Controller name to our cgroup v1 directory for it.
    pub v1_dirs: Vec<(String, PathBuf)>,
    pub root: bool,
}

impl CgroupProbe {
    pub fn detect() -> Self {
        let mut probe = CgroupProbe { root: nix::unistd::geteuid().is_root(), ..Default::default() };
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines() {
            // mountinfo: id parent maj:min root mountpoint opts ... - fstype source superopts
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mountpoint = left.split(' ').nth(4).unwrap_or("");
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or("");
            let superopts = right.nth(1).unwrap_or("");
            if fstype == "cgroup2" && probe.v2_dir.is_none() {
                let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
                let dir = Path::new(mountpoint).join(path.trim_start_matches('/'));
                probe.v2_controllers = fs::read_to_string(dir.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                probe.v2_writable = nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok();
                probe.v2_dir = Some(dir);
            } else if fstype == "cgroup" {
                for ctrl in ["pids", "memory", "cpu"] {
                    if superopts.split(',').any(|o| o == ctrl) {
                        let path = own
                            .lines()
                            .filter_map(|l| {
                                let mut parts = l.splitn(3, ':');
                                parts.next();
                                parts.next().zip(parts.next())
                            })
                            .find(|(ctrls, _)| ctrls.split(',').any(|c| c == ctrl))
                            .map(|(_, p)| p)
                            .unwrap_or("/");
                        let dir = Path::new(mountpoint).join(path.trim_start_matches('/'));
                        probe.v1_dirs.push((ctrl.to_string(), dir));
                    }
                }
            }
        }
        probe
    }

    /// The mechanism that `create` would use for these controllers, and why not a stronger one.
    pub fn mechanism(&self, needed: &[&str]) -> (LimitMechanism, Option<String>) {
        if needed.is_empty() {
            return (LimitMechanism::Rlimit, None);
        }
        let v2_ok = self.v2_writable && needed.iter().all(|c| self.v2_controllers.iter().any(|h| h == c));
        if v2_ok {
            return (LimitMechanism::CgroupV2, None);
        }
        let v1_ok = self.root && needed.iter().all(|c| self.v1_dirs.iter().any(|(h, _)| h == c));
        let why = match &self.v2_dir {
            None => "cgroup2 is not mounted".to_string(),
            Some(dir) if !self.v2_writable => {
                format!("the cgroup {} is not delegated to this user", dir.display())
            }
            Some(dir) => format!(
                "the cgroup {} lacks the {} controller(s)",
                dir.display(),
                needed
                    .iter()
                    .filter(|c| !self.v2_controllers.iter().any(|h| h == *c))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        if v1_ok {
            (LimitMechanism::CgroupV1, Some(why))
        } else {
            (LimitMechanism::Rlimit, Some(why))
        }
    }
}

/// Smallest pid_max the kernel accepts in a pid namespace.
const PID_MAX_MIN: u64 = 301;

/// The default process cap can be the pid namespace's own pid_max (Linux 6.14+): free, where a
/// cgroup v1 migration costs an RCU grace period per run. Pids are handed out in order and wrap
/// to 300, so the cap is N concurrent tasks until the numbers wrap and about N-300 after; exact
/// enough for a fork-bomb guard, so explicit limits still use a cgroup or RLIMIT_NPROC.
pub fn pid_namespace_cap(limits: &Limits, kernel: &str) -> Option<u64> {
    let pids = limits.pids?;
    let eligible = !limits.pids_explicit
        && limits.memory.is_none()
        && limits.cpus.is_none()
        && pids + 1 >= PID_MAX_MIN
        && crate::features::kernel_at_least(kernel, 6, 14);
    eligible.then_some(pids + 1)
}

/// The controllers a set of limits needs; none for pids when the pid namespace caps them.
pub fn needed_controllers(limits: &Limits, pid_ns_cap: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    if limits.pids.is_some() && !pid_ns_cap {
        out.push("pids");
    }
    if limits.memory.is_some() {
        out.push("memory");
    }
    if limits.cpus.is_some() {
        out.push("cpu");
    }
    out
}

/// A cgroup made for one run. Its directories are removed by `remove`, or by the cleaner.
#[derive(Debug)]
pub struct RunCgroup {
    pub mechanism: LimitMechanism,
    /// Controller (or "" for v2) and directory.
    pub dirs: Vec<(String, PathBuf)>,
}

/// Counters read after the run.
#[derive(Debug, Default, Clone)]
pub struct CgroupStats {
    pub pids_limit_hits: u64,
    pub oom_kills: u64,
    pub memory_peak: Option<u64>,
}

impl RunCgroup {
    /// The directories this run will use, before they exist (so the cleaner knows them).
    pub fn planned(
        probe: &CgroupProbe,
        mechanism: &LimitMechanism,
        needed: &[&str],
        name: &str,
    ) -> Vec<(String, PathBuf)> {
        match mechanism {
            LimitMechanism::CgroupV2 => probe.v2_dir.iter().map(|d| (String::new(), d.join(name))).collect(),
            LimitMechanism::CgroupV1 => probe
                .v1_dirs
                .iter()
                .filter(|(c, _)| needed.contains(&c.as_str()))
                .map(|(c, d)| (c.clone(), d.join(name)))
                .collect(),
            LimitMechanism::Rlimit => Vec::new(),
        }
    }

    /// Creates the directories and writes the limits.
    pub fn create(
        mechanism: LimitMechanism,
        dirs: Vec<(String, PathBuf)>,
        probe: &CgroupProbe,
        limits: &Limits,
    ) -> io::Result<Self> {
        let cg = RunCgroup { mechanism, dirs };
        if cg.mechanism == LimitMechanism::CgroupV2 {
            let parent = probe.v2_dir.as_ref().ok_or_else(|| io::Error::other("no cgroup2"))?;
            enable_v2_controllers(parent, &needed_controllers(limits, false))?;
        }
        for (ctrl, dir) in &cg.dirs {
            fs::create_dir(dir)?;
            let write = |file: &str, value: String| fs::write(dir.join(file), value);
            let v2 = ctrl.is_empty();
            if let (Some(pids), true) = (limits.pids, v2 || ctrl == "pids") {
                write("pids.max", pids.to_string())?;
            }
            if let Some(mem) = limits.memory {
                if v2 {
                    write("memory.max", mem.0.to_string())?;
                    let _ = write("memory.swap.max", "0".into());
                } else if ctrl == "memory" {
                    write("memory.limit_in_bytes", mem.0.to_string())?;
                    let _ = write("memory.memsw.limit_in_bytes", mem.0.to_string());
                }
            }
            if let Some(cpus) = limits.cpus {
                let period = 100_000u64;
                let quota = ((cpus * period as f64) as u64).max(1000);
                if v2 {
                    write("cpu.max", format!("{quota} {period}"))?;
                } else if ctrl == "cpu" {
                    write("cpu.cfs_period_us", period.to_string())?;
                    write("cpu.cfs_quota_us", quota.to_string())?;
                }
            }
        }
        Ok(cg)
    }

    /// Moves `pid` into every directory of the run.
    pub fn attach(&self, pid: libc::pid_t) -> io::Result<()> {
        for (_, dir) in &self.dirs {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    pub fn stats(&self) -> CgroupStats {
        let mut stats = CgroupStats::default();
        for (ctrl, dir) in &self.dirs {
            let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
            let counter = |text: &str, key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse::<u64>().unwrap_or(0)))
                    .unwrap_or(0)
            };
            if ctrl.is_empty() || ctrl == "pids" {
                stats.pids_limit_hits += counter(&read("pids.events"), "max ");
            }
            if ctrl.is_empty() {
                stats.oom_kills += counter(&read("memory.events"), "oom_kill ");
                stats.memory_peak = read("memory.peak").trim().parse().ok();
            } else if ctrl == "memory" {
                stats.oom_kills += counter(&read("memory.oom_control"), "oom_kill ");
                stats.memory_peak = read("memory.max_usage_in_bytes").trim().parse().ok();
            }
        }
        stats
    }
}

/// Removes cgroup directories, waiting briefly for exiting processes to leave them.
pub fn remove_dirs<'a>(dirs: impl Iterator<Item = &'a Path> + Clone) {
    for attempt in 0..200 {
        let mut left = false;
        for dir in dirs.clone() {
            if dir.exists() && fs::remove_dir(dir).is_err() {
                left = true;
            }
        }
        if !left {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(if attempt < 20 { 1 } else { 25 }));
    }
}

/// Makes `parent`'s controllers available to its children. A cgroup that holds processes
/// can't do that (cgroup v2's no-internal-processes rule) unless it is the root; when
/// ringfence is alone in it, as in a fresh delegated scope, it moves itself into a leaf first.
fn enable_v2_controllers(parent: &Path, needed: &[&str]) -> io::Result<()> {
    let request = needed.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
    let control = parent.join("cgroup.subtree_control");
    match fs::write(&control, &request) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() != Some(libc::EBUSY) => return Err(e),
        Err(_) => {}
    }
    let procs = fs::read_to_string(parent.join("cgroup.procs"))?;
    let me = std::process::id().to_string();
    if procs.lines().any(|p| p.trim() != me) {
        return Err(io::Error::other(format!(
            "{} holds other processes, so its controllers can't be handed to a child cgroup",
            parent.display()
        )));
    }
    let leaf = parent.join("ringfence-supervisor");
    let _ = fs::create_dir(&leaf);
    fs::write(leaf.join("cgroup.procs"), &me)?;
    fs::write(&control, &request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_policy::{ByteSize, Limits};

    fn limits() -> Limits {
        Limits {
            timeout: None,
            memory: Some(ByteSize(64 << 20)),
            pids: Some(50),
            pids_explicit: true,
            cpus: Some(1.5),
            tmp_size: ByteSize(1 << 20),
        }
    }

    /// A cgroup v2 directory stand-in: the control files are plain files, so the writes land
    /// where the kernel would read them.
    #[test]
    fn v2_limits_are_written_to_the_run_cgroup() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/cgroup-v2-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        fs::write(base.join("cgroup.subtree_control"), "").unwrap();
        let probe = CgroupProbe {
            v2_dir: Some(base.clone()),
            v2_controllers: vec!["pids".into(), "memory".into(), "cpu".into()],
            v2_writable: true,
            ..Default::default()
        };
        let needed = needed_controllers(&limits(), false);
        assert_eq!(probe.mechanism(&needed).0, LimitMechanism::CgroupV2);
        let dirs = RunCgroup::planned(&probe, &LimitMechanism::CgroupV2, &needed, "run");
        let cg = RunCgroup::create(LimitMechanism::CgroupV2, dirs, &probe, &limits()).unwrap();
        let read = |f: &str| fs::read_to_string(base.join("run").join(f)).unwrap();
        assert_eq!(fs::read_to_string(base.join("cgroup.subtree_control")).unwrap(), "+pids +memory +cpu");
        assert_eq!(read("pids.max"), "50");
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "150000 100000");
        fs::write(base.join("run/pids.events"), "max 3\n").unwrap();
        fs::write(base.join("run/memory.events"), "low 0\noom_kill 1\n").unwrap();
        let stats = cg.stats();
        assert_eq!((stats.pids_limit_hits, stats.oom_kills), (3, 1));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_mechanism_falls_back_and_says_why() {
        let probe = CgroupProbe { v2_dir: Some("/sys/fs/cgroup/x".into()), root: false, ..Default::default() };
        let (mech, why) = probe.mechanism(&["pids"]);
        assert_eq!(mech, LimitMechanism::Rlimit);
        assert!(why.unwrap().contains("not delegated"));
        let root = CgroupProbe { root: true, v1_dirs: vec![("pids".into(), "/sys/fs/cgroup/pids".into())], ..probe };
        assert_eq!(root.mechanism(&["pids"]).0, LimitMechanism::CgroupV1);
    }
}
