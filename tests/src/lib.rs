//! Holds no code: the end-to-end tests live in `tests/`, and the kiosk's crates are under test.
