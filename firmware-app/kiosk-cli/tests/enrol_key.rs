//! `enrol key`: a new key file, private to its owner, never overwritten.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use access::gallery::TemplateKey;

#[test]
fn a_key_is_written_once_with_owner_only_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("template.key");
    let enrol = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_enrol"))
            .args(["key", "--out"])
            .arg(path)
            .output()
            .unwrap()
    };
    assert!(enrol(&path).status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim().len(), 64);
    TemplateKey::read_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let again = enrol(&path);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}
