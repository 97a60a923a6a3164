//! Present so that the build-time dependencies above join the build-time feature set.

fn main() {}
