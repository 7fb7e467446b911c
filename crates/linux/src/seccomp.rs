//! The seccomp filter: EPERM for the escalation surface, never a kill, so tools degrade politely.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Namespace-creating clone flags; clone with any of them is refused.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP
    | 0x80) as u64; // CLONE_NEWTIME

/// System calls refused outright, with the reason they are dangerous.
pub const DENIED: &[(&str, i64)] = &[
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("acct", libc::SYS_acct),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("syslog", libc::SYS_syslog),
    ("quotactl", libc::SYS_quotactl),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("vhangup", libc::SYS_vhangup),
    #[cfg(target_arch = "x86_64")]
    ("uselib", libc::SYS_uselib),
];

/// Refused unless the policy allows debuggers.
pub const PTRACE: &[(&str, i64)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("kcmp", libc::SYS_kcmp),
];

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).expect("argument index below 6")
}

fn rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conditions).expect("rule has a condition")
}

/// Socket families that reach past the network namespace (vsock talks to the hypervisor and to
/// virtual machines) or add kernel attack surface no build or test needs.
const DENIED_SOCKET_FAMILIES: &[libc::c_int] = &[
    libc::AF_VSOCK,
    libc::AF_KEY,
    libc::AF_TIPC,
    libc::AF_RDS,
    libc::AF_BLUETOOTH,
    libc::AF_CAN,
    libc::AF_LLC,
    libc::AF_NFC,
    libc::AF_ALG,
    libc::AF_X25,
    libc::AF_AX25,
    libc::AF_ATMPVC,
    libc::AF_APPLETALK,
];

/// What the filter refuses beyond its fixed list.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// ptrace and process_vm_* stay allowed (`--allow-ptrace`).
    pub allow_ptrace: bool,
    /// The CPU limit rests on affinity (no cgroup), so the sandbox may not widen it again.
    pub pin_cpus: bool,
    /// connect(2) traps to the supervisor (SECCOMP_RET_USER_NOTIF), and Unix datagram sockets,
    /// whose destinations the supervisor can't see, are refused.
    pub supervise_connect: bool,
    /// execve(2) and execveat(2) trap to the supervisor, which checks and records each exec.
    pub supervise_exec: bool,
}

/// fchmodat2 (Linux 6.6), not named by every libc crate version; the same number on x86_64 and
/// aarch64.
const SYS_FCHMODAT2: i64 = 452;

/// The bits that make a program run with its owner's or group's identity.
const SET_ID_BITS: [u64; 2] = [libc::S_ISUID as u64, libc::S_ISGID as u64];

/// System calls that give a file a mode, with the index of the mode argument. The kernel reads
/// the mode as a 16-bit `umode_t`, so comparing the low 32 bits covers every bit it uses.
const MODE_SETTERS: &[(i64, u8)] = &[
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_chmod, 1),
    (libc::SYS_fchmod, 1),
    (libc::SYS_fchmodat, 2),
    (SYS_FCHMODAT2, 2),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_creat, 1),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_mkdir, 1),
    (libc::SYS_mkdirat, 2),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_mknod, 1),
    (libc::SYS_mknodat, 2),
];

/// open and openat: (number, flags argument, mode argument). Their mode only counts when the
/// call creates a file, with O_CREAT or O_TMPFILE.
const OPENERS: &[(i64, u8, u8)] = &[
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_open, 1, 2),
    (libc::SYS_openat, 2, 3),
];

/// The flag bits that make open create a file (O_TMPFILE without its O_DIRECTORY part).
const CREATING_FLAGS: [u64; 2] = [libc::O_CREAT as u64, (libc::O_TMPFILE & !libc::O_DIRECTORY) as u64];

fn has_bit(arg: u8, bit: u64) -> SeccompCondition {
    cond(arg, SeccompCmpOp::MaskedEq(bit), bit)
}

/// Set-id bits can't be given to any file: a set-id program left in the workspace would run
/// with the caller's identity for whoever starts it later on the host.
fn set_id_rules(rules: &mut BTreeMap<i64, Vec<SeccompRule>>) {
    for (nr, mode) in MODE_SETTERS {
        rules.insert(*nr, SET_ID_BITS.iter().map(|bit| rule(vec![has_bit(*mode, *bit)])).collect());
    }
    for (nr, flags, mode) in OPENERS {
        let creating = CREATING_FLAGS.iter().flat_map(|flag| {
            SET_ID_BITS.iter().map(move |bit| rule(vec![has_bit(*flags, *flag), has_bit(*mode, *bit)]))
        });
        rules.insert(*nr, creating.collect());
    }
}

/// socket(2) rules: the families that reach past the network namespace, and, when connect is
/// supervised, Unix datagram sockets (SOCK_RAW is a datagram socket for AF_UNIX too): their
/// sendto/sendmsg destinations live in memory, where the supervisor can't check them.
fn socket_rules(supervise_connect: bool) -> Vec<SeccompRule> {
    let mut out: Vec<SeccompRule> =
        DENIED_SOCKET_FAMILIES.iter().map(|f| rule(vec![cond(0, SeccompCmpOp::Eq, *f as u64)])).collect();
    if supervise_connect {
        out.extend(unix_datagram_rules());
    }
    out
}

fn unix_datagram_rules() -> Vec<SeccompRule> {
    [libc::SOCK_DGRAM, libc::SOCK_RAW]
        .iter()
        .map(|ty| {
            rule(vec![
                cond(0, SeccompCmpOp::Eq, libc::AF_UNIX as u64),
                cond(1, SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK), *ty as u64),
            ])
        })
        .collect()
}

/// The part of socket(2)'s type argument that names the type (the rest are flags).
const SOCK_TYPE_MASK: u64 = 0xf;

/// Builds the filter.
pub fn build(options: Options) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in DENIED {
        rules.insert(*nr, vec![]);
    }
    if !options.allow_ptrace {
        for (_, nr) in PTRACE {
            rules.insert(*nr, vec![]);
        }
    }
    // personality(0xffffffff) only queries; every other persona (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE)
    // weakens the process, so only the query and PER_LINUX pass.
    rules.insert(
        libc::SYS_personality,
        vec![rule(vec![cond(0, SeccompCmpOp::Ne, 0), cond(0, SeccompCmpOp::Ne, 0xffff_ffff)])],
    );
    // Terminal injection: pushing input into a terminal or reading another console.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![cond(1, SeccompCmpOp::Eq, libc::TIOCSTI)]),
            rule(vec![cond(1, SeccompCmpOp::Eq, libc::TIOCLINUX)]),
        ],
    );
    rules.insert(libc::SYS_socket, socket_rules(options.supervise_connect));
    if options.supervise_connect {
        rules.insert(libc::SYS_socketpair, unix_datagram_rules());
    }
    set_id_rules(&mut rules);
    if options.pin_cpus {
        rules.insert(libc::SYS_sched_setaffinity, vec![]);
    }
    // clone with any namespace flag: one rule per flag, since a rule's conditions all must hold.
    let namespace_rules = (0..64)
        .map(|bit| 1u64 << bit)
        .filter(|flag| NAMESPACE_FLAGS & flag != 0)
        .map(|flag| rule(vec![cond(0, SeccompCmpOp::MaskedEq(flag), flag)]))
        .collect();
    rules.insert(libc::SYS_clone, namespace_rules);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), TARGET)
        .map_err(|e| e.to_string())?;
    let program: BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?;
    let mut out = prologue(options);
    out.extend(program);
    Ok(out)
}

#[cfg(target_arch = "x86_64")]
const TARGET: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const TARGET: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("ringfence's seccomp filter supports x86_64 and aarch64");

/// Hand-written first instructions, for what seccompiler can't say: a foreign architecture (or,
/// on x86_64, an x32 system call) gets EPERM rather than the kill seccompiler would emit;
/// clone3 and openat2 get ENOSYS, so libc and programs fall back to clone and openat, whose
/// flags and mode the filter can inspect (both pass them in memory); and a supervised connect
/// or exec traps to the supervisor, an action seccompiler doesn't know.
fn prologue(options: Options) -> BpfProgram {
    use seccompiler::sock_filter;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    let mut program = vec![
        ins(LD_W_ABS, 0, 0, 4),       // arch
        ins(JEQ_K, 1, 0, AUDIT_ARCH), // native: skip the refusal
        ins(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        ins(LD_W_ABS, 0, 0, 0), // syscall number
    ];
    if cfg!(target_arch = "x86_64") {
        program.push(ins(JGE_K, 0, 1, X32_SYSCALL_BIT)); // x32: refuse
        program.push(ins(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32));
    }
    for nr in [libc::SYS_clone3, libc::SYS_openat2] {
        program.push(ins(JEQ_K, 0, 1, nr as u32));
        program.push(ins(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
    }
    let trapped = [
        (options.supervise_connect, libc::SYS_connect),
        (options.supervise_exec, libc::SYS_execve),
        (options.supervise_exec, libc::SYS_execveat),
    ];
    for (_, nr) in trapped.into_iter().filter(|(on, _)| *on) {
        program.push(ins(JEQ_K, 0, 1, nr as u32));
        program.push(ins(RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF));
    }
    program
}

#[cfg(test)]
mod tests {
    use super::Options;

    #[test]
    fn filter_builds_for_every_mode_and_stays_small() {
        let strict = super::build(Options {
            allow_ptrace: false,
            pin_cpus: true,
            supervise_connect: true,
            supervise_exec: true,
        })
        .unwrap();
        let debug = super::build(Options { allow_ptrace: true, ..Default::default() }).unwrap();
        assert!(strict.len() > debug.len());
        // The kernel's limit is 4096. (System calls whose verdict doesn't depend on their
        // arguments skip the program once the kernel has cached their verdict.)
        assert!(strict.len() < 1024, "the filter grew to {} instructions", strict.len());
    }
}
