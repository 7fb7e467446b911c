//! The terminal relay of an interactive run: our console in raw mode, its input to the
//! command's pseudoconsole, the pseudoconsole's output to it, and its size changes passed on to
//! the runner, which owns the pseudoconsole.

use crate::error::LaunchError;
use crate::protocol::ToRunner;
use crate::sys::{console, process};
use std::fs::File;
use std::io::{Read, Write};
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The terminal relay of an interactive run.
pub struct Terminal {
    output: Option<std::thread::JoinHandle<()>>,
    input: Option<std::thread::JoinHandle<()>>,
    resize_stop: Arc<AtomicBool>,
    resizer: Option<std::thread::JoinHandle<()>>,
    _raw: console::RawMode,
}

impl Terminal {
    /// Stops passing size changes on (before the control pipe goes).
    pub fn stop_resizing(&mut self) {
        self.resize_stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.resizer.take() {
            let _ = r.join();
        }
    }

    /// Ends the relay once the pseudoconsole is closed: its output is copied to the end, and the
    /// read of our input is cancelled; our console's mode is restored.
    pub fn finish(mut self) {
        if let Some(o) = self.output.take() {
            let _ = o.join();
        }
        if let Some(i) = self.input.take() {
            process::cancel_io(i.as_handle());
            // Not joined: a console read may not be cancellable; the thread ends with us.
        }
    }
}

/// Starts relaying our console to the command's pseudoconsole through the runner's pipes
/// (`in_write`, `out_read`), and its size changes as resize requests on `control`.
pub fn start_relay(
    in_write: OwnedHandle,
    out_read: OwnedHandle,
    control: Arc<Mutex<File>>,
) -> Result<Terminal, LaunchError> {
    let raw = console::RawMode::enter(process::std_handle(0), process::std_handle(1))?;
    let mut from_command = File::from(out_read);
    let output = std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut out = std::io::stdout();
        while let Ok(n) = from_command.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                break;
            }
        }
    });
    let mut to_command = File::from(in_write);
    let input = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_command.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let resizer = std::thread::spawn(move || {
        let mut last = process::std_handle(1).and_then(console::size);
        while !stop_flag.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(250));
            let now = process::std_handle(1).and_then(console::size);
            if let (Some((cols, rows)), true) = (now, now != last) {
                if let Ok(mut w) = control.lock() {
                    let _ = w.write_all(&ToRunner::Resize { cols, rows }.encode());
                }
                last = now;
            }
        }
    });
    Ok(Terminal { output: Some(output), input: Some(input), resize_stop: stop, resizer: Some(resizer), _raw: raw })
}
