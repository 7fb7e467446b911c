//! The sandbox's resolver, on port 53 of every address (UDP and TCP): whatever server the
//! command's resolver configuration names, the question lands here. A name the rules allow on
//! some port is resolved upstream (recorded as net.dns) and answered with its fake addresses
//! (see `fakeip.rs`); any other name gets NXDOMAIN at once and is never sent upstream, recorded
//! as net.deny. Questions that are not for addresses get an empty answer.

use crate::egress::Egress;
use crate::engine::{DenyReason, Proto, Refusal};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage};
use ringfence_policy::Host;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UdpSocket};

/// Time-to-live of an answer: the fake addresses keep their meaning for the whole run.
const TTL: u32 = 60;
/// Questions answered at once; more wait in the socket's queue.
const IN_FLIGHT: usize = 256;
/// DNS-over-TCP connections served at once.
const TCP_CONNECTIONS: usize = 64;
/// How long a DNS-over-TCP connection may idle between questions.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The answer to a question, as bytes; None for a message that is no question.
pub async fn answer(egress: &Egress, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
        return None;
    }
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true);
    let Some(question) = request.queries().first() else {
        reply.set_response_code(ResponseCode::FormErr);
        return reply.to_vec().ok();
    };
    reply.add_query(question.clone());
    let name = question.name().to_ascii();
    let (code, records) = match Host::parse(&name) {
        Ok(host @ Host::Name(_)) => records_for(egress, &host, question.query_type()).await,
        _ => (refuse(egress, &name, "it is not a host name"), Vec::new()),
    };
    reply.set_response_code(code);
    for rdata in records {
        reply.add_answer(Record::from_rdata(question.name().clone(), TTL, rdata));
    }
    reply.to_vec().ok()
}

/// The response code and answers for a question about `host` of type `kind`.
async fn records_for(egress: &Egress, host: &Host, kind: RecordType) -> (ResponseCode, Vec<RData>) {
    let Host::Name(name) = host else { return (ResponseCode::NXDomain, Vec::new()) };
    if egress.engine.rules().allows_host(host).is_none() {
        return (refuse(egress, name, "it is not in the network allow list"), Vec::new());
    }
    match egress.engine.resolve(name).await {
        Ok(_) => {}
        Err(Refusal::Unresolved(why)) if why.contains("no answer within") => {
            return (ResponseCode::ServFail, Vec::new())
        }
        Err(_) => return (ResponseCode::NXDomain, Vec::new()),
    }
    let Some((v4, v6)) = egress.fake_addresses(name) else {
        let detail = format!("{name} got no address: the run has looked up {} names", crate::fakeip::MAX_NAMES);
        egress.engine.deny(Proto::Dns, host, 53, DenyReason::NotAllowed, detail, None, None);
        return (ResponseCode::ServFail, Vec::new());
    };
    match kind {
        RecordType::A => (ResponseCode::NoError, vec![RData::A(A(v4))]),
        RecordType::AAAA => (ResponseCode::NoError, vec![RData::AAAA(AAAA(v6))]),
        _ => (ResponseCode::NoError, Vec::new()),
    }
}

/// Records the refusal of a question about `name`; NXDOMAIN.
fn refuse(egress: &Egress, name: &str, why: &str) -> ResponseCode {
    let shown = name.trim_end_matches('.');
    let host = Host::parse(shown).unwrap_or_else(|_| Host::Name(shown.to_string()));
    let detail = format!("the lookup of {shown} is refused: {why}; nothing was sent upstream");
    egress.engine.deny(Proto::Dns, &host, 53, DenyReason::NotAllowed, detail, None, None);
    ResponseCode::NXDomain
}

/// Serves the resolver's UDP socket: each answer comes from the address the question was sent to.
pub async fn serve_udp(socket: UdpSocket, egress: Arc<Egress>) {
    let socket = Arc::new(socket);
    let limit = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        let received = socket.async_io(Interest::READABLE, || receive(&socket)).await;
        let Ok((query, from, to)) = received else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (socket, egress) = (socket.clone(), egress.clone());
        tokio::spawn(async move {
            if let Some(reply) = answer(&egress, &query).await {
                let _ = socket.async_io(Interest::WRITABLE, || send(&socket, &reply, &from, to)).await;
            }
            drop(permit);
        });
    }
}

/// One datagram, who sent it, and the address it was sent to.
pub(crate) fn receive(socket: &UdpSocket) -> io::Result<(Vec<u8>, SockaddrStorage, Option<IpAddr>)> {
    let mut buf = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)?;
    let to = msg.cmsgs().ok().into_iter().flatten().find_map(|c| match c {
        ControlMessageOwned::Ipv4PacketInfo(info) => {
            Some(IpAddr::from(std::net::Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))))
        }
        ControlMessageOwned::Ipv6PacketInfo(info) => Some(IpAddr::from(info.ipi6_addr.s6_addr)),
        _ => None,
    });
    let (len, from) = (msg.bytes, msg.address.ok_or_else(|| io::Error::other("no sender"))?);
    buf.truncate(len);
    Ok((buf, from, to))
}

/// Sends `reply` to `from`, from the address `to` the question went to.
fn send(socket: &UdpSocket, reply: &[u8], from: &SockaddrStorage, to: Option<IpAddr>) -> io::Result<usize> {
    let iov = [IoSlice::new(reply)];
    let flags = MsgFlags::MSG_DONTWAIT;
    let sent = match to {
        Some(IpAddr::V4(ip)) => {
            let info = nix::libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: nix::libc::in_addr { s_addr: u32::from(ip).to_be() },
                ipi_addr: nix::libc::in_addr { s_addr: 0 },
            };
            sendmsg(socket.as_raw_fd(), &iov, &[ControlMessage::Ipv4PacketInfo(&info)], flags, Some(from))
        }
        Some(IpAddr::V6(ip)) => {
            let info =
                nix::libc::in6_pktinfo { ipi6_addr: nix::libc::in6_addr { s6_addr: ip.octets() }, ipi6_ifindex: 0 };
            sendmsg(socket.as_raw_fd(), &iov, &[ControlMessage::Ipv6PacketInfo(&info)], flags, Some(from))
        }
        None => sendmsg(socket.as_raw_fd(), &iov, &[], flags, Some(from)),
    };
    sent.map_err(io::Error::from)
}

/// Accepts DNS-over-TCP connections, at most [`TCP_CONNECTIONS`] at once (more wait in the
/// listen backlog): a sandbox that opens many and sends nothing holds a bounded number of the
/// supervisor's sockets, and leaves the transparent path's connections their own limit.
pub async fn accept_tcp(listener: tokio::net::TcpListener, egress: Arc<Egress>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(TCP_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let egress = egress.clone();
        tokio::spawn(async move {
            serve_tcp(stream, egress).await;
            drop(permit);
        });
    }
}

/// Serves one DNS-over-TCP connection: two-byte lengths before each message.
async fn serve_tcp(mut stream: TcpStream, egress: Arc<Egress>) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else { return };
        let mut query = vec![0u8; usize::from(len)];
        if !matches!(tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await, Ok(Ok(_))) {
            return;
        }
        let Some(reply) = answer(&egress, &query).await else { return };
        let Ok(len) = u16::try_from(reply.len()) else { return };
        if stream.write_all(&[&len.to_be_bytes()[..], &reply].concat()).await.is_err() {
            return;
        }
    }
}
