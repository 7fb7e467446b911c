//! The Windows Filtering Platform filters `setup` installs, as plain data: one description per
//! filter (layer, action, weight, conditions), so the rule set can be read, tested and printed
//! without the filter engine. `sys::wfp` turns each description into an FWPM_FILTER0.
//!
//! Every filter matches only sockets opened by the sandbox account (the ALE user-id condition:
//! a security descriptor that grants the "match" right to the account and to ringfence's
//! capability SID). In ringfence's own sublayer, at the ALE connect and accept layers of IPv4
//! and IPv6:
//! - hard blocks (no lower sublayer can permit them again) for DNS, DNS over TLS, SMB and
//!   NetBIOS, and ICMP;
//! - a permit for inbound connections from 127.0.0.1 / ::1 (a server inside the sandbox,
//!   reached from the host only);
//! - a hard block of everything else.
//!
//! The filters are persistent: they hold across reboots, before any ringfence process runs.
//! Nothing in them lets the account connect anywhere. A run whose gateway listens gets
//! [`gateway_filters`]: permits for TCP to 127.0.0.1 on exactly its gateway's ports, matching
//! only that run's logon SID, added in a dynamic session the supervisor holds, so the filter
//! engine deletes them when the run ends or its supervisor dies. Other loopback services,
//! other runs' gateways and every other port stay blocked.

use crate::acl::{Ace, Acl, SecurityDescriptor};
use crate::sid::{capability, well_known, Sid};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A GUID, kept as the 128-bit number its text spells (`{c38d57d1-05a7-…}` is
/// `0xc38d57d1_05a7_…`), the same convention as `windows_sys::core::GUID::from_u128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub u128);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{{{:08x}-{:04x}-{:04x}-{:04x}-{:012x}}}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xFFFF_FFFF_FFFF
        )
    }
}

/// ringfence's WFP provider.
pub const PROVIDER_KEY: Guid = Guid(0x6a0f_3c2e_91b4_4d57_8e0a_52f1_c7d3_0000);
/// ringfence's sublayer; all its filters live here.
pub const SUBLAYER_KEY: Guid = Guid(0x6a0f_3c2e_91b4_4d57_8e0a_52f1_c7d3_0001);
/// Filter keys are this base plus the filter's index, so `setup` replaces and `uninstall`
/// removes exactly what an earlier `setup` added, whichever version it was.
const FILTER_KEY_BASE: u128 = 0x6a0f_3c2e_91b4_4d57_8e0a_52f1_c7d3_1000;
/// How many filter keys `uninstall` sweeps (more than any version installs).
pub const FILTER_KEY_SWEEP: u32 = 256;
/// The sublayer's weight: high, so ringfence's hard blocks are decided before the Windows
/// Firewall's sublayers could permit the traffic.
pub const SUBLAYER_WEIGHT: u16 = 0xFF00;

/// The key of filter number `index`.
pub fn filter_key(index: u32) -> Guid {
    Guid(FILTER_KEY_BASE + index as u128)
}

/// The filtering layers ringfence uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// FWPM_LAYER_ALE_AUTH_CONNECT_V4: outbound connections and the first datagram to a peer.
    ConnectV4,
    ConnectV6,
    /// FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4: inbound connections and datagrams from a new peer.
    RecvAcceptV4,
    RecvAcceptV6,
}

impl Layer {
    pub const ALL: [Layer; 4] = [Layer::ConnectV4, Layer::ConnectV6, Layer::RecvAcceptV4, Layer::RecvAcceptV6];

    /// The layer's GUID (fwpmu.h).
    pub fn key(self) -> Guid {
        Guid(match self {
            Layer::ConnectV4 => 0xc38d57d1_05a7_4c33_904f_7fbceee60e82,
            Layer::ConnectV6 => 0x4a72393b_319f_44bc_84c3_ba54dcb3b6b4,
            Layer::RecvAcceptV4 => 0xe1cd9fe7_f4b5_4273_96c0_592e487b8650,
            Layer::RecvAcceptV6 => 0xa3b42c97_9f04_4672_b87e_cee9c483257f,
        })
    }

    pub fn is_v6(self) -> bool {
        matches!(self, Layer::ConnectV6 | Layer::RecvAcceptV6)
    }

    pub fn name(self) -> &'static str {
        match self {
            Layer::ConnectV4 => "ALE_AUTH_CONNECT_V4",
            Layer::ConnectV6 => "ALE_AUTH_CONNECT_V6",
            Layer::RecvAcceptV4 => "ALE_AUTH_RECV_ACCEPT_V4",
            Layer::RecvAcceptV6 => "ALE_AUTH_RECV_ACCEPT_V6",
        }
    }
}

/// Condition field GUIDs (fwpmu.h).
pub mod field {
    use super::Guid;
    pub const ALE_USER_ID: Guid = Guid(0xaf043a0a_b34d_4f86_979c_c90371af6e66);
    pub const IP_PROTOCOL: Guid = Guid(0x3971ef2b_623e_4f9a_8cb1_6e79b806b9a7);
    pub const IP_REMOTE_ADDRESS: Guid = Guid(0xb235ae9a_1d64_49b8_a44c_5ff3d9095045);
    pub const IP_REMOTE_PORT: Guid = Guid(0xc35a604d_d22b_4e1a_91b4_68f674ee674b);
}

/// IP protocol numbers.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// One match condition; all of a filter's conditions must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The socket's owner passes an access check for FWP_ACTRL_MATCH_FILTER against this
    /// self-relative security descriptor.
    User {
        sd: Vec<u8>,
        sddl: String,
    },
    Protocol(u8),
    RemotePort(u16),
    RemoteV4(Ipv4Addr),
    RemoteV6(Ipv6Addr),
}

impl Condition {
    pub fn field(&self) -> Guid {
        match self {
            Condition::User { .. } => field::ALE_USER_ID,
            Condition::Protocol(_) => field::IP_PROTOCOL,
            Condition::RemotePort(_) => field::IP_REMOTE_PORT,
            Condition::RemoteV4(_) | Condition::RemoteV6(_) => field::IP_REMOTE_ADDRESS,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::User { sddl, .. } => write!(f, "user matches {sddl}"),
            Condition::Protocol(p) => write!(f, "protocol = {p}"),
            Condition::RemotePort(p) => write!(f, "remote port = {p}"),
            Condition::RemoteV4(a) => write!(f, "remote address = {a}"),
            Condition::RemoteV6(a) => write!(f, "remote address = {a}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Permit,
    Block,
}

/// One filter, as installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSpec {
    pub key: Guid,
    pub name: String,
    pub layer: Layer,
    pub action: Action,
    /// 0..=15 inside the sublayer; the highest matching filter decides.
    pub weight: u8,
    /// FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT: a block no lower-weight sublayer can override.
    pub hard: bool,
    pub conditions: Vec<Condition>,
}

impl fmt::Display for FilterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match (self.action, self.hard) {
            (Action::Permit, _) => "permit",
            (Action::Block, true) => "hard block",
            (Action::Block, false) => "block",
        };
        write!(f, "{} {} w{} {action}: {}", self.key, self.layer.name(), self.weight, self.name)?;
        for c in &self.conditions {
            write!(f, "; {c}")?;
        }
        Ok(())
    }
}

/// FWP_ACTRL_MATCH_FILTER: the right the user-id condition checks.
pub const FWP_ACTRL_MATCH_FILTER: u32 = 0x1;

/// The security descriptor of a user-id condition: the match right for `sids`, nobody else.
fn match_sd(sids: &[Sid]) -> SecurityDescriptor {
    SecurityDescriptor {
        owner: Some(well_known::local_system()),
        group: Some(well_known::local_system()),
        dacl: Some(Acl::new(
            sids.iter().map(|s| Ace::Allow { flags: 0, mask: FWP_ACTRL_MATCH_FILTER, sid: s.clone() }).collect(),
        )),
        protected: true,
    }
}

/// The security descriptor of the persistent filters' user-id condition: the match right for
/// the sandbox account and the capability SID, nobody else.
pub fn user_match_sd(account: &Sid) -> SecurityDescriptor {
    match_sd(&[account.clone(), capability()])
}

fn user_condition(sd: SecurityDescriptor) -> Condition {
    Condition::User { sd: sd.to_bytes(), sddl: sd.sddl() }
}

/// WFP access rights (fwpmu.h) `setup` grants the installing user, so that a supervisor that
/// is not elevated can check the filters and add its run's gateway permits.
pub mod rights {
    /// FWPM_ACTRL_ADD: on the filters' container, to add a run's filters.
    pub const ADD: u32 = 0x1;
    /// FWPM_ACTRL_ADD_LINK: on ringfence's sublayer, to put them there.
    pub const ADD_LINK: u32 = 0x2;
    /// FWPM_ACTRL_READ: on ringfence's persistent filters, to check they are all there.
    pub const READ: u32 = 0x80;
}

/// The weight of a run's gateway permits: above the catch-all block, below the blocks of DNS,
/// SMB and ICMP (which never match them: those are other ports and protocols).
pub const GATEWAY_WEIGHT: u8 = 10;

/// Ports blocked explicitly, with why.
pub const BLOCKED_PORTS: &[(u16, &str)] = &[
    (53, "DNS"),
    (853, "DNS over TLS"),
    (445, "SMB"),
    (139, "NetBIOS over TCP"),
    (137, "NetBIOS name"),
    (138, "NetBIOS datagram"),
];

/// Every filter for the sandbox account `account`, keys numbered in order.
pub fn sandbox_filters(account: &Sid) -> Vec<FilterSpec> {
    let user = user_condition(user_match_sd(account));
    let mut out: Vec<FilterSpec> = Vec::new();
    let mut add = |name: String, layer: Layer, action: Action, weight: u8, hard: bool, extra: Vec<Condition>| {
        let mut conditions = vec![user.clone()];
        conditions.extend(extra);
        let key = filter_key(out.len() as u32);
        out.push(FilterSpec { key, name, layer, action, weight, hard, conditions });
    };
    for layer in Layer::ALL {
        let v = if layer.is_v6() { "IPv6" } else { "IPv4" };
        let loopback = if layer.is_v6() {
            Condition::RemoteV6(Ipv6Addr::LOCALHOST)
        } else {
            Condition::RemoteV4(Ipv4Addr::LOCALHOST)
        };
        match layer {
            Layer::ConnectV4 | Layer::ConnectV6 => {
                for (port, what) in BLOCKED_PORTS {
                    add(
                        format!("block {what} ({v})"),
                        layer,
                        Action::Block,
                        15,
                        true,
                        vec![Condition::RemotePort(*port)],
                    );
                }
                let icmp = if layer.is_v6() { proto::ICMPV6 } else { proto::ICMP };
                add(format!("block ICMP ({v})"), layer, Action::Block, 15, true, vec![Condition::Protocol(icmp)]);
                add(format!("block all other outbound ({v})"), layer, Action::Block, 1, true, vec![]);
            }
            Layer::RecvAcceptV4 | Layer::RecvAcceptV6 => {
                add(format!("permit inbound from loopback ({v})"), layer, Action::Permit, 10, false, vec![loopback]);
                add(format!("block all other inbound ({v})"), layer, Action::Block, 1, true, vec![]);
            }
        }
    }
    out
}

/// The permits of one run whose gateway listens on `ports` (127.0.0.1): TCP to exactly those
/// ports, for sockets of this run's logon SID only. `key_base` makes the keys unique to the
/// run; the filters live in a dynamic session, so the engine removes them with the session.
pub fn gateway_filters(logon: &Sid, ports: &[u16], key_base: u128) -> Vec<FilterSpec> {
    let user = user_condition(match_sd(std::slice::from_ref(logon)));
    ports
        .iter()
        .enumerate()
        .map(|(i, port)| FilterSpec {
            key: Guid(key_base.wrapping_add(i as u128)),
            name: format!("permit this run's gateway on 127.0.0.1:{port}"),
            layer: Layer::ConnectV4,
            action: Action::Permit,
            weight: GATEWAY_WEIGHT,
            hard: false,
            conditions: vec![
                user.clone(),
                Condition::RemoteV4(Ipv4Addr::LOCALHOST),
                Condition::Protocol(proto::TCP),
                Condition::RemotePort(*port),
            ],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::account;

    #[test]
    fn guids_print_in_registry_format() {
        assert_eq!(Layer::ConnectV4.key().to_string(), "{c38d57d1-05a7-4c33-904f-7fbceee60e82}");
        assert_eq!(filter_key(2).to_string(), "{6a0f3c2e-91b4-4d57-8e0a-52f1c7d31002}");
    }

    #[test]
    fn every_filter_is_for_the_sandbox_account_only() {
        let filters = sandbox_filters(&account());
        assert!(!filters.is_empty());
        for f in &filters {
            let Condition::User { sd, sddl } = &f.conditions[0] else { panic!("{f}: first condition is not the user") };
            let parsed = SecurityDescriptor::from_bytes(sd).unwrap();
            let acl = parsed.dacl.unwrap();
            assert_eq!(acl.aces.len(), 2);
            assert!(acl.aces.iter().all(|a| matches!(a, Ace::Allow { mask: FWP_ACTRL_MATCH_FILTER, .. })));
            assert!(acl.mentions(&account()) && acl.mentions(&capability()));
            assert!(sddl.contains(&account().to_string()), "{sddl}");
            assert_eq!(f.conditions.iter().filter(|c| matches!(c, Condition::User { .. })).count(), 1);
        }
    }

    #[test]
    fn keys_are_unique_and_sequential() {
        let filters = sandbox_filters(&account());
        for (i, f) in filters.iter().enumerate() {
            assert_eq!(f.key, filter_key(i as u32));
        }
        assert!(filters.len() < FILTER_KEY_SWEEP as usize);
        assert_ne!(PROVIDER_KEY, SUBLAYER_KEY);
        assert!(filters.iter().all(|f| f.key != PROVIDER_KEY && f.key != SUBLAYER_KEY));
    }

    #[test]
    fn each_layer_ends_in_a_hard_block_of_everything() {
        let filters = sandbox_filters(&account());
        for layer in Layer::ALL {
            let catch_all: Vec<_> = filters.iter().filter(|f| f.layer == layer && f.conditions.len() == 1).collect();
            assert_eq!(catch_all.len(), 1, "{layer:?}");
            let f = catch_all[0];
            assert_eq!((f.action, f.hard), (Action::Block, true), "{f}");
            // Every permit outranks it; every other block outranks every permit.
            for other in filters.iter().filter(|o| o.layer == layer && o.key != f.key) {
                assert!(other.weight > f.weight, "{other}");
            }
        }
    }

    #[test]
    fn the_persistent_filters_permit_no_connection_out() {
        let filters = sandbox_filters(&account());
        let permits: Vec<_> = filters
            .iter()
            .filter(|f| f.action == Action::Permit && matches!(f.layer, Layer::ConnectV4 | Layer::ConnectV6))
            .collect();
        assert!(permits.is_empty(), "{permits:#?}");
    }

    #[test]
    fn dns_smb_and_icmp_are_blocked_above_a_gateway_permit() {
        let filters = sandbox_filters(&account());
        for layer in [Layer::ConnectV4, Layer::ConnectV6] {
            for port in [53u16, 445, 139] {
                let block = filters
                    .iter()
                    .find(|f| f.layer == layer && f.conditions.contains(&Condition::RemotePort(port)))
                    .unwrap_or_else(|| panic!("no block for port {port} at {layer:?}"));
                assert!(block.action == Action::Block && block.hard && block.weight > GATEWAY_WEIGHT, "{block}");
            }
            let icmp = if layer == Layer::ConnectV6 { proto::ICMPV6 } else { proto::ICMP };
            assert!(filters.iter().any(|f| f.layer == layer && f.conditions.contains(&Condition::Protocol(icmp))));
        }
    }

    #[test]
    fn a_runs_gateway_permits_name_its_ports_and_its_logon_only() {
        let run = crate::fixtures::logon();
        let filters = gateway_filters(&run, &[50123, 50124], 0x77 << 64);
        assert_eq!(filters.len(), 2);
        for (f, port) in filters.iter().zip([50123u16, 50124]) {
            assert_eq!((f.layer, f.action, f.hard), (Layer::ConnectV4, Action::Permit, false), "{f}");
            assert!(f.conditions.contains(&Condition::RemotePort(port)), "{f}");
            assert!(f.conditions.contains(&Condition::RemoteV4(Ipv4Addr::LOCALHOST)), "{f}");
            assert!(f.conditions.contains(&Condition::Protocol(proto::TCP)), "{f}");
            let Condition::User { sd, .. } = &f.conditions[0] else { panic!("{f}: no user condition") };
            let acl = SecurityDescriptor::from_bytes(sd).unwrap().dacl.unwrap();
            assert_eq!(acl.aces.len(), 1, "{f}");
            assert!(acl.mentions(&run), "{f}");
            assert!(!acl.mentions(&account()) && !acl.mentions(&capability()), "not every run of the account: {f}");
            // Above the catch-all block of its layer, so it decides.
            let catch_all = sandbox_filters(&account())
                .into_iter()
                .find(|c| c.layer == f.layer && c.conditions.len() == 1)
                .unwrap();
            assert!(f.weight > catch_all.weight);
        }
        assert_ne!(filters[0].key, filters[1].key);
        assert!(gateway_filters(&run, &[], 0).is_empty(), "no gateway, no permit");
    }

    #[test]
    fn inbound_is_loopback_only() {
        let filters = sandbox_filters(&account());
        for layer in [Layer::RecvAcceptV4, Layer::RecvAcceptV6] {
            let mine: Vec<_> = filters.iter().filter(|f| f.layer == layer).collect();
            assert_eq!(mine.len(), 2);
            assert!(mine.iter().any(|f| f.action == Action::Permit
                && f.conditions.iter().any(|c| matches!(c, Condition::RemoteV4(a) if a.is_loopback())
                    || matches!(c, Condition::RemoteV6(a) if a.is_loopback()))));
        }
    }

    #[test]
    fn descriptions_print() {
        let text: Vec<String> = sandbox_filters(&account()).iter().map(|f| f.to_string()).collect();
        assert!(text.iter().any(|t| t.contains("hard block: block DNS (IPv4); user matches")));
    }
}
