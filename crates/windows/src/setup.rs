//! `setup`, `uninstall` and `state`: the sandbox account, its secret, the runner, the WFP
//! filters, and what `spawn` reads of them.

use crate::error::{ErrorKind, LaunchError, SETUP_REMEDY};
use crate::install::{self, Layout, Record};
use crate::protocol::PROTOCOL_VERSION;
use crate::report::{FilterState, SetupReport, SetupState};
use crate::sid::Sid;
use crate::sys::{account, security, wfp as swfp};
use crate::{wfp, ACCOUNT_NAME};
use std::path::{Path, PathBuf};

const COMMENT: &str = "ringfence: runs sandboxed commands; created by `ringfence setup`";

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
    let w: Vec<u16> = path.encode_utf16().chain([0]).collect();
    let acl = sd.dacl.clone().unwrap_or_default();
    security::set_file_dacl(&w, &acl, sd.protected)
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

/// Creates (or repairs) the sandbox account, its secret, the runner and the WFP filters.
/// Idempotent: a second run resets the password and reinstalls the filters and the runner.
pub fn setup() -> Result<SetupReport, LaunchError> {
    elevated_or_fail("setup")?;
    let mut report = SetupReport::default();
    let user = security::current_user()?;
    let layout = layout();

    // The account, with a fresh password.
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

    // The folders and their protection.
    for dir in [layout.root.clone(), layout.bin_dir(), layout.runs()] {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {dir}")))?;
    }
    protect_path(&layout.root, &install::root_sd(&user))?;
    protect_path(&layout.bin_dir(), &install::bin_sd(&user, &sid))?;
    protect_path(&layout.runs(), &install::runs_sd(&user))?;

    // The secret: DPAPI for the installing user, and an ACL for admins and that user only.
    let plain: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let blob = account::protect(&plain, install::DPAPI_ENTROPY, "ringfence sandbox account")?;
    write_protected(&layout.secret(), &blob, &install::secret_sd(&user))?;
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
    protect_path(&layout.bin_dir(), &install::bin_sd(&user, &sid))?;
    report.did(format!("installed the runner {runner}"));

    // The filters.
    let filters = wfp::sandbox_filters(&sid);
    let engine = swfp::Engine::open()?;
    engine.transaction(|e| {
        for i in 0..wfp::FILTER_KEY_SWEEP {
            e.delete_filter(wfp::filter_key(i))?;
        }
        e.add_provider_and_sublayer()?;
        for f in &filters {
            e.add_filter(f)?;
        }
        Ok(())
    })?;
    report.did(format!(
        "installed {} persistent WFP filters for {sid}: loopback ports {}-{} only; DNS, SMB, ICMP blocked",
        filters.len(),
        crate::GATEWAY_PORT_RANGE.start(),
        crate::GATEWAY_PORT_RANGE.end()
    ));

    let record = Record { account: sid, user, filters: filters.len(), protocol: PROTOCOL_VERSION };
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

/// Removes everything `setup` installed. Runs that died are cleaned up first; a live run
/// makes it stop.
pub fn uninstall() -> Result<SetupReport, LaunchError> {
    elevated_or_fail("uninstall")?;
    let mut report = SetupReport::default();
    let layout = layout();
    let runs = PathBuf::from(layout.runs());
    for w in crate::changes::recover(&runs) {
        report.did(format!("warning: {w}"));
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
    let engine = swfp::Engine::open()?;
    let removed = engine.transaction(|e| {
        let mut n = 0;
        for i in 0..wfp::FILTER_KEY_SWEEP {
            n += e.delete_filter(wfp::filter_key(i))? as usize;
        }
        e.delete_provider_and_sublayer()?;
        Ok(n)
    })?;
    report.did(format!("removed {removed} WFP filters and ringfence's sublayer and provider"));
    if let Some(sid) = security::lookup_account(ACCOUNT_NAME)? {
        account::remove_all_rights(&sid)?;
        account::delete_user(ACCOUNT_NAME)?;
        report.did(format!("deleted the local account {ACCOUNT_NAME} ({sid})"));
    }
    account::hide_from_sign_in(ACCOUNT_NAME, false)?;
    if Path::new(&layout.root).exists() {
        std::fs::remove_dir_all(&layout.root).map_err(io(format!("removing {}", layout.root)))?;
        report.did(format!("removed {}", layout.root));
    }
    Ok(report)
}

/// What `spawn` needs from the installation.
#[derive(Debug)]
pub struct Installed {
    pub layout: Layout,
    pub account: Sid,
    pub password: String,
    /// How the filters were checked, for the network layer's description.
    pub filters_note: Option<String>,
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
    let expected = wfp::sandbox_filters(&account);
    let filters_note = match count_filters(&expected) {
        Ok(n) if n == expected.len() => None,
        Ok(n) => {
            return Err(crate::error::needs_setup(format!(
                "{} of the {} WFP filters of the sandbox account are missing",
                expected.len() - n,
                expected.len()
            )))
        }
        // Standard users may not be allowed to read the filter engine; the record was written
        // by the elevated setup that installed them (only administrators can change it).
        Err(e) if record.filters == expected.len() => {
            Some(format!("installed by setup; not re-read because the filter engine refused this user: {}", e.message))
        }
        Err(e) => return Err(e.context("checking the WFP filters")),
    };
    Ok(Installed { layout, account, password, filters_note })
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
    SetupState {
        elevated: security::is_elevated(),
        account_sid: account_sid.map(|s| s.to_string()),
        secret_readable,
        logon_works,
        runner_installed: Path::new(&layout.runner()).is_file(),
        filters,
        notes,
    }
}
