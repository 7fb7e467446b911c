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

/// Builds the filter. `pin_cpus`: the CPU limit rests on affinity (no cgroup), so the sandbox
/// may not widen it again.
pub fn build(allow_ptrace: bool, pin_cpus: bool) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in DENIED {
        rules.insert(*nr, vec![]);
    }
    if !allow_ptrace {
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
    let families = DENIED_SOCKET_FAMILIES.iter().map(|f| rule(vec![cond(0, SeccompCmpOp::Eq, *f as u64)])).collect();
    rules.insert(libc::SYS_socket, families);
    if pin_cpus {
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
    let mut out = prologue();
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
/// on x86_64, an x32 system call) gets EPERM rather than the kill seccompiler would emit, and
/// clone3 gets ENOSYS so libc falls back to clone, whose flags the filter can inspect.
fn prologue() -> BpfProgram {
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
    program.push(ins(JEQ_K, 0, 1, libc::SYS_clone3 as u32));
    program.push(ins(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
    program
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_builds_for_both_modes() {
        let strict = super::build(false, true).unwrap();
        let debug = super::build(true, false).unwrap();
        assert!(strict.len() > debug.len());
        assert!(strict.len() < 4096, "BPF programs are limited to 4096 instructions");
    }
}
