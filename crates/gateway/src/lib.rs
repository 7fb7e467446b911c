//! ringfence's egress gateway. It runs inside the supervisor, outside the sandbox, and serves
//! the listening sockets the sandbox created on its own loopback: an HTTP proxy and a SOCKS5
//! proxy. Every destination passes the policy's allow list, names are resolved here and only
//! when allowed, resolved addresses pass the address guard, tunnels must carry TLS for the
//! allowed name, and each decision is an event.

#![forbid(unsafe_code)]
#![deny(clippy::too_many_lines)]

mod chunked;
#[cfg(target_os = "linux")]
mod dns;
mod egress;
mod engine;
mod fakeip;
mod fuzzing;
mod guard;
mod http;
mod proxy;
mod relay;
mod resolve;
mod socks;
#[cfg(target_os = "linux")]
mod tap;
mod tls;
#[cfg(target_os = "linux")]
mod transparent;

pub use egress::Egress;
pub use fuzzing::parse_untrusted;
pub use guard::{classify, Guarded};

use ringfence_audit::EventBody;
use ringfence_backend::{GatewayListeners, TransparentSockets};
use std::sync::Arc;
use std::time::Duration;

/// Where the events of the gateway go; called from the gateway's threads.
pub type EventSink = Arc<dyn Fn(EventBody) + Send + Sync>;

/// Client connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
/// Kernel buffer for each direction of each socket the gateway holds. Left to autotuning, a
/// sandbox that opens many downloads and never reads them would park megabytes per connection
/// in the supervisor's sockets, outside every limit of the sandbox's own.
const SOCKET_BUFFER: usize = 256 * 1024;
/// How long connections may take to finish once the run is over.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// The variables that point the command's tools at the gateway's proxies on 127.0.0.1
/// (`HTTP_PROXY_PORT` and `SOCKS_PROXY_PORT` in the sandbox's own namespace on Linux; ports
/// in the sandbox account's allowed range on Windows).
pub fn proxy_environment(http_port: u16, socks_port: u16) -> Vec<(&'static str, String)> {
    let http = format!("http://127.0.0.1:{http_port}");
    let socks = format!("socks5h://127.0.0.1:{socks_port}");
    let local = "localhost,127.0.0.1,::1".to_string();
    vec![
        ("HTTP_PROXY", http.clone()),
        ("HTTPS_PROXY", http.clone()),
        ("http_proxy", http.clone()),
        ("https_proxy", http.clone()),
        ("ALL_PROXY", socks.clone()),
        ("all_proxy", socks),
        ("NO_PROXY", local.clone()),
        ("no_proxy", local),
        // npm and yarn read their own settings before the variables above.
        ("npm_config_proxy", http.clone()),
        ("npm_config_https_proxy", http.clone()),
        ("YARN_HTTP_PROXY", http.clone()),
        ("YARN_HTTPS_PROXY", http.clone()),
        // Node's built-in fetch honours the variables only when asked (Node 22.21+, 24+).
        ("NODE_USE_ENV_PROXY", "1".to_string()),
        ("CARGO_HTTP_PROXY", http.clone()),
        ("PIP_PROXY", http.clone()),
        ("RINGFENCE_PROXY", http),
    ]
}

/// A running gateway.
pub struct Gateway {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Starts serving the explicit proxies and, where the backend made them, the transparent
    /// path's sockets (all possibly in another network namespace), on threads of its own, with
    /// the run's shared state `egress`.
    pub fn start(listeners: GatewayListeners, egress: Arc<Egress>) -> std::io::Result<Gateway> {
        raise_open_files_limit();
        let GatewayListeners { http, socks, transparent } = listeners;
        http.set_nonblocking(true)?;
        socks.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name("ringfence-gateway")
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let (http, socks) = {
            let _context = runtime.enter();
            if let Some(sockets) = transparent {
                serve_transparent(sockets, &egress, &limit)?;
            }
            (tokio::net::TcpListener::from_std(http)?, tokio::net::TcpListener::from_std(socks)?)
        };
        let thread = std::thread::Builder::new().name("ringfence-gateway".into()).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = serve(http, egress.clone(), limit.clone(), Kind::Http) => {}
                    _ = serve(socks, egress, limit, Kind::Socks) => {}
                    _ = stopped => {}
                }
            });
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        })?;
        Ok(Gateway { stop: Some(stop), thread: Some(thread) })
    }

    /// Stops serving, waits briefly for open connections, and records every one of them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Http,
    Socks,
}

async fn serve(listener: tokio::net::TcpListener, egress: Arc<Egress>, limit: Arc<tokio::sync::Semaphore>, kind: Kind) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            // Out of descriptors or memory: wait instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        cap_buffers(&client);
        let egress = egress.clone();
        tokio::spawn(async move {
            match kind {
                Kind::Http => proxy::serve_http(&egress.engine, client).await,
                Kind::Socks => proxy::serve_socks(&egress.engine, client).await,
            }
            drop(permit);
        });
    }
}

/// Starts serving the transparent path (in the runtime's context): a task per captured
/// listener, the resolver's UDP sockets and TCP listener, and the UDP taps.
#[cfg(target_os = "linux")]
fn serve_transparent(
    sockets: TransparentSockets,
    egress: &Arc<Egress>,
    limit: &Arc<tokio::sync::Semaphore>,
) -> std::io::Result<()> {
    let TransparentSockets { tcp, dns_udp, dns_tcp, udp_taps } = sockets;
    for listener in tcp {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(transparent::accept(listener, egress.clone(), limit.clone()));
    }
    for socket in dns_udp {
        socket.set_nonblocking(true)?;
        tokio::spawn(dns::serve_udp(tokio::net::UdpSocket::from_std(socket)?, egress.clone()));
    }
    dns_tcp.set_nonblocking(true)?;
    let dns_tcp = tokio::net::TcpListener::from_std(dns_tcp)?;
    tokio::spawn(dns::accept_tcp(dns_tcp, egress.clone()));
    // Raw sockets, served as datagram sockets: only recvmsg(2) is used on them.
    let [v4, v6] = udp_taps.map(std::net::UdpSocket::from);
    v4.set_nonblocking(true)?;
    v6.set_nonblocking(true)?;
    let (v4, v6) = (tokio::net::UdpSocket::from_std(v4)?, tokio::net::UdpSocket::from_std(v6)?);
    tokio::spawn(tap::serve(v4, v6, egress.clone()));
    Ok(())
}

/// Only Linux makes the transparent path's sockets.
#[cfg(not(target_os = "linux"))]
fn serve_transparent(_: TransparentSockets, _: &Arc<Egress>, _: &Arc<tokio::sync::Semaphore>) -> std::io::Result<()> {
    Err(std::io::Error::other("the transparent path is served on Linux only"))
}

/// Fixes a socket's send and receive buffers at SOCKET_BUFFER (which also turns autotuning off).
fn cap_buffers(stream: &tokio::net::TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
}

/// Relayed connections take two descriptors each (four more for splice's pipes): lift the
/// soft limit to the hard one.
#[cfg(target_os = "linux")]
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn raise_open_files_limit() {}
