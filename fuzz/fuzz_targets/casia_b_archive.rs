#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::casia_b_archive(data));
