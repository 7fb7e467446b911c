//! `ringfence profile`: the built-in agent profiles, as the config files they are.

use crate::args::ProfileCommand;
use ringfence_policy::Agent;
use std::fmt::Write;

pub fn profile(command: ProfileCommand) -> i32 {
    match command {
        ProfileCommand::List => {
            let mut out = String::new();
            for agent in Agent::all() {
                let _ = writeln!(out, "{agent}");
            }
            crate::emit(&out);
        }
        ProfileCommand::Show { name } => crate::emit(name.profile_text()),
    }
    0
}
