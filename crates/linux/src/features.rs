//! What this kernel and machine offer, found without changing anything.

use crate::cgroup::{CgroupProbe, LimitMechanism};
pub use crate::host::{kernel_at_least, kernel_release, physical_memory, userns_remedy};
use crate::sys;
use std::fs;

/// One line of `ringfence check`.
#[derive(Clone, Debug)]
pub struct FeatureReport {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
    /// What to do for more protection, when there is something to do.
    pub remedy: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Features {
    pub kernel: String,
    pub userns: Result<(), String>,
    pub apparmor_userns_restricted: bool,
    pub landlock_abi: i32,
    pub seccomp: bool,
    pub seccomp_user_notif: bool,
    /// Whether connect(2) can be supervised (see `notify::probe`); the error names what is
    /// missing.
    pub unix_socket_guard: Result<(), String>,
    /// Whether execs can be supervised (see `notify::probe_exec`), or what is missing.
    pub exec_monitor: Result<(), String>,
    /// Whether cache overlays can be mounted (overlayfs in a user namespace), or why not.
    pub overlayfs: Result<(), String>,
    pub tun: bool,
    pub cgroups: CgroupProbe,
}

/// The Landlock ABI the kernel offers (0 without Landlock); one cheap system call.
pub fn landlock_abi() -> i32 {
    sys::landlock_abi()
}

/// Whether connect(2) to Unix sockets can be supervised here; the error names what is missing.
pub fn unix_socket_guard() -> Result<(), String> {
    crate::notify::probe()
}

impl Features {
    pub fn probe() -> Self {
        let kernel = kernel_release();
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        Features {
            kernel,
            userns: probe_userns(),
            apparmor_userns_restricted: crate::host::apparmor_restricts_userns(),
            landlock_abi: sys::landlock_abi(),
            seccomp: status.lines().any(|l| l.starts_with("Seccomp:")),
            seccomp_user_notif: sys::seccomp_user_notif(),
            unix_socket_guard: unix_socket_guard(),
            exec_monitor: crate::notify::probe_exec(),
            overlayfs: crate::caches::supported(&kernel_release()),
            tun: std::path::Path::new("/dev/net/tun").exists(),
            cgroups: CgroupProbe::detect(),
        }
    }

    /// The lines of `ringfence check`.
    pub fn report(&self) -> Vec<FeatureReport> {
        let mut out = vec![
            self.userns_line(),
            self.landlock_line(),
            self.seccomp_line(),
            self.unix_socket_line(),
            self.exec_monitor_line(),
        ];
        for (limit, controller) in [("pids limit", "pids"), ("memory limit", "memory"), ("cpu limit", "cpu")] {
            out.push(self.limit_line(limit, controller));
        }
        out.push(self.cache_overlay_line());
        out.push(self.tun_line());
        out
    }

    fn userns_line(&self) -> FeatureReport {
        FeatureReport {
            name: "user namespaces",
            available: self.userns.is_ok(),
            detail: match &self.userns {
                Ok(()) if self.apparmor_userns_restricted => {
                    "available (AppArmor restriction is on, but this binary may create them)".into()
                }
                Ok(()) => "available: the mount view, pid, net, ipc and uts isolation".into(),
                Err(e) => format!("refused: {e}"),
            },
            remedy: self.userns.is_err().then(userns_remedy),
        }
    }

    fn landlock_line(&self) -> FeatureReport {
        FeatureReport {
            name: "Landlock",
            available: self.landlock_abi > 0,
            detail: match self.landlock_abi {
                0 => "not available: the filesystem has one layer (the mount view) instead of two".into(),
                abi if abi < 6 => format!("ABI {abi}: second filesystem layer; no signal or abstract-socket scoping (namespaces still isolate those)"),
                abi => format!("ABI {abi}: second filesystem layer, signal and abstract-socket scoping"),
            },
            remedy: match self.landlock_abi {
                0 => Some("boot with `lsm=landlock,...` (Linux 5.13+), or pass --allow-degraded".into()),
                abi if abi < 6 => Some("Linux 6.12+ adds signal and abstract-socket scoping".into()),
                _ => None,
            },
        }
    }

    fn seccomp_line(&self) -> FeatureReport {
        FeatureReport {
            name: "seccomp",
            available: self.seccomp,
            detail: if self.seccomp {
                format!(
                    "filter available{}",
                    if self.seccomp_user_notif { ", with user notification" } else { "; no user notification" }
                )
            } else {
                "not available: escalation system calls can't be refused".into()
            },
            remedy: (!self.seccomp).then(|| "use a kernel built with CONFIG_SECCOMP_FILTER".into()),
        }
    }

    fn unix_socket_line(&self) -> FeatureReport {
        FeatureReport {
            name: "unix sockets",
            available: self.unix_socket_guard.is_ok(),
            detail: match &self.unix_socket_guard {
                Ok(()) => "connect(2) supervised: only sockets bound inside the sandbox, whenever bound".into(),
                Err(missing) => format!("{missing}: sockets bound after the launch can't be refused"),
            },
            remedy: self
                .unix_socket_guard
                .is_err()
                .then(|| "use Linux 5.8+ with CONFIG_UNIX_DIAG, or pass --allow-degraded".into()),
        }
    }

    fn exec_monitor_line(&self) -> FeatureReport {
        FeatureReport {
            name: "exec monitor",
            available: self.exec_monitor.is_ok(),
            detail: match &self.exec_monitor {
                Ok(()) => "every exec checked against the exec rules and recorded before it runs".into(),
                Err(missing) => format!("{missing}: only the command itself is recorded, and exec rules refuse to run"),
            },
            remedy: self.exec_monitor.is_err().then(|| "use Linux 5.6+ with seccomp user notification".into()),
        }
    }

    /// The line of one limit (`controller` is its cgroup controller): how this machine
    /// enforces it, and how to get a cgroup v2 where it can't.
    fn limit_line(&self, limit: &'static str, controller: &str) -> FeatureReport {
        let (mech, why) = self.cgroups.mechanism(&[controller]);
        let (available, detail) = match mech {
            LimitMechanism::CgroupV2 => (true, "cgroup v2 (delegated)".to_string()),
            LimitMechanism::CgroupV1 => (true, "cgroup v1 (as root)".to_string()),
            LimitMechanism::Rlimit => self.limit_without_cgroup(controller),
        };
        let pid_max = kernel_at_least(&self.kernel, 6, 14);
        let detail = match controller {
            "pids" if pid_max && mech == LimitMechanism::Rlimit => {
                format!("default cap: the pid namespace's pid_max; --pids N: {detail}")
            }
            "pids" if pid_max => {
                format!("{detail}; the default cap too when the run has a memory cap, else the pid namespace's pid_max")
            }
            "memory" if available => format!("{detail}; {}", default_memory_cap(&mech)),
            _ => detail,
        };
        FeatureReport {
            name: limit,
            available,
            detail,
            remedy: (mech != LimitMechanism::CgroupV2).then(|| {
                format!(
                    "{}; for cgroup v2 limits run `systemd-run --user --scope -p Delegate=yes ringfence run …`",
                    why.unwrap_or_default()
                )
            }),
        }
    }

    /// Whether a limit holds without a cgroup, and how.
    fn limit_without_cgroup(&self, controller: &str) -> (bool, String) {
        match controller {
            "memory" => (
                false,
                "NO MEMORY CAP by default (the default cap needs a writable cgroup); --memory SIZE is refused \
                 unless --allow-degraded, which applies only RLIMIT_AS per process"
                    .to_string(),
            ),
            "pids" if self.cgroups.root => {
                (kernel_at_least(&self.kernel, 6, 14), "rlimit, which the kernel does not apply to uid 0".to_string())
            }
            "pids" => (true, "rlimit (RLIMIT_NPROC, per sandbox user namespace)".to_string()),
            _ => (true, "CPU affinity (whole cores)".to_string()),
        }
    }

    fn cache_overlay_line(&self) -> FeatureReport {
        FeatureReport {
            name: "cache overlays",
            available: self.overlayfs.is_ok(),
            detail: match &self.overlayfs {
                Ok(()) => "overlayfs in a user namespace: --cache and the registry presets share caches safely".into(),
                Err(why) => format!("{why}: a run that shares a cache is refused unless --allow-degraded"),
            },
            remedy: self.overlayfs.is_err().then(|| "Linux 5.11+ with the overlay module (`modprobe overlay`)".into()),
        }
    }

    fn tun_line(&self) -> FeatureReport {
        FeatureReport {
            name: "TUN",
            available: self.tun,
            detail: if self.tun {
                "/dev/net/tun present (informational: the transparent network path needs none)".into()
            } else {
                "no /dev/net/tun".into()
            },
            remedy: (!self.tun).then(|| "load the tun module (`modprobe tun`)".into()),
        }
    }
}

/// The default memory cap on this machine and how it is enforced, for `ringfence check`.
fn default_memory_cap(mechanism: &LimitMechanism) -> String {
    let Some(total) = physical_memory() else {
        return "no default cap (the machine's memory size is unknown)".into();
    };
    let cap = ringfence_policy::default_memory_cap(ringfence_policy::ByteSize(total));
    let sockets = match mechanism {
        LimitMechanism::CgroupV1 => format!(
            ", of which {} for TCP and UDP socket buffers",
            ringfence_policy::ByteSize(crate::cgroup::socket_buffer_share(cap.0))
        ),
        _ => ", socket buffers included".into(),
    };
    format!("default cap {cap} (half of physical memory){sockets}; --memory none removes it")
}

/// Creates (and discards) a user and mount namespace in a short-lived child and mounts a
/// tmpfs there: AppArmor's restriction lets the namespace be created but denies the mount.
fn probe_userns() -> Result<(), String> {
    // SAFETY: the child takes no lock: it makes two mount calls (short paths, converted on
    // the stack) and exits.
    match unsafe { sys::clone_process(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } {
        Ok(0) => {
            let private = nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            );
            let tmpfs =
                nix::mount::mount(Some("tmpfs"), "/tmp", Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>);
            sys::exit_now(if private.is_ok() && tmpfs.is_ok() { 0 } else { 1 })
        }
        Ok(pid) => match sys::wait4(pid) {
            Ok((status, _)) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => Ok(()),
            _ => Err("a user namespace was created, but mounting inside it was denied".into()),
        },
        Err(e) => Err(e.to_string()),
    }
}
