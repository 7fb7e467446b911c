//! The terminal of an interactive run: a pseudoconsole (ConPTY) the runner creates on pipes
//! the supervisor relays, and the supervisor's own console modes while it relays.

use super::last_os_error;
use crate::error::LaunchError;
use std::os::windows::io::{AsRawHandle, BorrowedHandle};
use windows_sys::Win32::System::Console::{
    ClosePseudoConsole, CreatePseudoConsole, GetConsoleMode, GetConsoleScreenBufferInfo, ResizePseudoConsole,
    SetConsoleMode, CONSOLE_MODE, CONSOLE_SCREEN_BUFFER_INFO, COORD, ENABLE_ECHO_INPUT, ENABLE_LINE_INPUT,
    ENABLE_PROCESSED_INPUT, ENABLE_VIRTUAL_TERMINAL_INPUT, ENABLE_VIRTUAL_TERMINAL_PROCESSING,
};

/// A pseudoconsole; closed on drop (which ends its console host).
pub struct PseudoConsole(isize);

impl PseudoConsole {
    /// Creates a pseudoconsole of `cols`×`rows` reading `input` and writing `output`.
    pub fn create(
        input: BorrowedHandle<'_>,
        output: BorrowedHandle<'_>,
        cols: u16,
        rows: u16,
    ) -> Result<PseudoConsole, LaunchError> {
        let mut hpc = 0isize;
        let size = COORD { X: cols.max(1) as i16, Y: rows.max(1) as i16 };
        let (input, output) = (input.as_raw_handle(), output.as_raw_handle());
        // SAFETY: both pipe handles are borrowed, so open, for the call (the console host
        // duplicates them); `hpc` receives the new pseudoconsole.
        let hr = unsafe { CreatePseudoConsole(size, input, output, 0, &mut hpc) };
        if hr < 0 {
            return Err(LaunchError::internal(format!(
                "creating the command's terminal: CreatePseudoConsole failed with HRESULT {hr:#010x}"
            )));
        }
        Ok(PseudoConsole(hpc))
    }

    /// The HPCON, for the attribute list of the command that gets this console.
    pub fn raw(&self) -> isize {
        self.0
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        // SAFETY: a live pseudoconsole; a failure leaves the old size.
        unsafe { ResizePseudoConsole(self.0, COORD { X: cols.max(1) as i16, Y: rows.max(1) as i16 }) };
    }
}

impl Drop for PseudoConsole {
    fn drop(&mut self) {
        // SAFETY: created above and closed once.
        unsafe { ClosePseudoConsole(self.0) };
    }
}

/// The visible size of the console behind `output`, if it is one.
pub fn size(output: BorrowedHandle<'_>) -> Option<(u16, u16)> {
    let mut info = CONSOLE_SCREEN_BUFFER_INFO::default();
    // SAFETY: a borrowed handle and a valid out-structure; non-console handles just fail.
    if unsafe { GetConsoleScreenBufferInfo(output.as_raw_handle(), &mut info) } == 0 {
        return None;
    }
    let w = info.srWindow;
    Some(((w.Right - w.Left + 1).max(1) as u16, (w.Bottom - w.Top + 1).max(1) as u16))
}

/// Puts our console in raw VT mode while a terminal run relays it; restores on drop.
pub struct RawMode {
    input: Option<(BorrowedHandle<'static>, CONSOLE_MODE)>,
    output: Option<(BorrowedHandle<'static>, CONSOLE_MODE)>,
}

fn mode(h: BorrowedHandle<'_>) -> Option<CONSOLE_MODE> {
    let mut m = 0;
    // SAFETY: a borrowed handle and a valid out-pointer; non-console handles just fail.
    (unsafe { GetConsoleMode(h.as_raw_handle(), &mut m) } != 0).then_some(m)
}

fn set_mode(h: BorrowedHandle<'_>, m: CONSOLE_MODE) -> bool {
    // SAFETY: a borrowed console handle whose mode was just read.
    unsafe { SetConsoleMode(h.as_raw_handle(), m) != 0 }
}

impl RawMode {
    /// Switches this process's console streams (see [`super::process::std_handle`]), those
    /// that are consoles.
    pub fn enter(
        input: Option<BorrowedHandle<'static>>,
        output: Option<BorrowedHandle<'static>>,
    ) -> Result<RawMode, LaunchError> {
        let mut raw = RawMode { input: None, output: None };
        if let Some(h) = input {
            if let Some(old) = mode(h) {
                let new = (old & !(ENABLE_LINE_INPUT | ENABLE_ECHO_INPUT | ENABLE_PROCESSED_INPUT))
                    | ENABLE_VIRTUAL_TERMINAL_INPUT;
                if !set_mode(h, new) {
                    return Err(last_os_error("switching the console to raw input", "SetConsoleMode"));
                }
                raw.input = Some((h, old));
            }
        }
        if let Some(h) = output {
            if let Some(old) = mode(h) {
                if !set_mode(h, old | ENABLE_VIRTUAL_TERMINAL_PROCESSING) {
                    return Err(last_os_error("enabling terminal sequences on the console", "SetConsoleMode"));
                }
                raw.output = Some((h, old));
            }
        }
        Ok(raw)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        for (h, m) in [self.input, self.output].into_iter().flatten() {
            set_mode(h, m);
        }
    }
}
