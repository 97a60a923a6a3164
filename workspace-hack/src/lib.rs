//! No code: see `Cargo.toml` and the README. Every member depends on it, so that building any one
//! package compiles every shared dependency with the workspace's features.
