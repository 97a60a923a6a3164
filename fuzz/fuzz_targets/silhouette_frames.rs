#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::silhouette_frames(data));
