#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| classify_fuzz::checks::labels(data));
