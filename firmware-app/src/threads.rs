//! Every thread of the kiosk is started here, named, and a system that cannot start one (out of
//! threads or memory) is an error naming the thread, never a panic.

use std::thread::JoinHandle;

/// A thread could not be started.
#[derive(Debug, thiserror::Error)]
#[error("the {name} thread could not be started: {source}")]
pub struct SpawnError {
    /// The thread's name.
    pub name: &'static str,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

/// Starts `work` on a thread called `name`.
pub fn spawn<T: Send + 'static>(
    name: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map_err(|source| SpawnError { name, source })
}
