//! What `ringfence check` prints: the backend's findings about this machine.

/// One line of `ringfence check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeItem {
    pub name: String,
    pub available: bool,
    pub detail: String,
    /// What to do for more protection, when there is something to do.
    pub remedy: Option<String>,
    /// Without it ringfence can't run at all.
    pub required: bool,
}

impl ProbeItem {
    pub fn new(name: impl Into<String>, available: bool, detail: impl Into<String>) -> Self {
        ProbeItem { name: name.into(), available, detail: detail.into(), remedy: None, required: false }
    }

    pub fn remedy(mut self, remedy: Option<String>) -> Self {
        self.remedy = remedy;
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

/// The backend's report on this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// The platform and its version, e.g. `Linux 6.18.5`.
    pub platform: String,
    pub items: Vec<ProbeItem>,
    /// Notes after the items (what the platform never enforces, say).
    pub notes: Vec<String>,
}

impl Probe {
    /// Whether ringfence can run here at all.
    pub fn runnable(&self) -> bool {
        self.items.iter().all(|i| i.available || !i.required)
    }
}
