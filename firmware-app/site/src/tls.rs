//! TLS clients of the door (to the site database, to the MQTT broker): rustls with the *ring*
//! provider, the server's certificate verified against the site's own authority (and its name
//! against the host connected to), and a client certificate when the server asks for one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use access::gallery::{read_private_file, GalleryError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
    Secret(#[from] GalleryError),
}

/// The one rule of a door's TLS settings, for the site and the broker alike: TLS (with the
/// authority that signed `server`'s certificate) unless plain text is asked for, never both, and a
/// client certificate only whole and only over TLS.
pub fn check_settings(
    server: &str,
    plaintext: bool,
    ca_file: bool,
    cert_file: bool,
    key_file: bool,
) -> Result<(), String> {
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

/// A client that trusts the authority in `ca_file` (PEM) only, and presents `client` (a PEM
/// certificate chain and its PEM private key, only readable by its owner) when given.
pub fn client_config(
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
