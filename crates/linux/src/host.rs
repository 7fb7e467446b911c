//! Facts about the running kernel and machine that several parts of the backend need, read
//! without changing anything: the kernel's release and what it implies, the machine's memory,
//! and the advice for a kernel that refuses user namespaces.

use std::fs;

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The running kernel's release, like "6.18.44".
pub fn kernel_release() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether a kernel release string ("6.18.44-foo") is at least `major.minor`.
pub fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// Physical memory in bytes (MemTotal of /proc/meminfo), for the default memory cap.
pub fn physical_memory() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().strip_suffix("kB")?.trim();
    kib.parse::<u64>().ok()?.checked_mul(1024)
}

/// Whether AppArmor restricts unprivileged user namespaces here (Ubuntu 23.10+).
pub fn apparmor_restricts_userns() -> bool {
    read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
}

/// The advice for a kernel that refuses user namespaces, for this machine.
pub fn userns_remedy() -> String {
    if apparmor_restricts_userns() {
        return "AppArmor restricts unprivileged user namespaces here (Ubuntu 23.10+): install the \
                profile from docs/linux.md (`sudo cp contrib/apparmor/ringfence /etc/apparmor.d/ && \
                sudo apparmor_parser -r /etc/apparmor.d/ringfence`), or set \
                kernel.apparmor_restrict_unprivileged_userns=0"
            .into();
    }
    if read_trimmed("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "enable them with `sudo sysctl kernel.unprivileged_userns_clone=1`".into();
    }
    if read_trimmed("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "raise the limit with `sudo sysctl user.max_user_namespaces=15000`".into();
    }
    "user namespaces are disabled in this kernel or container; enable CONFIG_USER_NS, or in a \
     container allow unshare/clone with CLONE_NEWUSER (seccomp profile)"
        .into()
}

/// How many threads this process has (the `num_threads` field of /proc/self/stat); None when
/// it can't be read.
pub fn thread_count() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(17)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-foo", 6, 14));
        assert!(kernel_at_least("5.11.0", 5, 11));
        assert!(!kernel_at_least("5.10.200", 5, 11));
        assert!(!kernel_at_least("", 5, 11));
    }
}
