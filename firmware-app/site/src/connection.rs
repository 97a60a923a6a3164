//! How a door or an enrolment station reaches the site database: the server, the role, its
//! password or client certificate from files only readable by their owner, and TLS with the
//! server's certificate verified against the site's own certificate authority.

use std::path::PathBuf;
use std::time::Duration;

use access::secret_file::read_private_file;
use postgres::config::{Host, SslMode};
use serde::Deserialize;

use crate::error::{Result, SiteError};
use crate::tls::TlsSettings;

/// `[site]` in kiosk.toml, or `--site URL` of the tools.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// `postgresql://ROLE@HOST:PORT/DATABASE`, never with a password in it.
    pub url: String,
    /// The role's password, alone in a file only its owner can read.
    pub password_file: Option<PathBuf>,
    /// TLS to the server, verified against the site's authority (the host is the one in `url`).
    #[serde(flatten)]
    pub tls: TlsSettings,
    /// How often a door asks for changes when no notification came, in seconds.
    #[serde(default = "default_poll_interval_s")]
    pub poll_interval_s: f64,
    /// How long to wait for the server, in seconds.
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: f64,
}

fn default_poll_interval_s() -> f64 {
    30.0
}

fn default_connect_timeout_s() -> f64 {
    5.0
}

impl SiteConfig {
    /// Settings from a libpq-style URL: `postgresql://ROLE@HOST/DB?sslrootcert=CA.pem` (TLS, server
    /// verified), `&sslcert=..&sslkey=..` (client certificate), `&passfile=..` (password file),
    /// or `?sslmode=disable` (plain text).
    pub fn from_url(url: &str) -> Result<Self> {
        let (server, query) = url.split_once('?').unwrap_or((url, ""));
        let mut config = SiteConfig {
            url: server.to_string(),
            password_file: None,
            tls: TlsSettings::default(),
            poll_interval_s: default_poll_interval_s(),
            connect_timeout_s: default_connect_timeout_s(),
        };
        let mut passed_on = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "sslrootcert" => config.tls.ca_file = Some(value.into()),
                "sslcert" => config.tls.cert_file = Some(value.into()),
                "sslkey" => config.tls.key_file = Some(value.into()),
                "passfile" => config.password_file = Some(value.into()),
                "sslmode" if value == "disable" => config.tls.plaintext = true,
                "sslmode" if value == "verify-full" => {}
                "sslmode" => {
                    return Err(SiteError::Settings(format!(
                        "sslmode={value}: use verify-full (with sslrootcert) or disable"
                    )))
                }
                _ => passed_on.push(pair),
            }
        }
        if !passed_on.is_empty() {
            config.url = format!("{server}?{}", passed_on.join("&"));
        }
        config.check()?;
        Ok(config)
    }

    /// Refuses settings that cannot work or would be unsafe, naming the setting.
    pub fn check(&self) -> Result<()> {
        let settings = |detail: String| Err(SiteError::Settings(detail));
        let postgres = self.postgres_config()?;
        if postgres.get_password().is_some() {
            return settings(
                "the url holds a password: put it in a file of its own (password_file, or passfile= in a --site url)".into(),
            );
        }
        if postgres.get_user().is_none() {
            return settings(format!("the url names no role: {}", self.server()));
        }
        if !(0.1..=3_600.0).contains(&self.poll_interval_s) {
            return settings(format!(
                "poll_interval_s = {}: between 0.1 and 3600 seconds",
                self.poll_interval_s
            ));
        }
        if !(0.5..=120.0).contains(&self.connect_timeout_s) {
            return settings(format!(
                "connect_timeout_s = {}: between 0.5 and 120 seconds",
                self.connect_timeout_s
            ));
        }
        self.tls
            .check(&self.server(), &host_of(&postgres))
            .map_err(SiteError::Settings)?;
        Ok(())
    }

    /// The files the settings name, for a caller that resolves relative paths.
    pub fn files_mut(&mut self) -> [Option<&mut PathBuf>; 4] {
        let [ca_file, cert_file, key_file] = self.tls.files_mut();
        [self.password_file.as_mut(), ca_file, cert_file, key_file]
    }

    /// The server, role and database, without credentials, for messages.
    pub fn server(&self) -> String {
        let Ok(config) = self.url.parse::<postgres::Config>() else {
            return "(an unreadable url)".into();
        };
        let host = host_of(&config);
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            config.get_user().unwrap_or("?"),
            config.get_dbname().unwrap_or("?")
        )
    }

    /// The role the url names.
    pub fn role(&self) -> Option<String> {
        self.url
            .parse::<postgres::Config>()
            .ok()
            .and_then(|c| c.get_user().map(str::to_string))
    }

    fn postgres_config(&self) -> Result<postgres::Config> {
        self.url
            .parse::<postgres::Config>()
            .map_err(|e| SiteError::Settings(format!("url {}: {e}", self.server_hint())))
    }

    /// The url up to its credentials, for an error about the url itself.
    fn server_hint(&self) -> String {
        match self.url.rsplit_once('@') {
            Some((_, rest)) => format!("...@{rest}"),
            None => self.url.clone(),
        }
    }

    /// A new connection to the site.
    pub fn connect(&self) -> Result<postgres::Client> {
        self.check()?;
        let mut postgres = self.postgres_config()?;
        let timeout = Duration::from_secs_f64(self.connect_timeout_s);
        postgres
            .connect_timeout(timeout)
            .tcp_user_timeout(timeout * 2)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("gait-kiosk");
        if let Some(path) = &self.password_file {
            let password = read_private_file(path).map_err(SiteError::Secret)?;
            postgres.password(password.trim_end_matches(['\r', '\n']));
        }
        let connected = match self.tls.client_config()? {
            None => {
                postgres.ssl_mode(SslMode::Disable);
                postgres.connect(postgres::NoTls)
            }
            Some(tls) => {
                postgres.ssl_mode(SslMode::Require);
                postgres.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            }
        };
        connected.map_err(|source| SiteError::Connect {
            server: self.server(),
            source,
        })
    }
}

/// The host a connection goes to (a local socket's path, or `localhost` when none is named).
fn host_of(config: &postgres::Config) -> String {
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_libpq_url_carries_the_files_and_the_rest_goes_to_the_client() {
        let config = SiteConfig::from_url(
            "postgresql://enrol@site.example:5433/gait?sslrootcert=/etc/gait/ca.pem&passfile=/etc/gait/pw&application_name=x",
        )
        .unwrap();
        assert_eq!(
            config.tls.ca_file.as_deref(),
            Some(Path::new("/etc/gait/ca.pem"))
        );
        assert_eq!(
            config.password_file.as_deref(),
            Some(Path::new("/etc/gait/pw"))
        );
        assert_eq!(config.server(), "enrol@site.example:5433/gait");
        assert!(config.url.ends_with("?application_name=x"));
        assert_eq!(config.role().as_deref(), Some("enrol"));
    }

    #[test]
    fn unsafe_or_impossible_settings_are_refused_by_name() {
        for (url, expected) in [
            ("postgresql://enrol@db/gait", "no ca_file"),
            (
                "postgresql://enrol:secret@db/gait?sslmode=disable",
                "password",
            ),
            ("postgresql://db/gait?sslmode=disable", "no role"),
            ("postgresql://enrol@db/gait?sslmode=require", "verify-full"),
            (
                "postgresql://enrol@localhost/gait?sslmode=disable&sslrootcert=ca.pem",
                "choose one",
            ),
            (
                "postgresql://enrol@db/gait?sslmode=disable",
                "not on this host",
            ),
            (
                "postgresql://enrol@db/gait?sslrootcert=ca.pem&sslcert=c.pem",
                "key_file",
            ),
        ] {
            let error = SiteConfig::from_url(url).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
        for local in ["localhost", "127.0.0.1", "[::1]"] {
            SiteConfig::from_url(&format!("postgresql://door@{local}/gait?sslmode=disable"))
                .unwrap();
        }
        let mut config =
            SiteConfig::from_url("postgresql://door@localhost/gait?sslmode=disable").unwrap();
        config.poll_interval_s = f64::NAN;
        assert!(config
            .check()
            .unwrap_err()
            .to_string()
            .contains("poll_interval_s"));
    }
}
