//! Resource limits: a delegated cgroup v2, cgroup v1 as root, or rlimits, in that order.

use nix::fcntl::OFlag;
use ringfence_policy::{ByteSize, Limits};
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
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

/// The share of a cgroup v1 memory cap set aside for socket buffers: cap/8, at most 256 MiB.
/// cgroup v1 charges TCP and UDP buffers only to `memory.kmem.tcp`, a counter of its own
/// beside `memory.limit_in_bytes`, and only once that has a limit; so the share is carved out
/// of the cap. The kernel throttles sockets at half the share, and charges past that limit
/// when it must (each socket's first buffers are forced through, so that every connection can
/// make progress); a [`SocketGuard`] ends a run whose socket buffers outgrow the whole share.
pub fn socket_buffer_share(cap: u64) -> u64 {
    (cap / 8).min(256 << 20)
}

/// How often a [`SocketGuard`] looks; about how long socket buffers may outgrow their share.
pub const SOCKET_GUARD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// Ends a cgroup v1 run whose socket buffers outgrow their share of the memory cap (see
/// [`socket_buffer_share`]): with `memory.limit_in_bytes`, that keeps the run within its cap.
#[derive(Debug)]
pub struct SocketGuard {
    usage: fs::File,
    pub bound: u64,
}

impl SocketGuard {
    /// Whether the run's socket buffers are past their share (or can no longer be read).
    pub fn exceeded(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 32];
        let read = self.usage.read_at(&mut buf, 0).unwrap_or(0);
        let usage = std::str::from_utf8(&buf[..read]).ok().and_then(|t| t.trim().parse::<u64>().ok());
        usage.is_none_or(|u| u > self.bound)
    }
}

/// How a run's limits are enforced: which cgroup controllers carry what, and what stands in
/// for the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitPlan {
    pub mechanism: LimitMechanism,
    /// The controllers the run's limits need: the cgroup's, unless `mechanism` is rlimits.
    pub controllers: Vec<&'static str>,
    /// Why a stronger mechanism is not used, when it is not.
    pub why: Option<String>,
    /// The pid namespace's pid_max, when it carries the default process cap.
    pub pid_max: Option<u64>,
    /// The memory cap in force (by the cgroup, or by RLIMIT_AS for an explicit limit).
    pub memory: Option<u64>,
    /// Why the default memory cap is not in force: no cgroup can carry it.
    pub no_default_memory: Option<String>,
}

impl LimitPlan {
    /// Plans `limits` for what `probe` found. The default memory cap needs a cgroup; without
    /// one the run goes without (RLIMIT_AS at half of memory per process would break programs
    /// that reserve address space and cap nothing that matters), and says so. Explicit limits
    /// keep their fallbacks.
    pub fn new(limits: &Limits, kernel: &str, probe: &CgroupProbe) -> LimitPlan {
        let mut memory = limits.memory.map(|m| m.0);
        let mut no_default_memory = None;
        if memory.is_some() && !limits.memory_explicit {
            if let (LimitMechanism::Rlimit, why) = probe.mechanism(&["memory"]) {
                no_default_memory = Some(why.unwrap_or_else(|| "no cgroup is mounted".into()));
                memory = None;
            }
        }
        let mut controllers = Vec::new();
        if memory.is_some() {
            controllers.push("memory");
        }
        if limits.cpus.is_some() {
            controllers.push("cpu");
        }
        // The default process cap is exact in a cgroup the run has anyway (a pids hierarchy
        // adds about 0.05 ms), and the pid namespace's pid_max where it has none.
        let mut pid_max = pid_namespace_cap(limits, kernel);
        if limits.pids.is_some() {
            let anyway = probe.mechanism(&controllers).0;
            let with_pids: Vec<&str> = std::iter::once("pids").chain(controllers.iter().copied()).collect();
            let joins =
                !controllers.is_empty() && anyway != LimitMechanism::Rlimit && probe.mechanism(&with_pids).0 == anyway;
            if pid_max.is_none() || joins {
                controllers.insert(0, "pids");
                pid_max = None;
            }
        }
        let (mechanism, why) = probe.mechanism(&controllers);
        LimitPlan { mechanism, controllers, why, pid_max, memory, no_default_memory }
    }

    /// Whether the run's cgroup carries this controller's limit.
    pub fn carries(&self, controller: &str) -> bool {
        self.mechanism != LimitMechanism::Rlimit && self.controllers.contains(&controller)
    }

    /// How the memory cap is enforced, for `explain`; None without a cap.
    pub fn memory_mechanism(&self) -> Option<String> {
        let cap = self.memory?;
        Some(match self.mechanism {
            LimitMechanism::CgroupV1 => {
                let share = socket_buffer_share(cap);
                format!(
                    "cgroup v1, {} of it for TCP and UDP socket buffers (throttled at {}, the run ended past {})",
                    ByteSize(share),
                    ByteSize(share / 2),
                    ByteSize(share)
                )
            }
            LimitMechanism::CgroupV2 => "cgroup v2 memory.max, socket buffers included".into(),
            LimitMechanism::Rlimit => "RLIMIT_AS per process".into(),
        })
    }

    /// The memory cap, where it comes from and how it is enforced, for `run.start`.
    pub fn memory_detail(&self, limits: &Limits) -> Option<String> {
        Some(format!("{}{}: {}", ByteSize(self.memory?), memory_origin(limits), self.memory_mechanism()?))
    }

    /// Why there is no memory cap at all although the default asks for one.
    pub fn no_memory_detail(&self, limits: &Limits) -> Option<String> {
        let why = self.no_default_memory.as_ref()?;
        let cap = limits.memory.map(|m| format!(", {m}")).unwrap_or_default();
        Some(format!(
            "the default cap (half of physical memory{cap}) needs a writable cgroup, and {why}; {CGROUP_REMEDY}"
        ))
    }
}

/// Where a memory cap comes from, when it is the default: " (default: half of physical memory)".
pub fn memory_origin(limits: &Limits) -> &'static str {
    if limits.memory_explicit {
        ""
    } else {
        " (default: half of physical memory)"
    }
}

/// How to get a cgroup where there is none.
pub const CGROUP_REMEDY: &str = "for one, run as root on a cgroup v1 host, or in a delegated cgroup v2: \
     `systemd-run --user --scope -p Delegate=yes ringfence run …` (see `ringfence check`)";

/// Whether any limit needs the cgroup hierarchy probed (it costs a little on every launch).
pub fn wants_cgroup(limits: &Limits, kernel: &str) -> bool {
    limits.memory.is_some()
        || limits.cpus.is_some()
        || (limits.pids.is_some() && pid_namespace_cap(limits, kernel).is_none())
}

/// Without a cgroup, the default process cap can be the pid namespace's own pid_max (Linux
/// 6.14+). Pids are handed out in order and wrap to 300, so the cap is N concurrent tasks
/// until the numbers wrap and about N-300 after; exact enough for a fork-bomb guard, so
/// explicit limits still use a cgroup or RLIMIT_NPROC.
fn pid_namespace_cap(limits: &Limits, kernel: &str) -> Option<u64> {
    let pids = limits.pids?;
    let eligible = !limits.pids_explicit && pids + 1 >= PID_MAX_MIN && crate::host::kernel_at_least(kernel, 6, 14);
    eligible.then_some(pids + 1)
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

/// Descriptors, opened before the clone, through which the sandbox's init joins its cgroup.
/// The kernel checks a cgroup file's writer against the credentials of whoever opened it.
#[derive(Debug, Default)]
pub struct CgroupJoin {
    /// cgroup v2: the directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub directory: Option<OwnedFd>,
    /// cgroup v1: each hierarchy's `tasks` file, to which init writes "0" (itself): moving
    /// one thread that is the writer itself skips the global lock whose every write waits for
    /// an RCU grace period. cgroup v2: `cgroup.procs`, in case `clone3` is unavailable.
    pub files: Vec<(OwnedFd, PathBuf)>,
}

impl RunCgroup {
    /// The directories this run will use, before they exist (so the cleaner knows them).
    pub fn planned(probe: &CgroupProbe, plan: &LimitPlan, name: &str) -> Vec<(String, PathBuf)> {
        match plan.mechanism {
            LimitMechanism::CgroupV2 => probe.v2_dir.iter().map(|d| (String::new(), d.join(name))).collect(),
            LimitMechanism::CgroupV1 => {
                probe.v1_dirs.iter().filter(|(c, _)| plan.carries(c)).map(|(c, d)| (c.clone(), d.join(name))).collect()
            }
            LimitMechanism::Rlimit => Vec::new(),
        }
    }

    /// Creates the directories and writes the limits.
    pub fn create(
        dirs: Vec<(String, PathBuf)>,
        probe: &CgroupProbe,
        plan: &LimitPlan,
        limits: &Limits,
    ) -> io::Result<Self> {
        let cg = RunCgroup { mechanism: plan.mechanism.clone(), dirs };
        if cg.mechanism == LimitMechanism::CgroupV2 {
            let parent = probe.v2_dir.as_ref().ok_or_else(|| io::Error::other("no cgroup2"))?;
            enable_v2_controllers(parent, &plan.controllers)?;
        }
        for (ctrl, dir) in &cg.dirs {
            fs::create_dir(dir)?;
            let write = |file: &str, value: u64| {
                fs::write(dir.join(file), value.to_string())
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
            };
            let v2 = ctrl.is_empty();
            match (plan.carries("pids"), limits.pids) {
                (true, Some(pids)) if v2 || ctrl == "pids" => write("pids.max", pids)?,
                _ => {}
            }
            match plan.memory {
                Some(cap) if v2 => {
                    write("memory.max", cap)?;
                    let _ = write("memory.swap.max", 0);
                }
                Some(cap) if ctrl == "memory" => {
                    let sockets = socket_buffer_share(cap);
                    write("memory.limit_in_bytes", cap - sockets)?;
                    let _ = write("memory.memsw.limit_in_bytes", cap - sockets);
                    write("memory.kmem.tcp.limit_in_bytes", sockets / 2)?;
                }
                _ => {}
            }
            if let Some(cpus) = limits.cpus {
                let period = 100_000u64;
                let quota = ((cpus * period as f64) as u64).max(1000);
                if v2 {
                    fs::write(dir.join("cpu.max"), format!("{quota} {period}"))?;
                } else if ctrl == "cpu" {
                    write("cpu.cfs_period_us", period)?;
                    write("cpu.cfs_quota_us", quota)?;
                }
            }
        }
        Ok(cg)
    }

    /// The guard over a cgroup v1 memory cap's socket buffers.
    pub fn socket_guard(&self, plan: &LimitPlan) -> io::Result<Option<SocketGuard>> {
        let Some(cap) = plan.memory else { return Ok(None) };
        let Some((_, dir)) = self.dirs.iter().find(|(c, _)| c == "memory") else { return Ok(None) };
        let path = dir.join("memory.kmem.tcp.usage_in_bytes");
        let usage = fs::File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Some(SocketGuard { usage, bound: socket_buffer_share(cap) }))
    }

    /// Opens what the sandbox's init needs to join this cgroup (see [`CgroupJoin`]).
    pub fn open_join(&self) -> io::Result<CgroupJoin> {
        let open = |path: PathBuf, flags: OFlag| {
            nix::fcntl::open(&path, flags | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display())))
                .map(|fd| (fd, path))
        };
        let mut join = CgroupJoin::default();
        for (_, dir) in &self.dirs {
            if self.mechanism == LimitMechanism::CgroupV2 {
                join.directory = Some(open(dir.clone(), OFlag::O_PATH | OFlag::O_DIRECTORY)?.0);
                join.files.push(open(dir.join("cgroup.procs"), OFlag::O_WRONLY)?);
            } else {
                join.files.push(open(dir.join("tasks"), OFlag::O_WRONLY)?);
            }
        }
        Ok(join)
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

    fn limits() -> Limits {
        Limits {
            timeout: None,
            memory: Some(ByteSize(64 << 20)),
            memory_explicit: true,
            pids: Some(50),
            pids_explicit: true,
            cpus: Some(1.5),
            tmp_size: ByteSize(1 << 20),
        }
    }

    /// A scratch folder standing in for a cgroup directory: the control files are plain files,
    /// so the writes land where the kernel would read them.
    fn stand_in(tag: &str) -> PathBuf {
        let base =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/cgroup-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        base
    }

    #[test]
    fn v2_limits_are_written_to_the_run_cgroup() {
        let base = stand_in("v2");
        fs::write(base.join("cgroup.subtree_control"), "").unwrap();
        let probe = CgroupProbe {
            v2_dir: Some(base.clone()),
            v2_controllers: vec!["pids".into(), "memory".into(), "cpu".into()],
            v2_writable: true,
            ..Default::default()
        };
        let plan = LimitPlan::new(&limits(), "6.18.0", &probe);
        assert_eq!(
            (&plan.mechanism, plan.controllers.as_slice()),
            (&LimitMechanism::CgroupV2, &["pids", "memory", "cpu"][..])
        );
        let dirs = RunCgroup::planned(&probe, &plan, "run");
        let cg = RunCgroup::create(dirs, &probe, &plan, &limits()).unwrap();
        let read = |f: &str| fs::read_to_string(base.join("run").join(f)).unwrap();
        assert_eq!(fs::read_to_string(base.join("cgroup.subtree_control")).unwrap(), "+pids +memory +cpu");
        assert_eq!(read("pids.max"), "50");
        // cgroup v2 charges socket buffers to memory.current: nothing is carved out.
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "150000 100000");
        fs::write(base.join("run/pids.events"), "max 3\n").unwrap();
        fs::write(base.join("run/memory.events"), "low 0\noom_kill 1\n").unwrap();
        let stats = cg.stats();
        assert_eq!((stats.pids_limit_hits, stats.oom_kills), (3, 1));
        fs::remove_dir_all(&base).unwrap();
    }

    /// cgroup v1 keeps socket buffers on a counter of their own: their share is carved out of
    /// the cap, so both limits together are the cap.
    #[test]
    fn v1_memory_cap_includes_socket_buffers() {
        let base = stand_in("v1");
        let probe = CgroupProbe { v1_dirs: vec![("memory".into(), base.clone())], root: true, ..Default::default() };
        let limits = Limits { pids: None, cpus: None, ..limits() };
        let plan = LimitPlan::new(&limits, "6.18.0", &probe);
        assert_eq!((&plan.mechanism, plan.controllers.as_slice()), (&LimitMechanism::CgroupV1, &["memory"][..]));
        let cg = RunCgroup::create(RunCgroup::planned(&probe, &plan, "run"), &probe, &plan, &limits).unwrap();
        fs::write(base.join("run/memory.kmem.tcp.usage_in_bytes"), "0\n").unwrap();
        let guard = cg.socket_guard(&plan).unwrap().unwrap();
        for (usage, exceeded) in [("7000000\n", false), ("9000000\n", true), ("", true)] {
            fs::write(base.join("run/memory.kmem.tcp.usage_in_bytes"), usage).unwrap();
            assert_eq!(guard.exceeded(), exceeded, "{usage:?}");
        }
        let read = |f: &str| fs::read_to_string(base.join("run").join(f)).unwrap().parse::<u64>().unwrap();
        assert_eq!(read("memory.kmem.tcp.limit_in_bytes"), 4 << 20);
        assert_eq!(read("memory.limit_in_bytes"), 56 << 20);
        assert_eq!(read("memory.memsw.limit_in_bytes"), read("memory.limit_in_bytes"));
        assert_eq!(socket_buffer_share(16 << 30), 256 << 20);
        fs::remove_dir_all(&base).unwrap();
    }

    /// The default memory cap needs a cgroup: without one it is dropped (and why is kept),
    /// while an explicit cap falls back to RLIMIT_AS. The default process cap takes pid_max
    /// where the kernel has it.
    #[test]
    fn the_default_memory_cap_needs_a_cgroup() {
        let nobody = CgroupProbe { v2_dir: Some("/sys/fs/cgroup/x".into()), ..Default::default() };
        let default = Limits { memory_explicit: false, pids_explicit: false, pids: Some(4096), cpus: None, ..limits() };
        let plan = LimitPlan::new(&default, "6.18.0", &nobody);
        assert_eq!((plan.memory, plan.pid_max, plan.mechanism.clone()), (None, Some(4097), LimitMechanism::Rlimit));
        assert!(plan.no_default_memory.unwrap().contains("not delegated"));
        let plan = LimitPlan::new(&Limits { memory_explicit: true, ..default.clone() }, "6.18.0", &nobody);
        assert_eq!((plan.memory, plan.no_default_memory), (Some(64 << 20), None));
        let memory_only = vec![("memory".into(), "/sys/fs/cgroup/memory".into())];
        let root = CgroupProbe { root: true, v1_dirs: memory_only, ..nobody };
        let plan = LimitPlan::new(&default, "6.18.0", &root);
        assert_eq!((plan.memory, plan.pid_max, plan.mechanism), (Some(64 << 20), Some(4097), LimitMechanism::CgroupV1));
        assert_eq!(LimitPlan::new(&default, "6.13.0", &root).pid_max, None);
        // With a pids hierarchy beside the memory one, the cgroup carries the exact cap.
        let pids = ("pids".to_string(), PathBuf::from("/sys/fs/cgroup/pids"));
        let both = CgroupProbe { v1_dirs: [root.v1_dirs.clone(), vec![pids]].concat(), ..root };
        let plan = LimitPlan::new(&default, "6.18.0", &both);
        assert_eq!((plan.pid_max, plan.controllers), (None, vec!["pids", "memory"]));
        let none = Limits { memory: None, memory_explicit: true, ..default };
        assert_eq!(LimitPlan::new(&none, "6.18.0", &both).pid_max, Some(4097), "no cgroup for the cap alone");
    }

    /// A child started in a cgroup v2 directory: by `clone3(CLONE_INTO_CGROUP)`, or, as where
    /// the kernel lacks that, by a fork that writes "0" to `cgroup.procs` opened before it.
    /// Needs root and a cgroup2 mount (the machine these tests were written on has an empty one
    /// at /sys/fs/cgroup/unified, enough for this; its controllers live in cgroup v1).
    #[test]
    fn children_start_in_their_cgroup() {
        use std::os::fd::{AsFd, AsRawFd};
        let Some(v2) = CgroupProbe::detect().v2_dir.filter(|d| d.join("cgroup.procs").exists()) else {
            return eprintln!("no cgroup2 mount: skipped");
        };
        if !nix::unistd::geteuid().is_root() {
            return eprintln!("not root: skipped");
        }
        let dir = v2.join(format!("ringfence-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let cg = RunCgroup { mechanism: LimitMechanism::CgroupV2, dirs: vec![(String::new(), dir.clone())] };
        let join = cg.open_join().unwrap();
        // Each child only waits (pause is async-signal-safe; this test process has threads).
        let wait_here = |pid: libc::pid_t| {
            if pid == 0 {
                loop {
                    // SAFETY: pause() takes no arguments and touches no memory; the parent kills us.
                    unsafe { libc::pause() };
                }
            }
            pid
        };
        let directory = join.directory.as_ref().unwrap().as_fd();
        // SAFETY: each child only pauses, taking no lock (this test process has threads).
        let born = wait_here(unsafe { crate::sys::clone_into_cgroup(0, directory) }.unwrap());
        // SAFETY: as above; the child writes to a descriptor and pauses.
        let joined = match unsafe { crate::sys::fork_process() }.unwrap() {
            0 => {
                let _ = crate::sys::write_fd(join.files[0].0.as_raw_fd(), b"0");
                wait_here(0)
            }
            pid => pid,
        };
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for pid in [born, joined] {
            let inside = || fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap().trim_end().ends_with(&name);
            let start = std::time::Instant::now();
            while !inside() && start.elapsed() < std::time::Duration::from_secs(5) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let seen = inside();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            crate::sys::wait4(pid).unwrap();
            assert!(seen, "child {pid} never showed up in {}", dir.display());
        }
        remove_dirs(std::iter::once(dir.as_path()));
        assert!(!dir.exists());
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
