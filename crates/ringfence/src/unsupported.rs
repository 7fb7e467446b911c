//! Platforms without a backend: every launch is refused with the reason.

use ringfence_backend::{
    Backend, Enforcement, Explanation, GatewayPorts, Killer, LaunchError, LaunchRequest, NoSignals, Outcome, Prepared,
    Probe, ProbeItem, Sandbox,
};
use ringfence_policy::Policy;

/// The backend of a platform ringfence does not support.
pub struct Unsupported;

/// No sandbox can exist here.
pub enum Never {}

fn refusal() -> LaunchError {
    LaunchError::unsupported("this platform has no ringfence backend", "see the README's Status for the platforms")
}

impl Prepared for Never {
    fn gateway_ports(&self) -> Option<GatewayPorts> {
        match *self {}
    }
    fn temp_dir(&self) -> Option<String> {
        match *self {}
    }
}

impl Sandbox for Never {
    type Signals = NoSignals;
    fn id(&self) -> u32 {
        match *self {}
    }
    fn command_id(&self) -> Option<u32> {
        match *self {}
    }
    fn killer(&self) -> Killer {
        match *self {}
    }
    fn enforcement(&self) -> &Enforcement {
        match *self {}
    }
    fn wait(self, _: &mut NoSignals) -> Result<Outcome, LaunchError> {
        match self {}
    }
}

impl Backend for Unsupported {
    type Signals = NoSignals;
    type Prepared = Never;
    type Sandbox = Never;

    fn start_process() -> Result<NoSignals, i32> {
        Ok(NoSignals)
    }
    fn prepare(_: &Policy) -> Result<Never, LaunchError> {
        Err(refusal())
    }
    fn spawn(prepared: Never, _: LaunchRequest) -> Result<Never, LaunchError> {
        match prepared {}
    }
    fn probe() -> Probe {
        Probe {
            platform: std::env::consts::OS.into(),
            items: vec![ProbeItem::new("backend", false, "this platform has no ringfence backend").required()],
            notes: Vec::new(),
        }
    }
    fn explain(_: &Policy) -> Result<Explanation, LaunchError> {
        Err(refusal())
    }
}
