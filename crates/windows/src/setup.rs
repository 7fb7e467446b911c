//! `setup`, `uninstall` and `state`: the sandbox account, its profile, its slot groups, its
//! secret, the runner, the WFP filters, the NUL device's entry, and what `spawn` reads of them.

use crate::error::{ErrorKind, LaunchError, SETUP_REMEDY};
use crate::install::{self, Layout, Record, ACCOUNT_NAME};
use crate::protocol::{BOOT_ARG, PROTOCOL_VERSION};
use crate::report::{FilterState, SetupReport, SetupState};
use crate::sid::{capability, Sid};
use crate::slots::Slots;
use crate::sys::{account, security, wfp as swfp};
use crate::{grants, wfp};
use std::path::{Path, PathBuf};

const COMMENT: &str = "ringfence: runs sandboxed commands; created by `ringfence setup`";
const GROUP_COMMENT: &str = "ringfence: one workspace's access for the sandbox account; created by `ringfence setup`";

/// Where ringfence keeps its installation: `%ProgramData%\ringfence`.
pub fn layout() -> Layout {
    let pd = std::env::var("ProgramData").unwrap_or_else(|_| r"C:\ProgramData".into());
    Layout::new(&pd)
}

fn elevated_or_fail(what: &str) -> Result<(), LaunchError> {
    if security::is_elevated() {
        return Ok(());
    }
    Err(LaunchError::unsupported(
        format!("`ringfence {what}` changes machine-wide settings and needs an elevated prompt"),
        format!("open a terminal with \"Run as administrator\" and run `ringfence {what}` again"),
    ))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> LaunchError {
    move |e| LaunchError::internal(format!("{what}: {e}"))
}

fn protect_path(path: &str, sd: &crate::acl::SecurityDescriptor) -> Result<(), LaunchError> {
    let acl = sd.dacl.clone().unwrap_or_default();
    security::set_file_dacl(path, &acl, sd.protected)
        .map_err(|code| crate::sys::os_error(format!("protecting {path}"), "SetNamedSecurityInfoW", code))
}

/// Writes `data` to `path` through a temporary file in the same folder, then protects it.
fn write_protected(path: &str, data: &[u8], sd: &crate::acl::SecurityDescriptor) -> Result<(), LaunchError> {
    let tmp = format!("{path}.new");
    std::fs::write(&tmp, data).map_err(io(format!("writing {tmp}")))?;
    protect_path(&tmp, sd)?;
    std::fs::rename(&tmp, path).map_err(io(format!("replacing {path}")))?;
    protect_path(path, sd)
}

/// The account with a fresh password, its logon rights, hidden from the sign-in screen.
fn setup_account(report: &mut SetupReport) -> Result<(Sid, String), LaunchError> {
    let random = account::random(install::PASSWORD_LEN)?;
    let password = install::password_from(&random);
    let created = account::create_or_reset_user(ACCOUNT_NAME, &password, COMMENT)?;
    report.did(if created {
        format!("created the local account {ACCOUNT_NAME}")
    } else {
        format!("reset the password of the local account {ACCOUNT_NAME}")
    });
    let sid = security::lookup_account(ACCOUNT_NAME)?
        .ok_or_else(|| LaunchError::internal(format!("the account {ACCOUNT_NAME} vanished after it was created")))?;
    account::add_rights(&sid, account::DENIED_RIGHTS)?;
    report.did(format!("denied {ACCOUNT_NAME} network and Remote Desktop logons"));
    account::hide_from_sign_in(ACCOUNT_NAME, true)?;
    report.did(format!("hid {ACCOUNT_NAME} from the sign-in screen"));
    Ok((sid, password))
}

/// The slot groups, with the account a member of each; their SIDs by index.
fn setup_slot_groups(account_sid: &Sid, report: &mut SetupReport) -> Result<Vec<Sid>, LaunchError> {
    let mut sids = Vec::with_capacity(usize::from(grants::SLOT_COUNT));
    for i in 0..grants::SLOT_COUNT {
        let name = grants::group_name(i);
        account::ensure_group(&name, GROUP_COMMENT)?;
        account::add_to_group(&name, account_sid)?;
        let sid = security::lookup_account(&name)?
            .ok_or_else(|| LaunchError::internal(format!("the local group {name} vanished after it was created")))?;
        sids.push(sid);
    }
    report.did(format!(
        "created {} slot groups ({} … {}) with {ACCOUNT_NAME} in each",
        grants::SLOT_COUNT,
        grants::group_name(0),
        grants::group_name(grants::SLOT_COUNT - 1)
    ));
    Ok(sids)
}

/// The folders under `%ProgramData%`, the secret and the runner.
fn setup_files(
    layout: &Layout,
    user: &Sid,
    sid: &Sid,
    password: &str,
    report: &mut SetupReport,
) -> Result<(), LaunchError> {
    for dir in [layout.root.clone(), layout.bin_dir(), layout.runs(), layout.grants()] {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {dir}")))?;
    }
    protect_path(&layout.root, &install::root_sd(user))?;
    protect_path(&layout.bin_dir(), &install::bin_sd(user, sid))?;
    protect_path(&layout.runs(), &install::runs_sd(user))?;
    protect_path(&layout.grants(), &install::runs_sd(user))?;

    // The secret: DPAPI for the installing user, and an ACL for admins and that user only.
    let plain: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let blob = account::protect(&plain, install::DPAPI_ENTROPY, "ringfence sandbox account")?;
    write_protected(&layout.secret(), &blob, &install::secret_sd(user))?;
    report.did(format!("stored the password, protected with DPAPI for {user}, in {}", layout.secret()));

    // The runner: this program, where the account can run it and only admins can change it.
    let me = std::env::current_exe().map_err(io("finding this program".into()))?;
    let runner = layout.runner();
    if !same_file(&me, Path::new(&runner)) {
        let tmp = format!("{runner}.new");
        std::fs::copy(&me, &tmp).map_err(io(format!("copying {} to {tmp}", me.display())))?;
        let _ = std::fs::remove_file(&runner);
        std::fs::rename(&tmp, &runner).map_err(io(format!("installing {runner}")))?;
    }
    protect_path(&layout.bin_dir(), &install::bin_sd(user, sid))?;
    report.did(format!("installed the runner {runner}"));
    Ok(())
}

/// An entry granting `user` the WFP right `mask`.
fn user_right(user: &Sid, mask: u32) -> crate::acl::Ace {
    crate::acl::Ace::Allow { flags: 0, mask, sid: user.clone() }
}

/// The persistent filters, and the installing user's rights to check them and to add a run's
/// gateway permits to ringfence's sublayer (so `spawn` needs no elevation).
fn setup_filters(sid: &Sid, user: &Sid, report: &mut SetupReport) -> Result<usize, LaunchError> {
    let filters = wfp::sandbox_filters(sid);
    let engine = swfp::Engine::open()?;
    engine.transaction(|e| {
        for i in 0..wfp::FILTER_KEY_SWEEP {
            e.delete_filter(wfp::filter_key(i))?;
        }
        e.add_provider_and_sublayer()?;
        for f in &filters {
            e.add_filter(f, true)?;
        }
        Ok(())
    })?;
    // Security can't change inside a transaction: after the commit.
    for f in &filters {
        engine.allow(swfp::Object::Filter, Some(f.key), user_right(user, wfp::rights::READ))?;
    }
    engine.allow(swfp::Object::Filter, None, user_right(user, wfp::rights::ADD))?;
    engine.allow(swfp::Object::SubLayer, Some(wfp::SUBLAYER_KEY), user_right(user, wfp::rights::ADD_LINK))?;
    report.did(format!(
        "installed {} persistent WFP filters for {sid}: no connection out, DNS, SMB and ICMP hard-blocked; {user} may \
         read them and add a run's gateway permits",
        filters.len()
    ));
    Ok(filters.len())
}

/// The NUL device's entry for sandboxed commands, now and at every boot.
fn setup_null_device(layout: &Layout, report: &mut SetupReport) -> Result<(), LaunchError> {
    security::grant_null_device(install::null_device_ace())
        .map_err(|e| e.context("letting sandboxed commands write to NUL"))?;
    account::install_boot_task(install::BOOT_TASK, &layout.runner(), BOOT_ARG)?;
    report.did(format!(
        "let sandboxed commands write to the NUL device (again at every boot: the scheduled task {})",
        install::BOOT_TASK
    ));
    Ok(())
}

/// Creates (or repairs) the sandbox account, its profile, its slot groups, its secret, the
/// runner, the WFP filters and the NUL device's entry. Idempotent: a second run resets the
/// password and reinstalls the filters and the runner.
pub fn setup() -> Result<SetupReport, LaunchError> {
    elevated_or_fail("setup")?;
    let mut report = SetupReport::default();
    let user = security::current_user()?;
    let layout = layout();
    let (sid, password) = setup_account(&mut report)?;
    let slots = setup_slot_groups(&sid, &mut report)?;
    setup_files(&layout, &user, &sid, &password, &mut report)?;
    let filters = setup_filters(&sid, &user, &mut report)?;
    let profile = account::create_profile(ACCOUNT_NAME, &password)?;
    report.did(format!("created the profile of {ACCOUNT_NAME} in {profile}"));
    setup_null_device(&layout, &mut report)?;
    let record = Record { account: sid, user, filters, protocol: PROTOCOL_VERSION, profile, slots };
    write_protected(&layout.record(), record.to_text().as_bytes(), &install::secret_sd(&record.user))?;
    account::logon(ACCOUNT_NAME, &password)?;
    report.did(format!("checked that {ACCOUNT_NAME} can log on"));
    Ok(report)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Undoes the journals of runs that died; refuses while a run is in progress or while anything
/// a run changed could not be undone.
fn undo_runs(layout: &Layout, report: &mut SetupReport) -> Result<(), LaunchError> {
    let runs = PathBuf::from(layout.runs());
    let left = crate::changes::recover(&runs);
    if !left.is_empty() {
        return Err(left_behind(&left));
    }
    if std::fs::read_dir(&runs)
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "journal"))))
        .unwrap_or(false)
    {
        return Err(LaunchError::new(
            ErrorKind::Policy,
            "a sandboxed run is still in progress",
            Some("wait for it to end (or end it), then run `ringfence uninstall` again".into()),
        ));
    }
    report.did("undid what runs that died had left");
    Ok(())
}

/// The error for ACL entries earlier runs left that can't be removed.
fn left_behind(left: &[String]) -> LaunchError {
    LaunchError::unsupported(
        format!("ACL entries of earlier runs could not be removed:\n  {}", left.join("\n  ")),
        "restore your access to those paths (or remove the entries with `icacls <path> /remove:g *<SID>`), \
         then try again",
    )
}

/// The slot SIDs and user to take the grants back with: from the record, or (a record of
/// another version) looked up.
fn grant_owner(layout: &Layout) -> Result<Slots, LaunchError> {
    if let Ok(record) = read_record(layout) {
        return Ok(Slots::new(&layout.grants(), record.slots, record.user));
    }
    let mut sids = Vec::new();
    for i in 0..grants::SLOT_COUNT {
        let name = grants::group_name(i);
        sids.push(security::lookup_account(&name)?.unwrap_or_else(|| Sid::new(0, &[0])));
    }
    Ok(Slots::new(&layout.grants(), sids, security::current_user()?))
}

/// Removes the filters and the installing user's rights on the filter engine.
fn uninstall_filters(layout: &Layout, report: &mut SetupReport) -> Result<(), LaunchError> {
    let engine = swfp::Engine::open()?;
    let removed = engine.transaction(|e| {
        let mut n = 0;
        for i in 0..wfp::FILTER_KEY_SWEEP {
            n += e.delete_filter(wfp::filter_key(i))? as usize;
        }
        e.delete_provider_and_sublayer()?;
        Ok(n)
    })?;
    if let Ok(record) = read_record(layout) {
        engine.revoke(swfp::Object::Filter, None, &user_right(&record.user, wfp::rights::ADD))?;
    }
    report.did(format!("removed {removed} WFP filters, ringfence's sublayer and provider, and the user's rights"));
    Ok(())
}

/// Deletes the account's profile. Windows unloads a profile a little after its last process
/// ends, and refuses to delete it while loaded: a few tries, a second apart.
fn delete_profile(sid: &Sid) -> Result<(), LaunchError> {
    let mut tries = 0;
    loop {
        match account::delete_profile(sid) {
            Ok(()) => return Ok(()),
            Err(_) if tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(mut e) => {
                e.remedy = Some(
                    "the profile is still in use: end what runs as the sandbox account, then run \
                                 `ringfence uninstall` again"
                        .into(),
                );
                return Err(e);
            }
        }
    }
}

/// Removes everything `setup` installed, and every grant runs made. Runs that died are cleaned
/// up first; a live run makes it stop, and so does anything that can't be undone (it is named,
/// and `uninstall` can run again once it is fixed).
pub fn uninstall() -> Result<SetupReport, LaunchError> {
    elevated_or_fail("uninstall")?;
    let mut report = SetupReport::default();
    let layout = layout();
    undo_runs(&layout, &mut report)?;
    if Path::new(&layout.grants()).is_dir() {
        let left = grant_owner(&layout)?.forget_all();
        if !left.is_empty() {
            return Err(left_behind(&left));
        }
        report.did("took every workspace's slot entries back");
    }
    uninstall_filters(&layout, &mut report)?;
    security::revoke_null_device(&capability())?;
    account::remove_boot_task(install::BOOT_TASK)?;
    report.did("removed the NUL device's entry and its boot task");
    if let Some(sid) = security::lookup_account(ACCOUNT_NAME)? {
        delete_profile(&sid)?;
        report.did(format!("deleted the profile of {ACCOUNT_NAME}"));
        account::remove_all_rights(&sid)?;
        account::delete_user(ACCOUNT_NAME)?;
        report.did(format!("deleted the local account {ACCOUNT_NAME} ({sid})"));
    }
    for i in 0..grants::SLOT_COUNT {
        account::delete_group(&grants::group_name(i))?;
    }
    report.did(format!("deleted the {} slot groups", grants::SLOT_COUNT));
    account::hide_from_sign_in(ACCOUNT_NAME, false)?;
    if Path::new(&layout.root).exists() {
        std::fs::remove_dir_all(&layout.root).map_err(io(format!("removing {}", layout.root)))?;
        report.did(format!("removed {}", layout.root));
    }
    Ok(report)
}

/// Takes back the persistent grant of the root `path` (its slot entries, propagated below it),
/// for a workspace that no longer needs sandboxed runs; `uninstall` does it for all of them.
pub fn forget_root(path: &Path) -> Result<(), LaunchError> {
    let layout = layout();
    let record = read_record(&layout)?;
    let text = path
        .to_str()
        .map(crate::wpath::normalize)
        .ok_or_else(|| LaunchError::policy(format!("{} is not valid Unicode", path.display()), "rename it"))?;
    Slots::new(&layout.grants(), record.slots, record.user).forget(&text)
}

/// The boot task's work: the NUL device's entry again (device ACLs don't survive a restart).
pub fn boot() -> i32 {
    match security::grant_null_device(install::null_device_ace()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ringfence: {e}");
            1
        }
    }
}

/// What `spawn` needs from the installation.
#[derive(Debug)]
pub struct Installed {
    pub layout: Layout,
    pub account: Sid,
    pub password: String,
    /// The user who ran setup (and runs ringfence).
    pub user: Sid,
    pub profile: String,
    pub slots: Vec<Sid>,
}

fn read_record(layout: &Layout) -> Result<Record, LaunchError> {
    let text = std::fs::read_to_string(layout.record()).map_err(|e| {
        crate::error::needs_setup(format!("ringfence is not set up on this machine ({}: {e})", layout.record()))
    })?;
    Record::parse(&text).map_err(|e| crate::error::needs_setup(format!("{}: {e}", layout.record())))
}

fn read_secret(layout: &Layout) -> Result<String, LaunchError> {
    let blob = std::fs::read(layout.secret()).map_err(|e| {
        crate::error::needs_setup(format!("the sandbox account's password can't be read ({}: {e})", layout.secret()))
    })?;
    let plain = account::unprotect(&blob, install::DPAPI_ENTROPY).map_err(|e| {
        LaunchError::unsupported(
            format!("the sandbox account's password can't be decrypted by this user ({e})"),
            format!("{SETUP_REMEDY}, from the account that runs ringfence"),
        )
    })?;
    let units: Vec<u16> = plain.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).map_err(|_| crate::error::needs_setup("the stored password is damaged"))
}

/// Counts the expected filters present; Err when the engine can't be read.
fn count_filters(expected: &[wfp::FilterSpec]) -> Result<usize, LaunchError> {
    let engine = swfp::Engine::open()?;
    let mut n = 0;
    for f in expected {
        n += engine.has_filter(f.key)? as usize;
    }
    Ok(n)
}

/// Checks the filters are all installed. Filters that can't be read are not trusted: the
/// installing user was given the right to read them, so another user (or a machine whose
/// filter engine was reset) must run setup again.
fn check_filters(account: &Sid) -> Result<(), LaunchError> {
    let expected = wfp::sandbox_filters(account);
    let n = count_filters(&expected).map_err(|e| {
        crate::error::needs_setup(format!(
            "the WFP filters of the sandbox account can't be checked by this user ({})",
            e.message
        ))
    })?;
    if n != expected.len() {
        return Err(crate::error::needs_setup(format!(
            "{} of the {} WFP filters of the sandbox account are missing",
            expected.len() - n,
            expected.len()
        )));
    }
    Ok(())
}

/// Checks sandboxed commands may write to NUL, adding the entry if this process may (an
/// elevated one) when a restart took it away and the boot task has not run.
fn check_null_device() -> Result<(), LaunchError> {
    if install::null_device_writable(security::null_device_dacl()?.as_ref()) {
        return Ok(());
    }
    if security::grant_null_device(install::null_device_ace()).is_ok()
        && install::null_device_writable(security::null_device_dacl()?.as_ref())
    {
        return Ok(());
    }
    Err(crate::error::needs_setup(format!(
        "the NUL device does not let sandboxed commands write to it (the scheduled task {} adds that at boot)",
        install::BOOT_TASK
    )))
}

/// Everything `spawn` needs, or the reason it can't run (with the remedy).
pub fn installed() -> Result<Installed, LaunchError> {
    let layout = layout();
    let record = read_record(&layout)?;
    if record.protocol != PROTOCOL_VERSION {
        return Err(crate::error::needs_setup(format!(
            "the installed runner speaks protocol {}, this ringfence {PROTOCOL_VERSION}",
            record.protocol
        )));
    }
    let account = security::lookup_account(ACCOUNT_NAME)?
        .ok_or_else(|| crate::error::needs_setup(format!("the sandbox account {ACCOUNT_NAME} does not exist")))?;
    if account != record.account {
        return Err(crate::error::needs_setup(format!(
            "the sandbox account {ACCOUNT_NAME} was recreated outside ringfence ({account}, filters are for {})",
            record.account
        )));
    }
    if !Path::new(&layout.runner()).is_file() {
        return Err(crate::error::needs_setup(format!("the runner {} is missing", layout.runner())));
    }
    let password = read_secret(&layout)?;
    check_filters(&account)?;
    check_null_device()?;
    Ok(Installed { layout, account, password, user: record.user, profile: record.profile, slots: record.slots })
}

/// The machine's state, for `ringfence check`.
pub fn state() -> SetupState {
    let layout = layout();
    let mut notes = Vec::new();
    let account_sid = match security::lookup_account(ACCOUNT_NAME) {
        Ok(s) => s,
        Err(e) => {
            notes.push(e.message);
            None
        }
    };
    let secret = read_secret(&layout);
    let (secret_readable, logon_works) = match &secret {
        Ok(pw) => {
            let logon = account::logon(ACCOUNT_NAME, pw);
            if let Err(e) = &logon {
                notes.push(e.message.clone());
            }
            (true, Some(logon.is_ok()))
        }
        Err(e) => {
            if account_sid.is_some() {
                notes.push(e.message.clone());
            }
            (false, None)
        }
    };
    let placeholder = Sid::new(5, &[21, 0, 0, 0, 0]);
    let expected = wfp::sandbox_filters(account_sid.as_ref().unwrap_or(&placeholder));
    let filters = match count_filters(&expected) {
        Ok(n) if n == expected.len() => FilterState::Present { count: n },
        Ok(n) => FilterState::Missing { missing: expected.len() - n, expected: expected.len() },
        Err(e) => FilterState::Unknown(e.message),
    };
    let record = read_record(&layout);
    if let Err(e) = &record {
        if account_sid.is_some() {
            notes.push(e.message.clone());
        }
    }
    let null_device = match security::null_device_dacl() {
        Ok(dacl) => Some(install::null_device_writable(dacl.as_ref())),
        Err(e) => {
            notes.push(e.message);
            None
        }
    };
    SetupState {
        elevated: security::is_elevated(),
        account_sid: account_sid.map(|s| s.to_string()),
        secret_readable,
        logon_works,
        runner_installed: Path::new(&layout.runner()).is_file(),
        filters,
        profile: record.as_ref().ok().map(|r| r.profile.clone()).filter(|p| Path::new(p).is_dir()),
        null_device,
        not_enforced: crate::prepare::platform_gaps(ringfence_policy::NetworkMode::None),
        notes,
    }
}
