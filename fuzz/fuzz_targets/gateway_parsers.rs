//! Feeds arbitrary bytes to every parser the gateway runs on what the sandbox sends it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringfence_gateway::parse_untrusted(data);
});
