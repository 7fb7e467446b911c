//! Tests of the OS wrappers. They run under Wine in local CI and on Windows; they check call
//! sequences, structures and error handling, never isolation (Wine enforces no restricted
//! tokens, ACLs or WFP filters).

use super::*;
use crate::acl::{flags, mask, Ace, Acl, SecurityDescriptor};
use crate::fixtures::{logon, no_limits, read_in_background};
use crate::job::JobPlan;
use crate::launch::{spawn_with, RunnerStart};
use crate::sid::Sid;
use ringfence_policy::{Builtin, FsRules, Limits, Policy, ProfileName, RuleKind};
use std::ffi::OsString;
use std::io::Read;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether these tests run under Wine, which implements some calls as stubs (job limits are
/// accepted but not kept, job accounting is missing): values are then not asserted.
fn wine() -> bool {
    crate::fixtures::under_wine()
}

/// A fresh scratch folder for one test; removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Scratch {
    /// Creates the folder `name` in the scratch folder.
    fn mkdir(&self, name: &str) -> PathBuf {
        let dir = self.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("rf-wine-{}-{name}", current_pid()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Set in the environment of this test binary when a test starts it as a child process: the
/// role it plays (`echo`, `runner` or `sleeper`).
const CHILD_ENV: &str = "RINGFENCE_WINDOWS_TEST_CHILD";

/// The arguments that make this test binary run only [`child`], with what follows `--` for
/// the child to read.
const CHILD_ARGS: [&str; 6] = ["--ignored", "--exact", "--nocapture", "--test-threads=1", "sys::tests::child", "--"];

/// Not a test of its own: started with [`CHILD_ARGS`], this test binary plays the role
/// [`CHILD_ENV`] names, and exits; otherwise it returns at once.
#[test]
#[ignore]
fn child() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("echo") => echo_child(),
        Ok("runner") => runner_child(),
        Ok("sleeper") => sleeper_child(),
        _ => {}
    }
}

#[test]
fn windows_sys_guids_match_the_descriptions() {
    use crate::wfp::{field, Layer};
    use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform as f;
    let same = |ours: crate::wfp::Guid, theirs: windows_sys::core::GUID| {
        assert_eq!(windows_sys::core::GUID::from_u128(ours.0).data1, theirs.data1);
        assert_eq!(windows_sys::core::GUID::from_u128(ours.0).data4, theirs.data4);
    };
    same(Layer::ConnectV4.key(), f::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    same(Layer::ConnectV6.key(), f::FWPM_LAYER_ALE_AUTH_CONNECT_V6);
    same(Layer::RecvAcceptV4.key(), f::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    same(Layer::RecvAcceptV6.key(), f::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6);
    same(field::ALE_USER_ID, f::FWPM_CONDITION_ALE_USER_ID);
    same(field::IP_PROTOCOL, f::FWPM_CONDITION_IP_PROTOCOL);
    same(field::IP_REMOTE_ADDRESS, f::FWPM_CONDITION_IP_REMOTE_ADDRESS);
    same(field::IP_REMOTE_PORT, f::FWPM_CONDITION_IP_REMOTE_PORT);
}

#[test]
fn job_and_ui_constants_match_windows_sys() {
    use windows_sys::Win32::System::JobObjects as j;
    assert_eq!(crate::job::limit::KILL_ON_JOB_CLOSE, j::JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE);
    assert_eq!(crate::job::limit::ACTIVE_PROCESS, j::JOB_OBJECT_LIMIT_ACTIVE_PROCESS);
    assert_eq!(crate::job::limit::JOB_MEMORY, j::JOB_OBJECT_LIMIT_JOB_MEMORY);
    assert_eq!(crate::job::limit::DIE_ON_UNHANDLED_EXCEPTION, j::JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION);
    assert_eq!(crate::job::ui::ALL, 0xFF);
    assert_eq!(crate::job::ui::DESKTOP, j::JOB_OBJECT_UILIMIT_DESKTOP);
    assert_eq!(crate::job::ui::HANDLES, j::JOB_OBJECT_UILIMIT_HANDLES);
    assert_eq!(crate::job::cpu::HARD_CAP, j::JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP);
}

/// Our binary descriptors parse with the system's SDDL parser into the same structure, and
/// the system's descriptors parse with ours.
#[test]
fn security_descriptors_agree_with_the_system() {
    let (user, account) = (crate::fixtures::user(), crate::fixtures::account());
    let sds = [
        crate::install::secret_sd(&user),
        crate::install::bin_sd(&user, &account),
        crate::install::runs_sd(&user),
        crate::wfp::user_match_sd(&account),
        SecurityDescriptor {
            dacl: Some(Acl::new(vec![
                Ace::Deny { flags: flags::TREE, mask: mask::ANY_WRITE, sid: account.clone() },
                Ace::Allow { flags: flags::TREE | flags::INHERIT_ONLY, mask: mask::MODIFY, sid: user.clone() },
            ])),
            ..SecurityDescriptor::default()
        },
    ];
    for sd in sds {
        let from_system = security::sddl_to_sd(&sd.sddl()).unwrap();
        let parsed = SecurityDescriptor::from_bytes(&from_system).unwrap();
        assert_eq!(parsed.dacl, sd.dacl, "{}", sd.sddl());
        assert_eq!(parsed.owner, sd.owner, "{}", sd.sddl());
        assert_eq!(parsed.protected, sd.protected, "{}", sd.sddl());
        let text = security::sd_to_sddl(&sd.to_bytes()).unwrap();
        let back = SecurityDescriptor::from_bytes(&security::sddl_to_sd(&text).unwrap()).unwrap();
        assert_eq!(back.dacl, sd.dacl, "{text}");
    }
}

#[test]
fn current_user_and_token_are_readable() {
    let me = security::current_user().unwrap();
    assert_eq!(me.authority, 5, "{me}");
    // Wine's tokens may or may not carry a logon SID; when they do, it has the right shape.
    let token = security::own_token(windows_sys::Win32::Security::TOKEN_QUERY).unwrap();
    if let Some(logon) = security::token_logon_sid(&token).unwrap() {
        assert!(logon.is_logon_sid(), "{logon}");
    }
    let _ = security::is_elevated();
}

#[test]
fn unknown_accounts_are_none() {
    assert_eq!(security::lookup_account("ringfence-no-such-user-xyz").unwrap(), None);
}

#[test]
fn restricted_tokens_can_be_made() {
    let logon = Sid::parse("S-1-5-5-0-123").unwrap();
    let dacl = crate::runner::command_default_dacl(&logon);
    let slot = Sid::parse("S-1-5-21-9-9-9-2001").unwrap();
    match security::restricted_token(&[logon, crate::sid::capability()], &[slot], &dacl) {
        Ok(t) => assert!(!t.as_raw_handle().is_null()),
        // Fail closed with the call named, never a panic.
        Err(e) => {
            assert!(e.message.contains("CreateRestrictedToken") || e.message.contains("SetTokenInformation"), "{e}")
        }
    }
}

#[test]
fn job_limits_are_set_and_read_back() {
    let limits = Limits {
        memory: Some(ringfence_policy::ByteSize(256 << 20)),
        pids: Some(12),
        pids_explicit: true,
        ..no_limits()
    };
    let plan = JobPlan::from_limits(&limits, logical_cpus()).unwrap();
    let job = job::Job::create(&plan).unwrap();
    let got = job.limits().unwrap();
    if !wine() {
        let ui = job.ui_restrictions().unwrap();
        assert_eq!(got.BasicLimitInformation.LimitFlags, plan.limit_flags);
        assert_eq!(got.BasicLimitInformation.ActiveProcessLimit, 12);
        assert_eq!(got.JobMemoryLimit, 256 << 20);
        assert_eq!(ui, crate::job::ui::ALL);
        let (user, kernel, _peak) = job.accounting().unwrap();
        assert_eq!((user, kernel), (Duration::ZERO, Duration::ZERO));
    }
    assert!(job.next_message(Duration::ZERO).is_none(), "an empty job has nothing to report");
    job.terminate(1);
}

#[test]
fn anonymous_pipes_carry_bytes() {
    let (r, w) = pipe::anonymous().unwrap();
    let mut w = std::fs::File::from(w);
    std::io::Write::write_all(&mut w, b"hello").unwrap();
    drop(w);
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    assert_eq!(out, "hello");
}

#[test]
fn the_control_pipes_check_their_client() {
    use crate::protocol::{read_frame, FromRunner, ToRunner};
    let me = security::current_user().unwrap();
    let name = format!("ringfence-test-{}", current_pid());
    let server = pipe::ControlServer::create(&name, &me, &Sid::parse("S-1-5-21-9-9-9-1001").unwrap()).unwrap();
    let client_name = name.clone();
    let client = std::thread::spawn(move || {
        let (mut down, mut up) = pipe::connect(&client_name).unwrap();
        std::io::Write::write_all(&mut up, &FromRunner::Started { pid: 1, process: 2, thread: 3 }.encode()).unwrap();
        let frame = read_frame(&mut down).unwrap().unwrap();
        ToRunner::decode(&frame).unwrap()
    });
    // The client is this very process, so its pid is ours.
    let (mut write, mut read) = server.accept(current_pid()).unwrap();
    // Reading and writing from two threads at once must not block each other.
    let reader = std::thread::spawn(move || {
        let frame = read_frame(&mut read).unwrap().unwrap();
        FromRunner::decode(&frame).unwrap()
    });
    std::io::Write::write_all(&mut write, &ToRunner::Go.encode()).unwrap();
    assert_eq!(reader.join().unwrap(), FromRunner::Started { pid: 1, process: 2, thread: 3 });
    assert_eq!(client.join().unwrap(), ToRunner::Go);

    // A client that is not the expected process is refused.
    let name2 = format!("{name}-2");
    let server = pipe::ControlServer::create(&name2, &me, &me).unwrap();
    let n2 = name2.clone();
    let t = std::thread::spawn(move || pipe::poke(&n2));
    let err = server.accept(current_pid() + 4).unwrap_err();
    assert!(err.message.contains("not the runner"), "{err}");
    let _ = t.join();
}

/// A private desktop, and the removal of a SID's entries from it. Only the desktop this test
/// made is changed: never the caller's own `Default` desktop.
#[test]
fn private_desktops_can_be_created_and_stripped() {
    let me = security::current_user().unwrap();
    let logon = logon();
    let d = match desktop::Desktop::create(&format!("ringfence-test-{}", current_pid()), &me, &logon) {
        Ok(d) => d,
        Err(e) => return assert!(e.message.contains("CreateDesktopW"), "{e}"),
    };
    assert!(d.path.ends_with(&format!(r"\ringfence-test-{}", current_pid())), "{}", d.path);
    match desktop::strip_entries(d.handle(), &[&logon]) {
        Ok(()) if !wine() => {
            let (acl, _) = security::handle_dacl(d.handle(), true).unwrap();
            let acl = acl.unwrap();
            assert!(!acl.mentions(&logon), "{}", acl.sddl());
            assert!(acl.mentions(&me), "the creator keeps its entry: {}", acl.sddl());
        }
        Ok(()) => {}
        Err(e) => assert!(e.message.contains("ACL") || e.message.contains("SecurityInfo"), "{e}"),
    }
}

#[test]
fn file_dacls_round_trip_through_the_wrappers() {
    let dir = scratch("dacl");
    let path: &Path = &dir;
    let (dacl, protected) = match security::file_dacl(path) {
        Ok(v) => v,
        Err(e) => {
            assert!(e.message.contains("GetNamedSecurityInfoW"), "{e}");
            return;
        }
    };
    let logon = Sid::parse("S-1-5-5-0-777").unwrap();
    let mut acl = dacl.unwrap_or_default();
    acl.add_explicit(Ace::Allow { flags: flags::TREE, mask: mask::MODIFY, sid: logon.clone() });
    // Writing must succeed or fail with a Win32 code; what Wine stores is not asserted.
    let _ = security::set_file_dacl(path, &acl, protected);
}

#[test]
fn placeholders_are_marked_held_and_removed() {
    use crate::plan::Kind;
    let dir = scratch("placeholder");
    let d = dir.join(".vscode");
    let f = dir.join(".gitconfig");
    fs::create_placeholder(&d, Kind::Dir).unwrap();
    fs::create_placeholder(&f, Kind::File).unwrap();
    assert!(fs::create_placeholder(&d, Kind::Dir).is_err(), "never over an existing path");
    assert!(fs::is_placeholder(&d, Kind::Dir));
    assert!(fs::is_placeholder(&f, Kind::File));
    assert!(!fs::is_placeholder(&d, Kind::File));
    let held = fs::hold(&d).unwrap();
    if !wine() {
        // Held without delete sharing: a concurrent run's clean-up leaves it.
        fs::remove_placeholder(&d, Kind::Dir);
        assert!(d.exists());
    }
    drop(held);
    fs::remove_placeholder(&d, Kind::Dir);
    fs::remove_placeholder(&f, Kind::File);
    assert!(!d.exists() && !f.exists());
    // A user's own (non-empty) folder is never taken for one.
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("settings.json"), "{}").unwrap();
    fs::remove_placeholder(&d, Kind::Dir);
    assert!(d.join("settings.json").exists());
}

#[test]
fn a_live_journal_is_not_claimed_and_a_dead_one_is() {
    let dir = scratch("journal");
    let path = dir.join("run-1-1.journal");
    let mut live = fs::JournalFile::create(&path).unwrap();
    live.append("ringfence-journal 1\n").unwrap();
    assert!(fs::claim_stale(&path).is_none(), "the run still holds it");
    drop(live);
    assert!(fs::claim_stale(&path).is_some());
}

/// A journal whose entries can't be undone is kept, recovery says what is left, and no run
/// starts until it is fixed (a dead run's logon SID could match a later logon after a restart).
#[test]
fn a_journal_that_cant_be_undone_is_kept_and_stops_the_next_run() {
    let stage = Stage::new("left-behind");
    let journal = std::path::Path::new(&stage.layout.runs()).join("run-998-0.journal");
    // A path no ACL can be read from: `<` is not allowed in names.
    let text = format!("{}\nlogon S-1-5-5-0-98\nace {}\\bad<name\n", crate::journal::HEADER, stage.ws.display());
    std::fs::write(&journal, text).unwrap();
    let left = crate::changes::recover(std::path::Path::new(&stage.layout.runs()));
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("bad<name"), "{left:?}");
    assert!(journal.exists(), "the journal stays for the next attempt");
    let env = vec![("PATH".into(), format!(r"{}\system32", system_root()).into())];
    let spec = stage.spec("cmd.exe".into(), &["/d", "/c", "exit 0"], env, stage.workspace_policy());
    let err = stage.launch(spec).err().expect("a run must not start while a dead run's entries are left");
    assert!(err.message.contains("could not be removed") && err.message.contains("bad<name"), "{err}");
    assert!(err.remedy.as_deref().unwrap_or("").contains("icacls"), "{err}");
    std::fs::remove_file(&journal).unwrap();
}

/// The slot grants on disk: a root gets a slot once and keeps it, a run's holds keep its slots
/// from being taken back, and forgetting a root takes its entries back.
#[test]
fn slot_grants_are_recorded_held_and_taken_back() {
    use crate::grants::{Registry, RootUse};
    let stage = Stage::new("slots");
    let me = security::current_user().unwrap();
    let sids: Vec<Sid> =
        (0..crate::grants::SLOT_COUNT).map(|i| Sid::new(5, &[21, 9, 9, 9, 3000 + u32::from(i)])).collect();
    let slots = crate::slots::Slots::new(&stage.layout.grants(), sids.clone(), me);
    let ws = crate::wpath::normalize(stage.ws.to_str().unwrap());
    let other = crate::wpath::normalize(stage.dir.mkdir("other").to_str().unwrap());
    let read = |path: &str| {
        Registry::parse(
            &std::fs::read_to_string(std::path::Path::new(&stage.layout.grants()).join("grants.txt")).unwrap(),
        )
        .unwrap()
        .find(path)
        .cloned()
    };
    let run = slots
        .open(&[RootUse { path: ws.clone(), write: true }, RootUse { path: other.clone(), write: false }])
        .unwrap();
    let (a, b) = (read(&ws).unwrap(), read(&other).unwrap());
    assert!(a.complete && b.complete, "{a:?} {b:?}");
    assert_ne!(a.slot, b.slot);
    assert_eq!(run.token.restricting, vec![sids[usize::from(a.slot)].clone()], "only the writable root restricts");
    assert_eq!(run.token.enabled.len(), 2);
    assert_eq!(run.token.deny_only.len(), usize::from(crate::grants::SLOT_COUNT) - 2);
    if !wine() {
        let (acl, _) = security::file_dacl(&ws).unwrap();
        assert!(acl.unwrap().mentions(&sids[usize::from(a.slot)]), "the root carries its slot's entry");
    }
    // A second run keeps the slots; a held slot can't be forgotten.
    let again = slots.open(&[RootUse { path: ws.clone(), write: true }]).unwrap();
    assert_eq!(read(&ws).unwrap().slot, a.slot);
    drop(again);
    let err = slots.forget(&ws).unwrap_err();
    assert!(err.message.contains("in use"), "{err}");
    drop(run);
    slots.forget(&ws).unwrap();
    assert_eq!(read(&ws), None);
    if !wine() {
        let (acl, _) = security::file_dacl(&ws).unwrap();
        assert!(!acl.unwrap().mentions(&sids[usize::from(a.slot)]), "the entry is taken back");
    }
    assert!(slots.forget_all().is_empty());
    assert_eq!(read(&other), None);
}

#[test]
fn a_crashed_runs_journal_is_replayed() {
    let dir = scratch("recover");
    let runs = dir.mkdir("runs");
    let temp = dir.mkdir("ringfence-tmp");
    std::fs::write(temp.join("leftover.txt"), "x").unwrap();
    let ph = dir.join(".envrc");
    fs::create_placeholder(&ph, crate::plan::Kind::Dir).unwrap();
    let w = |p: &Path| units(p);
    let mut text = format!("{}\nlogon S-1-5-5-0-99\n", crate::journal::HEADER);
    for e in [
        crate::journal::Entry::TempDir(w(&temp)),
        crate::journal::Entry::Placeholder(crate::plan::Kind::Dir, w(&ph)),
        crate::journal::Entry::Ace(w(&dir)),
    ] {
        text.push_str(&crate::journal::entry_line(&e));
    }
    std::fs::write(runs.join("run-999-0.journal"), text).unwrap();
    let warnings = crate::changes::recover(&runs);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!temp.exists(), "the temporary folder is removed");
    assert!(!ph.exists(), "the placeholder is removed");
    assert!(std::fs::read_dir(&runs).unwrap().next().is_none(), "the journal is removed");
}

#[test]
fn a_run_journal_applies_and_undoes_a_plan() {
    use crate::plan::{AclPlan, Kind, Op};
    let dir = scratch("apply");
    let runs = dir.mkdir("runs");
    let ws = dir.mkdir("ws");
    let text = |p: &Path| crate::wpath::normalize(p.to_str().unwrap());
    let logon = Sid::parse("S-1-5-5-0-31337").unwrap();
    let account = Sid::parse("S-1-5-21-1-2-3-1001").unwrap();
    let plan = AclPlan {
        ops: vec![
            Op::Folder { path: text(&ws.join(".config")) },
            Op::Placeholder { path: text(&ws.join(".config").join("git")), kind: Kind::Dir },
            Op::Grant { path: text(&ws), this: mask::MODIFY & !mask::DELETE, children: mask::MODIFY },
            Op::Deny { path: text(&ws.join(".config").join("git")), mask: mask::ANY_WRITE, tree: true },
        ],
        write_roots: vec![text(&ws)],
        system_read_roots: vec![],
        roots: vec![],
    };
    let mut changes = crate::changes::RunChanges::begin(&runs, &logon).unwrap();
    changes.temp_dir(&dir.join("tmp")).unwrap();
    match changes.apply(&plan, &account) {
        Ok(()) => {
            assert!(ws.join(".config").join("git").is_dir());
            let journal = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
            let parsed = crate::journal::parse(&std::fs::read_to_string(&journal).unwrap()).unwrap();
            assert_eq!(parsed.logon, Some(logon.clone()));
            assert_eq!(parsed.entries.len(), 5, "{parsed:?}");
        }
        // An ACL the system refuses to change is an error naming the call, not a panic.
        Err(e) => assert!(e.message.contains("ACL") || e.message.contains("SecurityInfo"), "{e}"),
    }
    let warnings = changes.undo();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!ws.join(".config").exists(), "placeholder and its folder are gone");
    assert!(!dir.join("tmp").exists());
    assert!(std::fs::read_dir(&runs).unwrap().next().is_none(), "the journal is removed");
}

/// The child the process tests start: it prints its arguments and environment between
/// markers, hex-encoded (UTF-16), and exits with code 7.
fn echo_child() -> ! {
    use std::os::windows::ffi::OsStrExt;
    let hex = |s: &std::ffi::OsStr| s.encode_wide().map(|u| format!("{u:04x}")).collect::<String>();
    let args: Vec<_> = std::env::args_os().collect();
    let start = args.iter().position(|a| a == "--").map(|i| i + 1).unwrap_or(args.len());
    println!("<<<");
    for a in &args[start..] {
        println!("arg {}", hex(a));
    }
    for (k, v) in std::env::vars_os() {
        println!("env {} {}", hex(&k), hex(&v));
    }
    println!(">>>");
    std::process::exit(7);
}

/// Starts `application args` suspended from this process's own token, in the temporary folder,
/// with `vars` as its whole environment and `stdio` as its standard handles.
fn start_suspended(
    application: &[u16],
    args: &[Vec<u16>],
    vars: &[(Vec<u16>, Vec<u16>)],
    stdio: Option<[Option<BorrowedHandle<'_>>; 3]>,
) -> Result<process::Started, u32> {
    let line = crate::cmdline::build_command_line(application, args).unwrap();
    let block = crate::envblock::build_env_block(vars).unwrap();
    let cwd = units(std::env::temp_dir());
    let launch = process::Launch {
        application,
        command_line: &line,
        env_block: &block,
        cwd: &cwd,
        desktop: None,
        stdio,
        pseudoconsole: None,
    };
    process::create_suspended(None, &launch)
}

fn unhex(s: &str) -> Vec<u16> {
    (0..s.len()).step_by(4).map(|i| u16::from_str_radix(&s[i..i + 4], 16).unwrap()).collect()
}

#[test]
fn a_suspended_child_in_a_job_gets_exact_arguments_and_environment() {
    let exe = std::env::current_exe().unwrap();
    let payload: Vec<Vec<u16>> =
        ["plain", "two words", "quote\"inside", "trailing\\", "", "tab\tand \\\"both\\\\", "ü漢😀"]
            .iter()
            .map(|s| s.encode_utf16().collect())
            .collect();
    let mut args: Vec<Vec<u16>> = CHILD_ARGS.iter().map(|s| s.encode_utf16().collect()).collect();
    args.extend(payload.iter().cloned());
    let exe_w = units(&exe);
    let mut vars: Vec<(Vec<u16>, Vec<u16>)> = vec![
        (units(CHILD_ENV), units("echo")),
        (units("Mixed_Case"), units("a=b=c")),
        (units("SystemRoot"), units(std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\windows".into()))),
    ];
    if let Some(p) = std::env::var_os("WINEPATH") {
        vars.push((units("WINEPATH"), units(p)));
    }
    if let Some(p) = std::env::var_os("PATH") {
        vars.push((units("PATH"), units(p)));
    }
    let (out_r, out_w) = pipe::anonymous().unwrap();
    let null = std::fs::OpenOptions::new().read(true).write(true).open("NUL").unwrap();
    let null_h = null.as_handle();
    let child = start_suspended(&exe_w, &args, &vars, Some([Some(null_h), Some(out_w.as_handle()), Some(null_h)]))
        .unwrap_or_else(|code| panic!("CreateProcessW: {code}"));
    drop(out_w);
    let plan =
        JobPlan::from_limits(&Limits { pids: Some(8), pids_explicit: true, ..no_limits() }, logical_cpus()).unwrap();
    let job = job::Job::create(&plan).unwrap();
    job.assign(child.process.as_handle()).unwrap();
    assert_eq!(process::exit_code(&child.process).unwrap(), 259, "still suspended");
    process::resume(&child.thread).unwrap();
    let reader = read_in_background(std::fs::File::from(out_r));
    let done = process::wait_any(&[child.process.as_handle()], Some(Duration::from_secs(60))).unwrap();
    assert_eq!(done, Some(0), "the child ended");
    assert_eq!(process::exit_code(&child.process).unwrap(), 7);
    assert_eq!(process::pid(&child.process), child.pid);
    let out = reader.join().unwrap();
    let body = out.split("<<<").nth(1).and_then(|s| s.split(">>>").next()).unwrap_or_else(|| panic!("{out}"));
    let got_args: Vec<Vec<u16>> = body.lines().filter_map(|l| l.strip_prefix("arg ")).map(unhex).collect();
    assert_eq!(got_args, payload);
    let got_env: Vec<(Vec<u16>, Vec<u16>)> = body
        .lines()
        .filter_map(|l| l.strip_prefix("env "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (unhex(k), unhex(v))
        })
        .collect();
    let find = |name: &str| {
        got_env.iter().find(|(k, _)| String::from_utf16_lossy(k).eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    assert_eq!(find(CHILD_ENV), Some(units("echo")));
    assert_eq!(find("Mixed_Case"), Some(units("a=b=c")));
    if !wine() {
        let (user, kernel, peak) = job.accounting().unwrap();
        assert!(user + kernel > Duration::ZERO && peak > 0, "the job accounted for the child");
    }
    job.terminate(0);
}

#[test]
fn failing_launches_report_the_win32_error() {
    let missing = units(r"C:\definitely\missing\program.exe");
    let code = start_suspended(&missing, &[], &[], None).err().expect("no such program");
    assert!(code == 2 || code == 3, "ERROR_FILE_NOT_FOUND or ERROR_PATH_NOT_FOUND, got {code}");
}

#[test]
fn a_sandbox_is_not_started_without_setup() {
    // No `ringfence setup` ran in this (Wine) prefix: spawn fails closed and names the remedy.
    if security::lookup_account(crate::install::ACCOUNT_NAME).ok().flatten().is_some() {
        return; // a set-up machine: covered by the enforcement tests
    }
    let request = ringfence_backend::LaunchRequest {
        program: "cmd".into(),
        args: vec![],
        env: vec![],
        cwd: std::env::temp_dir(),
        policy: crate::prepare::tests::sample_policy(),
        stdio: [ringfence_backend::Stdio::Null, ringfence_backend::Stdio::Null, ringfence_backend::Stdio::Null],
        terminal: false,
        egress: None,
        events: std::sync::Arc::new(|_| {}),
    };
    let spec = crate::LaunchSpec { request, gateway_ports: vec![] };
    let err = crate::spawn(spec).err().expect("spawn must fail without setup");
    assert_eq!(err.kind, crate::ErrorKind::Unsupported, "{err}");
    assert!(err.remedy.as_deref().unwrap_or("").contains("ringfence setup"), "{err}");
}

#[test]
fn state_reports_a_machine_without_setup() {
    let state = crate::state();
    if state.account_sid.is_none() {
        assert!(!state.ready());
        assert!(!state.secret_readable);
        assert_eq!(state.logon_works, None);
        assert!(state.problems().iter().any(|p| p.contains("does not exist")));
    }
    let text = state.to_string();
    assert!(text.contains("WFP filters:"), "{text}");
}

#[test]
fn random_bytes_differ() {
    let a = account::random(32).unwrap();
    let b = account::random(32).unwrap();
    assert_ne!(a, b);
    assert!(crate::install::password_from(&account::random(crate::install::PASSWORD_LEN).unwrap()).len() == 40);
}

#[test]
fn dpapi_round_trips_or_fails_cleanly() {
    match account::protect(b"secret", crate::install::DPAPI_ENTROPY, "test") {
        Ok(blob) => {
            assert_eq!(account::unprotect(&blob, crate::install::DPAPI_ENTROPY).unwrap(), b"secret");
            assert!(account::unprotect(&blob, b"other entropy").is_err());
        }
        Err(e) => assert!(e.message.contains("CryptProtectData"), "{e}"),
    }
}

#[test]
fn system_messages_are_readable() {
    assert!(message(5).to_lowercase().contains("denied"), "{}", message(5));
    let e = os_error("doing a thing", "SomeCall", 2);
    assert!(e.message.starts_with("doing a thing: SomeCall failed with error 2 ("), "{e}");
}

/// The runner of the end-to-end tests below, started with the control pipe's name as its last
/// argument.
fn runner_child() -> ! {
    let name = std::env::args().next_back().unwrap_or_default();
    std::process::exit(crate::runner::main(&name));
}

/// A launch under Wine through `spawn_with`: a scratch ProgramData layout with the caller as
/// the sandbox account, a workspace, and this test binary as the runner.
struct Stage {
    dir: Scratch,
    layout: crate::install::Layout,
    ws: PathBuf,
}

impl Stage {
    fn new(name: &str) -> Stage {
        let dir = scratch(name);
        let layout = crate::install::Layout::new(dir.join("programdata").to_str().unwrap());
        std::fs::create_dir_all(layout.runs()).unwrap();
        std::fs::create_dir_all(layout.grants()).unwrap();
        std::fs::create_dir_all(layout.bin_dir()).unwrap();
        let ws = dir.mkdir("ws");
        Stage { dir, layout, ws }
    }

    /// The sample policy with `rules` (kind, path, what made it) as its file rules and its home
    /// in the scratch folder.
    fn policy(&self, rules: &[(RuleKind, PathBuf, Builtin)]) -> Policy {
        let mut policy = crate::prepare::tests::sample_policy();
        let mut fs = FsRules::default();
        for (kind, path, what) in rules {
            fs.push(*kind, path.clone(), what.clone());
        }
        policy.fs = fs;
        policy.home = self.dir.join("home");
        policy
    }

    /// Only the workspace is writable.
    fn workspace_policy(&self) -> Policy {
        self.policy(&[(RuleKind::Write, self.ws.clone(), Builtin::Workspace { profile: ProfileName::Workspace })])
    }

    /// Runs `program args` in the workspace, without standard handles or a terminal.
    fn spec(
        &self,
        program: OsString,
        args: &[&str],
        env: Vec<(OsString, OsString)>,
        policy: Policy,
    ) -> crate::LaunchSpec {
        let request = ringfence_backend::LaunchRequest {
            program,
            args: args.iter().map(Into::into).collect(),
            env,
            cwd: self.ws.clone(),
            policy,
            stdio: [ringfence_backend::Stdio::Null, ringfence_backend::Stdio::Null, ringfence_backend::Stdio::Null],
            terminal: false,
            egress: None,
            events: std::sync::Arc::new(|_| {}),
        };
        crate::LaunchSpec { request, gateway_ports: vec![] }
    }

    fn launch(&self, spec: crate::LaunchSpec) -> Result<crate::Sandbox, crate::LaunchError> {
        let me = security::current_user().unwrap();
        let installed = crate::setup::Installed {
            layout: self.layout.clone(),
            account: me.clone(),
            password: String::new(),
            user: me,
            profile: self.dir.join("profile").to_str().unwrap().to_string(),
            slots: (0..crate::grants::SLOT_COUNT).map(|i| Sid::new(5, &[21, 9, 9, 9, 2000 + u32::from(i)])).collect(),
        };
        let start = RunnerStart::Caller {
            exe: std::env::current_exe().unwrap().to_str().unwrap().to_string(),
            args: CHILD_ARGS.iter().map(|s| s.to_string()).collect(),
            env: vec![(CHILD_ENV.into(), "runner".into())],
        };
        spawn_with(spec, installed, start)
    }

    /// Whether no journal is left: the run cleaned up after itself.
    fn journals_removed(&self) -> bool {
        std::fs::read_dir(self.layout.runs()).unwrap().next().is_none()
    }
}

/// The Windows folder, for the command's `PATH`.
fn system_root() -> String {
    std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\windows".into())
}

/// The whole launch sequence under Wine: runner, control pipes, protocol, journal and ACL
/// plan, desktop, restricted token, job, handle passing, resume, wait and clean-up. Wine's
/// secondary logon is a stub, so the runner starts as the caller; nothing here is isolated,
/// and on Windows the test is skipped (it would change the caller's own desktop's ACL).
#[test]
fn the_launch_sequence_runs_end_to_end_under_wine() {
    if !wine() {
        return;
    }
    let stage = Stage::new("e2e");
    let ws = stage.ws.clone();
    let mut policy = stage.policy(&[
        (RuleKind::Read, PathBuf::from(r"C:\"), Builtin::ReadRoot { profile: ProfileName::Workspace }),
        (RuleKind::Write, ws.clone(), Builtin::Workspace { profile: ProfileName::Workspace }),
        (RuleKind::DenyWrite, ws.join(".vscode"), Builtin::ProtectedPath),
    ]);
    policy.workspace = ws.clone();
    let (reader, writer) = std::io::pipe().unwrap();
    let writer2 = writer.try_clone().unwrap();
    let root = system_root();
    let env =
        vec![("PATH".into(), format!(r"{root}\system32;{root}").into()), ("RF_E2E".into(), "from the env".into())];
    let mut spec = stage.spec("cmd.exe".into(), &["/d", "/c", "echo hello& echo %RF_E2E%& exit 3"], env, policy);
    spec.request.stdio = [
        ringfence_backend::Stdio::Null,
        ringfence_backend::Stdio::Stream(writer.into()),
        ringfence_backend::Stdio::Stream(writer2.into()),
    ];
    let sandbox = stage.launch(spec).unwrap_or_else(|e| panic!("spawn: {e}"));
    assert!(sandbox.id() > 0);
    let names: Vec<&str> = sandbox.enforcement.enforced.iter().map(|l| l.name.as_str()).collect();
    assert!(names.contains(&"job object") && names.contains(&"network"), "{names:?}");
    assert!(ws.join(".vscode").is_dir(), "the placeholder exists while the run does");
    let out = read_in_background(reader);
    let outcome = sandbox.wait().unwrap();
    let out = out.join().unwrap();
    assert_eq!(outcome.exit_code, 3, "{out}");
    assert!(!outcome.timed_out);
    assert!(out.contains("hello") && out.contains("from the env"), "{out}");
    assert!(outcome.cleanup_warnings.is_empty(), "{:?}", outcome.cleanup_warnings);
    assert!(!ws.join(".vscode").exists(), "the placeholder is removed");
    assert!(stage.journals_removed(), "the journal is removed");
}

/// The terminal path under Wine: a pseudoconsole made by the runner, relayed here. Wine's
/// pseudoconsole support varies; the run either works or fails naming the call.
#[test]
fn the_terminal_path_runs_or_fails_cleanly_under_wine() {
    if !wine() {
        return;
    }
    let stage = Stage::new("e2e-tty");
    let env = vec![("PATH".into(), format!(r"{}\system32", system_root()).into())];
    let mut spec = stage.spec("cmd.exe".into(), &["/d", "/c", "exit 4"], env, stage.workspace_policy());
    spec.request.terminal = true;
    match stage.launch(spec) {
        Ok(sandbox) => {
            let outcome = sandbox.wait().unwrap();
            assert_eq!(outcome.exit_code, 4);
        }
        Err(e) => assert!(e.message.contains("CreatePseudoConsole"), "{e}"),
    }
    assert!(stage.journals_removed(), "the journal is removed");
}

/// A command that runs until it is killed.
fn sleeper_child() -> ! {
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(0);
}

/// Starts this test binary as a sleeper in a sandbox under Wine, with `timeout`.
fn spawn_sleeper(name: &str, timeout: Option<Duration>) -> (crate::Sandbox, Stage) {
    let stage = Stage::new(name);
    let mut policy = stage.workspace_policy();
    policy.limits.timeout = timeout.map(ringfence_policy::HumanDuration);
    let mut env: Vec<(OsString, OsString)> = vec![(CHILD_ENV.into(), "sleeper".into())];
    env.extend(["PATH", "WINEPATH", "SystemRoot"].iter().filter_map(|k| std::env::var_os(k).map(|v| ((*k).into(), v))));
    let exe = std::env::current_exe().unwrap().into_os_string();
    let spec = stage.spec(exe, &CHILD_ARGS, env, policy);
    (stage.launch(spec).unwrap_or_else(|e| panic!("spawn: {e}")), stage)
}

#[test]
fn the_timeout_ends_the_run_under_wine() {
    if !wine() {
        return;
    }
    let started = std::time::Instant::now();
    let (sandbox, _stage) = spawn_sleeper("e2e-timeout", Some(Duration::from_millis(1500)));
    let outcome = sandbox.wait().unwrap();
    assert!(outcome.timed_out, "{outcome:?}");
    assert_eq!(outcome.exit_code, crate::KILLED_EXIT_CODE);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_killer_ends_the_run_from_another_thread_under_wine() {
    if !wine() {
        return;
    }
    let (sandbox, _stage) = spawn_sleeper("e2e-kill", None);
    let killer = sandbox.killer();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        killer.kill();
    });
    let started = std::time::Instant::now();
    let outcome = sandbox.wait().unwrap();
    t.join().unwrap();
    assert!(!outcome.timed_out);
    assert_eq!(outcome.exit_code, crate::KILLED_EXIT_CODE);
    assert!(started.elapsed() < Duration::from_secs(30));
}
