//! Why a site operation failed, naming the server, the file or the person concerned.

use access::secret_file::SecretFileError;

use crate::tls::TlsError;

/// The result of site operations.
pub type Result<T> = std::result::Result<T, SiteError>;

/// A site operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The connection settings make no sense.
    #[error("site settings: {0}")]
    Settings(String),
    /// A file of the TLS settings (a certificate, a key) cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A password file or a client key readable by others, or not readable at all.
    #[error(transparent)]
    Secret(SecretFileError),
    /// The server cannot be reached, or refused the connection (authentication, certificate).
    #[error("site database {server}: {}", describe(source))]
    Connect {
        /// The server, without credentials.
        server: String,
        /// What the client said.
        source: postgres::Error,
    },
    /// The connection's role is not a door of this site.
    #[error("the database role {role} is not registered as a door of this site (`enrol site door --name DOOR --role {role}`)")]
    NotADoor {
        /// The role.
        role: String,
    },
    /// The site's schema is newer than this build.
    #[error("the site database has schema {found}, newer than this build's {supported}: update the kiosk software")]
    NewerSchema {
        /// The schema found.
        found: i32,
        /// The newest this build knows.
        supported: i32,
    },
    /// The site's schema is older than this build writes.
    #[error("the site database has schema {found}, older than this build's {supported}: run `enrol site migrate` with the site owner's role")]
    OlderSchema {
        /// The schema found.
        found: i32,
        /// The one this build writes.
        supported: i32,
    },
    /// The template key given is not the one the site's templates are sealed under: what it
    /// sealed, the site's doors could not open (and what the site holds, this door cannot).
    #[error("the template key file is not this site's key: the site's templates are sealed under another (use the site's key file, the one its first enrolment used)")]
    WrongTemplateKey,
    /// The door is registered at the site under another name than its configuration gives it.
    #[error("this door is registered at the site as {registered:?} but its configuration names it {configured:?}: every event it sends would be refused as another door's (set `door = {registered:?}` in kiosk.toml, or register it under its own name)")]
    DoorNameMismatch {
        /// The site's name for the door's role.
        registered: String,
        /// The kiosk's own.
        configured: String,
    },
    /// The site's schema is not there yet.
    #[error("the site database has no schema yet: run `enrol site migrate` with the site owner's role first")]
    NoSchema,
    /// Someone of that name is already enrolled at the site.
    #[error("{0} is already enrolled at the site")]
    AlreadyEnrolled(String),
    /// Another person holds that credential number.
    #[error("credential number {0} is already held by someone else at the site")]
    CredentialTaken(u32),
    /// Nobody of that name is enrolled at the site.
    #[error("nobody called {0} is enrolled at the site")]
    UnknownPerson(String),
    /// No access group of that name.
    #[error("the site has no access group {0}")]
    UnknownGroup(String),
    /// No door of that name.
    #[error("the site has no door {0}")]
    UnknownDoor(String),
    /// A row the site returned that no enrolment station writes.
    #[error("the site database returned {0}")]
    Damaged(String),
    /// Any other database error.
    #[error("site database: {}", describe(.0))]
    Database(postgres::Error),
}

impl From<postgres::Error> for SiteError {
    fn from(error: postgres::Error) -> Self {
        let role = error
            .as_db_error()
            .filter(|e| e.code() == &postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
            .and_then(|e| e.message().strip_prefix("not a door: "))
            .map(str::to_string);
        match role {
            Some(role) => SiteError::NotADoor { role },
            None => SiteError::Database(error),
        }
    }
}

impl SiteError {
    /// Whether the server or the network failed (worth retrying later), rather than the settings,
    /// the credentials or the request (which retrying cannot mend).
    pub fn is_outage(&self) -> bool {
        match self {
            SiteError::Connect { source, .. } | SiteError::Database(source) => {
                source.is_closed() || network_failure(source)
            }
            _ => false,
        }
    }
}

/// What the server said (its message and SQLSTATE), or what failed on the way to it, with every
/// cause: the client's own text for either is only "db error" or "error connecting".
fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    with_causes(error)
}

/// An error's text followed by each of its causes': clients' own texts often hide the reason (a
/// refused certificate, a reset connection) in a cause.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

/// A connection refused, cut or timed out somewhere in `error`'s chain of causes.
fn network_failure(error: &postgres::Error) -> bool {
    use std::io::ErrorKind;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::BrokenPipe
                    | ErrorKind::TimedOut
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
            );
        }
        cause = current.source();
    }
    false
}
