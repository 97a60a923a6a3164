//! No code: see `Cargo.toml`. Being a member of the workspace is what unifies the features, since
//! every command of CI and the README selects the whole workspace.
