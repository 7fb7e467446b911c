//! The messages between the supervisor (the caller's process) and the runner (the same
//! program, started as the sandbox account). The runner exists because only a process of the
//! sandbox account may start a child with a restricted version of its own token without
//! privileges; it makes that token, starts the command suspended in the job, hands the
//! supervisor the handles, and (without a terminal) exits before the command runs a single
//! instruction. Frames are a little-endian u32 length and a payload; strings are UTF-16.

/// Bumped whenever a message changes; the runner installed by `setup` must speak the same.
pub const PROTOCOL_VERSION: u32 = 2;
/// The first argument that makes the program act as the runner (see `runner_entry`).
pub const RUNNER_ARG: &str = "--ringfence-windows-runner";
/// The argument of the boot task `setup` schedules: add the NUL device's entry again (see
/// `install::null_device_ace`). Harmless from anyone else: it only works elevated.
pub const BOOT_ARG: &str = "--ringfence-windows-boot";
/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 16 << 20;

/// The console the runner creates for a terminal run (ConPTY), on pipes the supervisor made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleRequest {
    /// The pseudoconsole's input (a pipe's read end), as a handle value in the runner.
    pub input: u64,
    /// Its output (a pipe's write end).
    pub output: u64,
    pub cols: u16,
    pub rows: u16,
}

/// Everything the runner needs to start the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchRequest {
    /// The resolved program (lpApplicationName).
    pub application: Vec<u16>,
    pub command_line: Vec<u16>,
    /// The complete environment block, double-NUL terminated.
    pub env_block: Vec<u16>,
    pub cwd: Vec<u16>,
    /// `WinSta0\<private desktop>`.
    pub desktop: Vec<u16>,
    /// The job, as a handle value in the runner (JOB_OBJECT_ASSIGN_PROCESS only).
    pub job: u64,
    /// Standard input, output and error as handle values in the runner (0: none).
    pub stdio: [u64; 3],
    pub console: Option<ConsoleRequest>,
    /// Restricting SIDs besides the run's logon SID and the capability SID: the slots of the
    /// run's writable roots.
    pub restricting: Vec<String>,
    /// Groups made deny-only in the command's token: the slots of every other root.
    pub deny_only: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToRunner {
    Launch(Box<LaunchRequest>),
    /// The supervisor holds the command's handles: the runner closes its own and, without a
    /// console, exits; the supervisor resumes the command after that.
    Go,
    /// The terminal's new size.
    Resize {
        cols: u16,
        rows: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromRunner {
    /// Sent first: who the runner is. `logon` is its logon SID, which the run's ACL
    /// entries name.
    Hello { version: u32, pid: u32, user: String, logon: String },
    /// The command exists, suspended, in the job. Handle values are the runner's.
    Started { pid: u32, process: u64, thread: u64 },
    /// A step failed; `code` is the Win32 error.
    Failed { stage: String, code: u32, message: String },
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn wide(&mut self, v: &[u16]) -> &mut Self {
        self.u32(v.len() as u32);
        for c in v {
            self.u16(*c);
        }
        self
    }
    fn text(&mut self, v: &str) -> &mut Self {
        self.wide(&v.encode_utf16().collect::<Vec<_>>())
    }
    fn texts(&mut self, v: &[String]) -> &mut Self {
        self.u32(v.len() as u32);
        for t in v {
            self.text(t);
        }
        self
    }
    fn frame(self) -> Vec<u8> {
        let mut out = (self.0.len() as u32).to_le_bytes().to_vec();
        out.extend(self.0);
        out
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("message cut short")?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "message cut short")?))
    }
    fn wide(&mut self) -> Result<Vec<u16>, String> {
        let n = self.u32()? as usize;
        let bytes = self.take(n.checked_mul(2).ok_or("string too long")?)?;
        Ok(bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
    }
    fn text(&mut self) -> Result<String, String> {
        String::from_utf16(&self.wide()?).map_err(|_| "a string is not valid UTF-16".to_string())
    }
    fn texts(&mut self) -> Result<Vec<String>, String> {
        let n = self.u32()? as usize;
        // Each text takes at least its 4-byte length: a count beyond the message is a lie.
        if n > (self.data.len() - self.at) / 4 {
            return Err("message cut short".into());
        }
        (0..n).map(|_| self.text()).collect()
    }
    fn end(&self) -> Result<(), String> {
        if self.at == self.data.len() {
            Ok(())
        } else {
            Err(format!("{} unexpected bytes after the message", self.data.len() - self.at))
        }
    }
}

impl ToRunner {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            ToRunner::Launch(r) => {
                w.u8(1).wide(&r.application).wide(&r.command_line).wide(&r.env_block).wide(&r.cwd).wide(&r.desktop);
                w.u64(r.job).u64(r.stdio[0]).u64(r.stdio[1]).u64(r.stdio[2]);
                match &r.console {
                    Some(c) => w.u8(1).u64(c.input).u64(c.output).u16(c.cols).u16(c.rows),
                    None => w.u8(0),
                };
                w.texts(&r.restricting).texts(&r.deny_only);
            }
            ToRunner::Go => {
                w.u8(2);
            }
            ToRunner::Resize { cols, rows } => {
                w.u8(3).u16(*cols).u16(*rows);
            }
        }
        w.frame()
    }

    /// Decodes a payload (the frame without its length).
    pub fn decode(payload: &[u8]) -> Result<ToRunner, String> {
        let mut r = Reader { data: payload, at: 0 };
        let msg = match r.u8()? {
            1 => {
                let application = r.wide()?;
                let command_line = r.wide()?;
                let env_block = r.wide()?;
                let cwd = r.wide()?;
                let desktop = r.wide()?;
                let job = r.u64()?;
                let stdio = [r.u64()?, r.u64()?, r.u64()?];
                let console = match r.u8()? {
                    0 => None,
                    1 => Some(ConsoleRequest { input: r.u64()?, output: r.u64()?, cols: r.u16()?, rows: r.u16()? }),
                    other => return Err(format!("console flag {other}")),
                };
                let restricting = r.texts()?;
                let deny_only = r.texts()?;
                ToRunner::Launch(Box::new(LaunchRequest {
                    application,
                    command_line,
                    env_block,
                    cwd,
                    desktop,
                    job,
                    stdio,
                    console,
                    restricting,
                    deny_only,
                }))
            }
            2 => ToRunner::Go,
            3 => ToRunner::Resize { cols: r.u16()?, rows: r.u16()? },
            other => return Err(format!("unknown message {other} for the runner")),
        };
        r.end()?;
        Ok(msg)
    }
}

impl FromRunner {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            FromRunner::Hello { version, pid, user, logon } => {
                w.u8(1).u32(*version).u32(*pid).text(user).text(logon);
            }
            FromRunner::Started { pid, process, thread } => {
                w.u8(2).u32(*pid).u64(*process).u64(*thread);
            }
            FromRunner::Failed { stage, code, message } => {
                w.u8(3).text(stage).u32(*code).text(message);
            }
        }
        w.frame()
    }

    pub fn decode(payload: &[u8]) -> Result<FromRunner, String> {
        let mut r = Reader { data: payload, at: 0 };
        let msg = match r.u8()? {
            1 => FromRunner::Hello { version: r.u32()?, pid: r.u32()?, user: r.text()?, logon: r.text()? },
            2 => FromRunner::Started { pid: r.u32()?, process: r.u64()?, thread: r.u64()? },
            3 => FromRunner::Failed { stage: r.text()?, code: r.u32()?, message: r.text()? },
            other => return Err(format!("unknown message {other} from the runner")),
        };
        r.end()?;
        Ok(msg)
    }
}

/// Reads one frame's payload from `input`; None at a clean end of stream.
pub fn read_frame(input: &mut impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "frame header cut short")),
            n => got += n,
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload)?;
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::w;

    fn launch() -> LaunchRequest {
        LaunchRequest {
            application: w(r"C:\Windows\System32\cmd.exe"),
            command_line: w(r#""C:\Windows\System32\cmd.exe" /d /c "echo hi""#),
            env_block: w("A=1\0PATH=C:\\x\0\0"),
            cwd: w(r"C:\work"),
            desktop: w(r"WinSta0\ringfence-1-2"),
            job: 0x1a4,
            stdio: [0x10, 0x14, 0],
            console: None,
            restricting: vec!["S-1-5-21-1-2-3-2001".into()],
            deny_only: vec!["S-1-5-21-1-2-3-2000".into(), "S-1-5-21-1-2-3-2002".into()],
        }
    }

    fn payload(frame: &[u8]) -> &[u8] {
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len + 4, frame.len());
        &frame[4..]
    }

    #[test]
    fn to_runner_round_trips() {
        let mut with_console = launch();
        with_console.console = Some(ConsoleRequest { input: 0x20, output: 0x24, cols: 120, rows: 40 });
        for msg in [
            ToRunner::Launch(Box::new(launch())),
            ToRunner::Launch(Box::new(with_console)),
            ToRunner::Go,
            ToRunner::Resize { cols: 80, rows: 25 },
        ] {
            let frame = msg.encode();
            assert_eq!(ToRunner::decode(payload(&frame)).unwrap(), msg);
        }
    }

    #[test]
    fn from_runner_round_trips() {
        for msg in [
            FromRunner::Hello {
                version: PROTOCOL_VERSION,
                pid: 4242,
                user: "S-1-5-21-1-2-3-1001".into(),
                logon: "S-1-5-5-0-777".into(),
            },
            FromRunner::Started { pid: 9, process: 0x2c0, thread: 0x2c4 },
            FromRunner::Failed {
                stage: "CreateProcessAsUserW".into(), code: 5, message: "Access is denied. ü".into()
            },
        ] {
            let frame = msg.encode();
            assert_eq!(FromRunner::decode(payload(&frame)).unwrap(), msg);
        }
    }

    #[test]
    fn damaged_messages_are_errors() {
        let frame = ToRunner::Launch(Box::new(launch())).encode();
        let body = payload(&frame);
        for cut in [0, 1, 5, body.len() - 1] {
            assert!(ToRunner::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        // A list count beyond the message is refused before anything is read.
        let empty =
            ToRunner::Launch(Box::new(LaunchRequest { restricting: vec![], deny_only: vec![], ..launch() })).encode();
        let mut huge = payload(&empty).to_vec();
        let at = huge.len() - 8;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ToRunner::decode(&huge).unwrap_err().contains("cut short"));
        let mut extra = body.to_vec();
        extra.push(0);
        assert!(ToRunner::decode(&extra).unwrap_err().contains("unexpected bytes"));
        assert!(ToRunner::decode(&[9]).is_err());
        assert!(FromRunner::decode(&[0]).is_err());
        // A string length beyond the message.
        assert!(FromRunner::decode(&[3, 0xff, 0xff, 0xff, 0x7f]).is_err());
        // Invalid UTF-16 in a text field.
        assert!(FromRunner::decode(&[3, 1, 0, 0, 0, 0x00, 0xD8, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn frames_are_read_one_by_one() {
        let mut stream = Vec::new();
        stream.extend(ToRunner::Go.encode());
        stream.extend(ToRunner::Resize { cols: 1, rows: 2 }.encode());
        let mut input = std::io::Cursor::new(stream);
        assert_eq!(ToRunner::decode(&read_frame(&mut input).unwrap().unwrap()).unwrap(), ToRunner::Go);
        assert_eq!(
            ToRunner::decode(&read_frame(&mut input).unwrap().unwrap()).unwrap(),
            ToRunner::Resize { cols: 1, rows: 2 }
        );
        assert!(read_frame(&mut input).unwrap().is_none());
        let mut cut = std::io::Cursor::new(vec![5u8, 0]);
        assert!(read_frame(&mut cut).is_err());
        let mut huge = std::io::Cursor::new((MAX_FRAME as u32 + 1).to_le_bytes().to_vec());
        assert!(read_frame(&mut huge).is_err());
    }
}
