//! The template key, and templates sealed under it with ChaCha20-Poly1305.

use super::people::embedding_bytes;
use super::*;

pub(super) const KEY_BYTES: usize = 32;
pub(super) const NONCE_BYTES: usize = 12;
/// Sealed under the key when an encrypted gallery is created, so that a wrong key is told apart from a
/// damaged template.
pub(super) const KEY_CHECK_PLAINTEXT: &[u8] = b"gait gallery key check";

/// A 256-bit key for templates at rest, from 64 hex digits (a file on the device, ideally sealed by its
/// TPM or secure element).
#[derive(Clone)]
pub struct TemplateKey(pub(super) [u8; KEY_BYTES]);

impl TemplateKey {
    /// A key from 64 hex digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        crate::secret_file::key_from_hex(text)
            .map(TemplateKey)
            .ok_or(GalleryError::BadKey)
    }

    /// A key file: the 64 hex digits on a line of their own, readable by its owner only (a key
    /// that others can read protects nothing, so it is refused rather than used).
    pub fn read_file(path: &Path) -> Result<Self> {
        Ok(TemplateKey(crate::secret_file::read_key_file(path)?))
    }

    /// A key for another purpose (`purpose` names it), derived so that one secret on the device
    /// serves the templates and the audit chain without either key revealing the other.
    pub fn derive(&self, purpose: &str) -> [u8; KEY_BYTES] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"gait kiosk key derivation\0");
        hasher.update(purpose.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.0);
        hasher.finalize().into()
    }

    /// What a site stores to tell its template key from another without holding it: the key's
    /// derivation for this purpose alone, which reveals nothing of the key or of its other
    /// derivations.
    pub fn site_check(&self) -> [u8; KEY_BYTES] {
        self.derive("site template key check")
    }

    /// The key that seals the operating points of the doors holding this key
    /// (`hstl::OperatingPoint::sealed`): someone who can write a model's folder but does not hold
    /// the key cannot set a door's accept distance.
    pub fn operating_point_key(&self) -> [u8; KEY_BYTES] {
        self.derive("operating point")
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        TemplateKey(key)
    }

    /// Writes a new random key to `path`, readable by its owner only; an existing file is never
    /// overwritten (losing a key makes everything sealed with it unreadable).
    pub fn create_file(path: &Path) -> Result<Self> {
        Ok(TemplateKey(crate::secret_file::create_key_file(path)?))
    }

    /// `embedding` sealed for `pseudonym` and `model_id`, as a site stores it and as a door's replica
    /// opens it.
    pub fn seal_template(
        &self,
        pseudonym: &str,
        model_id: &str,
        embedding: &Embedding,
    ) -> Result<Vec<u8>> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        seal(
            &cipher,
            &embedding_bytes(embedding),
            &associated_data(pseudonym, model_id),
        )
    }

    /// The key as 64 hex digits, as key files hold it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for TemplateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateKey(..)")
    }
}

impl Gallery {
    pub(super) fn check_key(&mut self) -> Result<()> {
        let sealed: Option<Vec<u8>> = self
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'key_check'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let has_people = self.count_people()? > 0;
        match (&self.cipher, sealed) {
            (None, Some(_)) => Err(GalleryError::KeyRequired),
            (Some(_), None) if has_people => Err(GalleryError::NotEncrypted),
            (Some(cipher), None) => {
                let sealed = seal(cipher, KEY_CHECK_PLAINTEXT, b"")?;
                self.connection
                    .execute(
                        "INSERT INTO meta(key, value) VALUES ('key_check', ?1)",
                        params![sealed],
                    )
                    .map_err(full)?;
                Ok(())
            }
            (Some(cipher), Some(sealed)) => match open_sealed(cipher, &sealed, b"") {
                Some(plain) if plain == KEY_CHECK_PLAINTEXT => Ok(()),
                _ => Err(GalleryError::WrongKey),
            },
            (None, None) => Ok(()),
        }
    }
}

pub(super) fn associated_data(pseudonym: &str, model_id: &str) -> Vec<u8> {
    format!("{pseudonym}\u{0}{model_id}").into_bytes()
}

/// `nonce || ciphertext+tag` with a fresh random nonce.
pub(super) fn seal(cipher: &ChaCha20Poly1305, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| GalleryError::BadKey)?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

pub(super) fn open_sealed(cipher: &ChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_BYTES {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}
