//! The job object: creation from a [`JobPlan`], its completion port (which reports memory-limit
//! hits), accounting, and termination.

use super::{last_os_error, owned};
use crate::error::LaunchError;
use crate::job::JobPlan;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle};
use std::time::Duration;
use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectAssociateCompletionPortInformation,
    JobObjectBasicAndIoAccountingInformation, JobObjectBasicUIRestrictions, JobObjectCpuRateControlInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject, TerminateJobObject,
    JOBOBJECTINFOCLASS, JOBOBJECT_ASSOCIATE_COMPLETION_PORT, JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION,
    JOBOBJECT_BASIC_UI_RESTRICTIONS, JOBOBJECT_CPU_RATE_CONTROL_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
};
use windows_sys::Win32::System::IO::{CreateIoCompletionPort, GetQueuedCompletionStatus, OVERLAPPED};

/// JOB_OBJECT_MSG_JOB_MEMORY_LIMIT.
pub const MSG_JOB_MEMORY_LIMIT: u32 = 10;

/// JOB_OBJECT_ASSIGN_PROCESS: the only right the runner gets on the job.
pub const JOB_ASSIGN_PROCESS: u32 = 0x0001;

/// A JOBOBJECT_* structure and the information class that reads or writes it.
///
/// # Safety
/// The type is plain data (whatever bytes the system writes are a value of it), and it is the
/// structure of `CLASS`.
unsafe trait JobInfo {
    const CLASS: JOBOBJECTINFOCLASS;
}

// SAFETY: plain data, the structure of its class (winnt.h).
unsafe impl JobInfo for JOBOBJECT_EXTENDED_LIMIT_INFORMATION {
    const CLASS: JOBOBJECTINFOCLASS = JobObjectExtendedLimitInformation;
}

// SAFETY: plain data, the structure of its class (winnt.h).
unsafe impl JobInfo for JOBOBJECT_BASIC_UI_RESTRICTIONS {
    const CLASS: JOBOBJECTINFOCLASS = JobObjectBasicUIRestrictions;
}

// SAFETY: plain data, the structure of its class (winnt.h).
unsafe impl JobInfo for JOBOBJECT_CPU_RATE_CONTROL_INFORMATION {
    const CLASS: JOBOBJECTINFOCLASS = JobObjectCpuRateControlInformation;
}

// SAFETY: plain data, the structure of its class (winnt.h).
unsafe impl JobInfo for JOBOBJECT_ASSOCIATE_COMPLETION_PORT {
    const CLASS: JOBOBJECTINFOCLASS = JobObjectAssociateCompletionPortInformation;
}

// SAFETY: plain data, the structure of its class (winnt.h).
unsafe impl JobInfo for JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION {
    const CLASS: JOBOBJECTINFOCLASS = JobObjectBasicAndIoAccountingInformation;
}

fn set<T: JobInfo>(job: &OwnedHandle, info: &T, what: &str) -> Result<(), LaunchError> {
    // SAFETY: `info` is the structure its class expects (the trait's promise), and lives
    // through the call.
    let ok = unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            T::CLASS,
            (info as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if ok == 0 {
        return Err(last_os_error(what, "SetInformationJobObject"));
    }
    Ok(())
}

fn query<T: JobInfo + Default>(job: &OwnedHandle, what: &str) -> Result<T, LaunchError> {
    let mut info = T::default();
    // SAFETY: `info` is the structure its class fills (the trait's promise), sized by size_of;
    // any bytes the call writes make a value of it.
    let ok = unsafe {
        QueryInformationJobObject(
            job.as_raw_handle(),
            T::CLASS,
            (&mut info as *mut T).cast(),
            std::mem::size_of::<T>() as u32,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(last_os_error(what, "QueryInformationJobObject"));
    }
    Ok(info)
}

/// A job and the completion port its notifications arrive on.
pub struct Job {
    pub handle: OwnedHandle,
    port: OwnedHandle,
}

impl Job {
    /// Creates an unnamed job configured by `plan`. Fails closed: a limit the system refuses
    /// is an error, not a job without it.
    pub fn create(plan: &JobPlan) -> Result<Job, LaunchError> {
        // SAFETY: no security attributes (the default DACL: this user only), no name.
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        // SAFETY: just returned by the call, owned by nothing else.
        let handle = unsafe { owned(handle, "creating the job object", "CreateJobObjectW") }?;
        let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        limits.BasicLimitInformation.LimitFlags = plan.limit_flags;
        limits.BasicLimitInformation.ActiveProcessLimit = plan.active_processes.unwrap_or(0);
        limits.JobMemoryLimit = plan.job_memory.map(|m| usize::try_from(m).unwrap_or(usize::MAX)).unwrap_or(0);
        set(&handle, &limits, "setting the job's limits")?;
        let ui = JOBOBJECT_BASIC_UI_RESTRICTIONS { UIRestrictionsClass: plan.ui_restrictions };
        set(&handle, &ui, "setting the job's UI restrictions")?;
        if let Some(rate) = plan.cpu_rate {
            let mut cpu = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION {
                ControlFlags: crate::job::cpu::ENABLE | crate::job::cpu::HARD_CAP,
                ..Default::default()
            };
            cpu.Anonymous.CpuRate = rate;
            set(&handle, &cpu, "setting the job's CPU cap")?;
        }
        // SAFETY: a new port, not associated with a file.
        let port = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, std::ptr::null_mut(), 0, 1) };
        // SAFETY: just returned by the call, owned by nothing else.
        let port = unsafe { owned(port, "creating the job's completion port", "CreateIoCompletionPort") }?;
        let assoc = JOBOBJECT_ASSOCIATE_COMPLETION_PORT {
            CompletionKey: std::ptr::null_mut(),
            CompletionPort: port.as_raw_handle(),
        };
        set(&handle, &assoc, "watching the job")?;
        Ok(Job { handle, port })
    }

    /// The limits as the system holds them (for tests and `explain`).
    pub fn limits(&self) -> Result<JOBOBJECT_EXTENDED_LIMIT_INFORMATION, LaunchError> {
        query(&self.handle, "reading the job's limits")
    }

    #[cfg(test)]
    pub fn ui_restrictions(&self) -> Result<u32, LaunchError> {
        let ui: JOBOBJECT_BASIC_UI_RESTRICTIONS = query(&self.handle, "reading the job's UI restrictions")?;
        Ok(ui.UIRestrictionsClass)
    }

    /// User and kernel time of every process the job ran, and its peak committed memory.
    pub fn accounting(&self) -> Result<(Duration, Duration, u64), LaunchError> {
        let acct: JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION = query(&self.handle, "reading the job's accounting")?;
        let limits = self.limits()?;
        let t = |ticks: i64| Duration::from_nanos(ticks.max(0) as u64 * 100);
        Ok((t(acct.BasicInfo.TotalUserTime), t(acct.BasicInfo.TotalKernelTime), limits.PeakJobMemoryUsed as u64))
    }

    /// Puts a process in the job.
    #[cfg(test)]
    pub fn assign(&self, process: BorrowedHandle<'_>) -> Result<(), LaunchError> {
        assign(self.handle.as_handle(), process)
    }

    /// Kills every process in the job.
    pub fn terminate(&self, code: u32) {
        terminate(self.handle.as_handle(), code)
    }

    /// The next notification (message, process id), waiting up to `timeout`.
    pub fn next_message(&self, timeout: Duration) -> Option<(u32, usize)> {
        let mut msg = 0u32;
        let mut key = 0usize;
        let mut overlapped: *mut OVERLAPPED = std::ptr::null_mut();
        let ms = timeout.as_millis().min(u32::MAX as u128 - 1) as u32;
        // SAFETY: the port is valid; for job notifications the "overlapped" pointer carries the
        // process id and is never dereferenced.
        let ok =
            unsafe { GetQueuedCompletionStatus(self.port.as_raw_handle(), &mut msg, &mut key, &mut overlapped, ms) };
        (ok != 0).then_some((msg, overlapped as usize))
    }
}

/// Kills every process in a job, through any handle to it (the kill handle's, which may be
/// used on another thread).
pub fn terminate(job: BorrowedHandle<'_>, code: u32) {
    // SAFETY: a borrowed, so open, handle; a failure (the job already empty) is harmless.
    unsafe { TerminateJobObject(job.as_raw_handle(), code) };
}

/// Puts a process in a job through any handle to it (the runner's, with
/// JOB_OBJECT_ASSIGN_PROCESS only).
pub fn assign(job: BorrowedHandle<'_>, process: BorrowedHandle<'_>) -> Result<(), LaunchError> {
    // SAFETY: both handles are borrowed, so open, for the call.
    if unsafe { AssignProcessToJobObject(job.as_raw_handle(), process.as_raw_handle()) } == 0 {
        return Err(last_os_error("putting the command in the job", "AssignProcessToJobObject"));
    }
    Ok(())
}
