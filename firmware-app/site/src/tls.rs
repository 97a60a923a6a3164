//! TLS clients of the door (to the site database, to the MQTT broker): rustls with the *ring*
//! provider, the server's certificate verified against the site's own authority (and its name
//! against the host connected to), and a client certificate when the server asks for one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use access::secret_file::{read_private_file, SecretFileError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// A file of the TLS settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file that is missing, unreadable or not what it should be.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A private key others may read, or that cannot be read.
    #[error(transparent)]
    Secret(#[from] SecretFileError),
}

/// The TLS settings of a door's connections, the same for the site (`[site]`) and the MQTT broker
/// (`[mqtt]`), flattened into both.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TlsSettings {
    /// The certificate authority that signed the server's certificate (PEM). Required unless
    /// `plaintext`: the connection is TLS, and a server whose certificate does not chain to it, or
    /// does not name the host connected to, is refused.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM chain), when the server authenticates doors by certificate.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM), only readable by its owner.
    pub key_file: Option<PathBuf>,
    /// No TLS at all, to a server on this host (loopback, or a local socket).
    #[serde(default)]
    pub plaintext: bool,
    /// No TLS at all to a server elsewhere: every template, name and event crosses the network in
    /// clear. Refused as `plaintext`; every start says so.
    #[serde(default)]
    pub unsafe_plaintext: bool,
}

/// Whether `host` is this machine: a loopback name or address, or a local socket's path.
pub fn is_this_host(host: &str) -> bool {
    host == "localhost"
        || host.starts_with('/')
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

impl TlsSettings {
    /// The one rule of a door's TLS settings: TLS (with the authority that signed `server`'s
    /// certificate) unless plain text is asked for, never both, plain text to another host only as
    /// `unsafe_plaintext`, and a client certificate only whole and only over TLS.
    pub fn check(&self, server: &str, host: &str) -> Result<(), String> {
        if self.plaintext && !is_this_host(host) {
            return Err(format!(
                "plaintext to {server}, which is not on this host: everything sent would cross the network in clear; if that is meant, write unsafe_plaintext = true instead (every start will say so)"
            ));
        }
        let (ca_file, cert_file, key_file) = (
            self.ca_file.is_some(),
            self.cert_file.is_some(),
            self.key_file.is_some(),
        );
        let plaintext = self.plaintext || self.unsafe_plaintext;
        if !plaintext && !ca_file {
            return Err(format!(
                "no ca_file for {server}: name the certificate authority that signed its certificate, or set plaintext for a server on this host"
            ));
        }
        if plaintext && ca_file {
            return Err("both plaintext and a ca_file: choose one".into());
        }
        if cert_file != key_file {
            return Err("a client certificate needs both cert_file and key_file".into());
        }
        if plaintext && cert_file {
            return Err("a client certificate needs TLS: drop plaintext".into());
        }
        Ok(())
    }

    /// The TLS client these settings describe, or none when they name no authority (plain text).
    pub fn client_config(&self) -> Result<Option<rustls::ClientConfig>, TlsError> {
        let Some(ca_file) = &self.ca_file else {
            return Ok(None);
        };
        let client = self.cert_file.as_deref().zip(self.key_file.as_deref());
        client_config(ca_file, client).map(Some)
    }

    /// The files the settings name, for a caller that resolves relative paths.
    pub fn files_mut(&mut self) -> [Option<&mut PathBuf>; 3] {
        [
            self.ca_file.as_mut(),
            self.cert_file.as_mut(),
            self.key_file.as_mut(),
        ]
    }
}

/// A client that trusts the authority in `ca_file` (PEM) only, and presents `client` (a PEM
/// certificate chain and its PEM private key, only readable by its owner) when given.
fn client_config(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(ca_file)? {
        roots.add(certificate).map_err(|e| file(ca_file, e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| file(ca_file, e))?
    .with_root_certificates(roots);
    match client {
        Some((cert_file, key_file)) => {
            let key_pem = read_private_file(key_file)?;
            let key =
                PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| file(key_file, e))?;
            builder
                .with_client_auth_cert(certificates(cert_file)?, key)
                .map_err(|e| file(cert_file, e))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(path, e))?;
    if certificates.is_empty() {
        return Err(file(path, "no PEM certificate in it"));
    }
    Ok(certificates)
}

fn file(path: &Path, detail: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}
