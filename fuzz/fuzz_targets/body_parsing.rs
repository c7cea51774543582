#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| classify_fuzz::checks::body_parsing(data));
