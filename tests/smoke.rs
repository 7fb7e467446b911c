//! The binary starts, runs a command, and passes its exit code through, for every identity.
#![cfg(target_os = "linux")]

mod common;
use common::*;

#[test]
fn runs_and_passes_exit_code() {
    for who in identities() {
        let env = Env::new(who);
        let out = env.sh(&[], "echo hello; exit 7");
        assert_code(&out, 7);
        assert_eq!(stdout(&out), "hello\n", "{who:?}");
    }
}
