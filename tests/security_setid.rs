//! Threat 2 and 6, a set-id program left behind: nothing the sandbox writes may carry the
//! set-user-ID or set-group-ID bit, or file capabilities, since a host user who later runs it
//! would get the caller's identity. Every way to give a file a mode is tried (chmod(1), chmod,
//! fchmod, fchmodat, fchmodat2, open/openat/creat with O_CREAT or O_TMPFILE, mkdir, mknod,
//! install, tar -xp, cp -p, hard links to a set-id file, setxattr of security.capability,
//! chown), then the HOST looks at every file in the workspace. Control: the same script run
//! unconfined on the host, as the same identity, does leave set-id files behind.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const SET_ID: u32 = 0o6000;

/// Python attacks, one probe line each; runs in the current directory. Raw system calls use
/// x86_64 numbers, like the escalation suite.
const PY_ATTACKS: &str = r#"
import stat, struct
S, G = 0o4755, 0o2755
def attempt(name, f):
    try:
        f()
        print(name, "OK", 0, flush=True)
    except OSError as e:
        print(name, "ERR", errno.errorcode.get(e.errno, str(e.errno)), flush=True)
def touch(name):
    open(name, 'w').close()
    return name.encode()
touch('py-chmod')
attempt('py_chmod', lambda: os.chmod('py-chmod', S))
fd = os.open('py-fchmod', os.O_CREAT | os.O_WRONLY, 0o644)
attempt('py_fchmod', lambda: os.fchmod(fd, G))
attempt('py_open', lambda: os.close(os.open('py-open', os.O_CREAT | os.O_WRONLY, S)))
attempt('py_open_tmpfile', lambda: os.close(os.open('.', os.O_TMPFILE | os.O_WRONLY, S)))
attempt('py_mkdir', lambda: os.mkdir('py-mkdir', G))
attempt('py_mknod', lambda: os.mknod('py-mknod', stat.S_IFREG | S))
probe('chmod', 90, touch('raw-chmod'), S)
probe('fchmodat', 268, -100, touch('raw-fchmodat'), G)
probe('fchmodat2', 452, -100, touch('raw-fchmodat2'), S, 0)
probe('creat', 85, b'raw-creat', S)
probe('mkdir', 83, b'raw-mkdir', G)
probe('mkdirat', 258, -100, b'raw-mkdirat', G)
probe('mknod', 133, b'raw-mknod', stat.S_IFREG | G, 0)
probe('mknodat', 259, -100, b'raw-mknodat', stat.S_IFREG | S, 0)
probe('open', 2, b'raw-open', os.O_CREAT | os.O_WRONLY, G)
probe('openat', 257, -100, b'raw-openat', os.O_CREAT | os.O_WRONLY, S)
probe('openat_tmpfile', 257, -100, b'.', os.O_TMPFILE | os.O_WRONLY, S)
how = ctypes.create_string_buffer(struct.pack('QQQ', os.O_CREAT | os.O_WRONLY, S, 0), 24)
probe('openat2', 437, -100, b'raw-openat2', how, 24)
touch('plain')
attempt('setcap', lambda: os.setxattr('plain', 'security.capability', struct.pack('<IIIII', 0x02000000, 1 << 21, 0, 0, 0)))
attempt('xattr_user', lambda: os.setxattr('plain', 'user.ringfence', b'1'))
attempt('chown_other', lambda: os.chown('plain', 1 if os.getuid() == 0 else 0, -1))
attempt('chmod_755', lambda: os.chmod('plain', 0o755))
"#;

/// Files the attacks above and in [`sh_attacks`] leave set-id when nothing stops them.
const SET_ID_UNCONFINED: &[&str] = &[
    "py-chmod",
    "py-fchmod",
    "py-open",
    "py-mknod",
    "raw-chmod",
    "raw-fchmodat",
    "raw-fchmodat2",
    "raw-creat",
    "raw-mknod",
    "raw-mknodat",
    "raw-open",
    "raw-openat",
    "raw-openat2",
    "sh-us",
    "sh-gs",
    "sh-6755",
    "installed",
    "tar-suid",
    "tar-sgid-dir",
    "cp-p",
    "hardlink",
];

/// Probes that must fail inside the sandbox, and how.
const REFUSED: &[(&str, &str)] = &[
    ("py_chmod", "EPERM"),
    ("py_fchmod", "EPERM"),
    ("py_open", "EPERM"),
    ("py_open_tmpfile", "EPERM"),
    ("py_mkdir", "EPERM"),
    ("py_mknod", "EPERM"),
    ("chmod", "EPERM"),
    ("fchmodat", "EPERM"),
    ("fchmodat2", "EPERM"),
    ("creat", "EPERM"),
    ("mkdir", "EPERM"),
    ("mkdirat", "EPERM"),
    ("mknod", "EPERM"),
    ("mknodat", "EPERM"),
    ("open", "EPERM"),
    ("openat", "EPERM"),
    ("openat_tmpfile", "EPERM"),
    ("openat2", "ENOSYS"),
    ("setcap", "EPERM"),
];

/// The shell half: chmod(1), install, tar -xp, cp -p (also of a file made in the temporary
/// folder `tmp`), and hard links; then the positive controls.
fn sh_attacks(src: &Path, tar: &Path, tmp: &str) -> String {
    let (src, tar) = (path_str(src), path_str(tar));
    format!(
        "touch sh-us sh-gs sh-6755; chmod u+s sh-us; chmod g+s sh-gs; chmod 6755 sh-6755; \
         install -m 4755 {src} installed; tar -xpf {tar}; cp -p {src} cp-p; \
         touch {tmp}/made; chmod 4755 {tmp}/made; cp -p {tmp}/made cp-tmp; \
         ln {src} hardlink || echo LINK-REFUSED; \
         touch plain-sh && chmod 755 plain-sh && ln plain-sh plain-link && echo CONTROL-OK; \
         mkdir made-dir && echo 'made' > made-dir/file && echo CREATE-OK; echo DONE"
    )
}

/// Every path below `dir` (not following links) with a set-id bit.
fn set_id_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.permissions().mode() & SET_ID != 0 {
                out.push(entry.path().strip_prefix(dir).unwrap().display().to_string());
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// A set-id program and an archive holding a set-uid file and a set-gid folder, outside the
/// workspace (readable, not writable, in the sandbox); and a folder for the control run.
fn set_id_sources(env: &Env) -> (PathBuf, PathBuf) {
    let src = env.outside.join("src-suid");
    std::fs::copy("/bin/true", &src).unwrap();
    let tree = env.outside.join("tree");
    std::fs::create_dir_all(tree.join("tar-sgid-dir")).unwrap();
    std::fs::copy("/bin/true", tree.join("tar-suid")).unwrap();
    std::fs::create_dir_all(env.outside.join("control/tmp")).unwrap();
    env.chown_all(); // chown clears set-id bits: set them afterwards.
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(tree.join("tar-suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(tree.join("tar-sgid-dir"), std::fs::Permissions::from_mode(0o2755)).unwrap();
    let tar = env.outside.join("setid.tar");
    let made = std::process::Command::new("tar").arg("-C").arg(&tree).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(made.success());
    (src, tar)
}

/// The attacks, run unconfined in a fresh folder as the same identity (control), leave set-id
/// files behind.
fn assert_attacks_work_unconfined(env: &Env, src: &Path, tar: &Path) {
    let dir = env.outside.join("control");
    let script = format!("cd {} && {}", path_str(&dir), sh_attacks(src, tar, "tmp"));
    let sh = env.host(&["sh", "-c", &script]);
    assert!(stdout(&sh).contains("DONE"), "{:?}: the shell attacks did not run unconfined:\n{}", env.who, both(&sh));
    let py = env.host(&["sh", "-c", &format!("cd {} && python3 -c \"$0\"", path_str(&dir)), &attacks_py()]);
    assert!(stdout(&py).contains("chmod_755 OK"), "{:?}: the python attacks did not run:\n{}", env.who, both(&py));
    let found = set_id_files(&dir);
    let missing: Vec<&&str> = SET_ID_UNCONFINED.iter().filter(|f| !found.iter().any(|g| g == *f)).collect();
    assert!(missing.is_empty(), "{:?}: unconfined, these got no set-id bit (control): {missing:?}\n{found:?}", env.who);
}

fn attacks_py() -> String {
    format!("{PY_SYSCALL}{PY_ATTACKS}")
}

/// No file the sandbox writes gains a set-id bit or a file capability, whatever tool or system
/// call it uses: each refused call fails with EPERM (openat2 with ENOSYS, so callers fall back
/// to openat), and the host finds no set-id file in the workspace. chmod 755, xattrs in the
/// user namespace, hard links within the workspace, and creating files and folders still work.
#[test]
fn set_id_bits_and_file_capabilities_are_refused() {
    for who in identities() {
        let env = Env::new(who);
        let (src, tar) = set_id_sources(&env);
        assert_attacks_work_unconfined(&env, &src, &tar);

        let out = env.run_sh(&[], &sh_attacks(&src, &tar, "/tmp"));
        let text = both(&out);
        for word in ["DONE", "CONTROL-OK", "CREATE-OK", "LINK-REFUSED"] {
            assert!(text.contains(word), "{who:?}: {word} missing:\n{text}");
        }
        let py = env.run_py(&[], &attacks_py());
        let got = probe_results(&stdout(&py));
        for (name, expect) in REFUSED {
            assert_eq!(got.get(*name).map(String::as_str), Some(*expect), "{who:?}: {name}:\n{}", both(&py));
        }
        // Only the caller's own ids are mapped in the sandbox: any other owner is EINVAL.
        let chown = got.get("chown_other").map(String::as_str);
        assert!(matches!(chown, Some("EINVAL" | "EPERM")), "{who:?}: chown to another user: {chown:?}");
        for allowed in ["xattr_user", "chmod_755"] {
            assert_eq!(got.get(allowed).map(String::as_str), Some("OK"), "{who:?}: {allowed}:\n{}", both(&py));
        }

        assert_eq!(set_id_files(&env.ws), Vec::<String>::new(), "{who:?}: set-id files in the workspace:\n{text}");
        let caps = std::process::Command::new("getcap").arg("-r").arg(&env.ws).output().unwrap();
        assert_eq!(stdout(&caps).trim(), "", "{who:?}: file capabilities in the workspace");
        let mode = |name: &str| env.ws.join(name).symlink_metadata().map(|m| m.permissions().mode() & 0o7777).ok();
        assert_eq!(mode("plain"), Some(0o755), "{who:?}: chmod 755 did not apply");
        assert!(mode("tar-suid").is_some() && mode("cp-p").is_some(), "{who:?}: tar and cp copied nothing:\n{text}");
    }
}
