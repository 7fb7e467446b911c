//! Relaying a checked tunnel in both directions over shared sockets. On Linux the bytes move
//! with splice(2) through a pipe, without being copied through the gateway's memory; elsewhere
//! through a buffer.

use std::io;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Writes `bytes` to a shared stream.
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Passes the end of one direction on to the other side.
fn shut_write(to: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    }
}

/// Runs `op` once `stream` is ready for `interest`, again whenever the readiness was stale.
async fn when_ready<T>(stream: &TcpStream, interest: Interest, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        stream.ready(interest).await?;
        match stream.try_io(interest, &mut op) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// Moves everything `from` sends to `to`, counting it, then passes the end of stream on.
#[cfg(target_os = "linux")]
pub async fn pump(from: &TcpStream, to: &TcpStream, count: &mut u64) -> io::Result<()> {
    use nix::fcntl::{splice, FcntlArg, OFlag, SpliceFFlags};
    use std::os::fd::AsFd;
    /// Bytes moved per splice, and the pipe size asked for.
    const CHUNK: usize = 256 * 1024;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let (pipe_read, pipe_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // A bigger pipe means fewer wake-ups; the default size still works.
    let _ = nix::fcntl::fcntl(&pipe_write, FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
    loop {
        let fill = || splice(from.as_fd(), None, pipe_write.as_fd(), None, CHUNK, flags).map_err(io::Error::from);
        let n = when_ready(from, Interest::READABLE, fill).await?;
        if n == 0 {
            return shut_write(to);
        }
        let mut left = n;
        while left > 0 {
            let drain = || splice(pipe_read.as_fd(), None, to.as_fd(), None, left, flags).map_err(io::Error::from);
            let moved = when_ready(to, Interest::WRITABLE, drain).await?;
            left -= moved;
            *count += moved as u64;
        }
    }
}

/// Moves everything `from` sends to `to`, counting it, then passes the end of stream on.
#[cfg(not(target_os = "linux"))]
pub async fn pump(from: &TcpStream, to: &TcpStream, count: &mut u64) -> io::Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = when_ready(from, Interest::READABLE, || from.try_read(&mut buf)).await?;
        if n == 0 {
            return shut_write(to);
        }
        write_all(to, &buf[..n]).await?;
        *count += n as u64;
    }
}
