//! The system services and kernel variables a sandboxed command may use, each with the reason.
//! Everything not listed here is refused: in particular the keychain (`securityd`), the
//! pasteboard, Apple Events and Launch Services (`open`), launchd jobs, the window server,
//! notifications, FSEvents, the DNS resolver (`mDNSResponder`: only the gateway resolves) and
//! the certificate daemon `trustd` (it fetches URLs named in certificates itself).

/// Mach services every run may look up, and why.
pub const MACH_SERVICES: &[(&str, &str)] = &[
    (
        "com.apple.system.opendirectoryd.libinfo",
        "user and group lookups (getpwuid, getgrgid): shells, git, ssh and Python's pwd need the home folder and user name",
    ),
    (
        "com.apple.system.opendirectoryd.membership",
        "group membership checks (mbr_*, getgrouplist) that libSystem makes on behalf of file and user lookups",
    ),
    (
        "com.apple.bsd.dirhelper",
        "confstr(_CS_DARWIN_USER_TEMP_DIR/CACHE_DIR): clang, swift and xcrun ask it where their per-user folders are",
    ),
    ("com.apple.oahd", "Rosetta: running Intel binaries on Apple silicon"),
];

/// Mach services added only with `--network host`, where the network is unfiltered anyway.
pub const HOST_NETWORK_SERVICES: &[(&str, &str)] = &[
    ("com.apple.dnssd.service", "name resolution (mDNSResponder)"),
    ("com.apple.trustd.agent", "certificate verification for programs using the system's TLS (Go, Swift, curl)"),
    ("com.apple.SystemConfiguration.configd", "network configuration and reachability"),
];

/// Kernel variables the command may read: hardware and OS identity that runtimes query at
/// start (CPU count and features for thread pools and code generation, page size, memory size,
/// OS version). None names another process or user.
pub const SYSCTLS: &[&str] = &[
    "hw.activecpu",
    "hw.busfrequency_compat",
    "hw.byteorder",
    "hw.cacheconfig",
    "hw.cachelinesize",
    "hw.cachelinesize_compat",
    "hw.cpufamily",
    "hw.cpufrequency",
    "hw.cpufrequency_compat",
    "hw.cputype",
    "hw.cpusubtype",
    "hw.l1dcachesize",
    "hw.l1dcachesize_compat",
    "hw.l1icachesize",
    "hw.l1icachesize_compat",
    "hw.l2cachesize",
    "hw.l2cachesize_compat",
    "hw.l3cachesize_compat",
    "hw.logicalcpu",
    "hw.logicalcpu_max",
    "hw.machine",
    "hw.memsize",
    "hw.model",
    "hw.ncpu",
    "hw.nperflevels",
    "hw.packages",
    "hw.pagesize",
    "hw.pagesize_compat",
    "hw.physicalcpu",
    "hw.physicalcpu_max",
    "hw.tbfrequency",
    "hw.tbfrequency_compat",
    "hw.vectorunit",
    "kern.argmax",
    "kern.boottime",
    "kern.hostname",
    "kern.maxfiles",
    "kern.maxfilesperproc",
    "kern.maxproc",
    "kern.maxprocperuid",
    "kern.ngroups",
    "kern.osproductversion",
    "kern.osrelease",
    "kern.ostype",
    "kern.osvariant_status",
    "kern.osversion",
    "kern.secure_kernel",
    "kern.usrstack64",
    "kern.version",
    "machdep.cpu.brand_string",
    "sysctl.proc_cputype",
    "sysctl.proc_translated",
    "vm.loadavg",
];

/// Kernel variable prefixes the command may read (CPU feature flags and performance levels).
pub const SYSCTL_PREFIXES: &[&str] = &["hw.optional.", "hw.perflevel", "machdep.cpu."];

/// Kernel variables the command may write: `kern.grade_cputype` is a query that passes its
/// argument as a write (the JVM asks which CPU type a binary slice suits).
pub const SYSCTL_WRITES: &[&str] = &["kern.grade_cputype"];
