//! The commands of a site, against a real PostgreSQL server started by the test: `enrol site`
//! sets the site up, `enrol add/list/remove --site` work on its people, and a `kiosk` configured
//! with `[site]` bootstraps its replica before deciding and sends its events to the site.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use access::gallery::{Gallery, TemplateKey};
use silhouette::source::FrameSource;
use site::{SiteAdmin, SiteConfig};
use synthetic_scene::{SceneConfig, SyntheticScene};
use test_support::postgres_server::{PostgresServer, TRUST_LOOPBACK};

fn run(command: &str, args: &[&str]) -> Output {
    let binary = match command {
        "enrol" => env!("CARGO_BIN_EXE_enrol"),
        _ => env!("CARGO_BIN_EXE_kiosk"),
    };
    Command::new(binary)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A synthetic walk-up written as PNG frames into `dir`.
fn write_walk(dir: &Path, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut scene = SyntheticScene::new(SceneConfig::single_walker(seed, 320, 240));
    while let Some(frame) = scene.next_frame().unwrap() {
        frame
            .image
            .save(dir.join(format!("{:04}.png", frame.index)))
            .unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn a_site_is_set_up_enrolled_and_erased_by_command_and_a_kiosk_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = PostgresServer::start(&dir.path().join("server"), TRUST_LOOPBACK, None)
    else {
        return;
    };
    let url = |role: &str| server.role_url(role);
    let owner = url("postgres");
    assert!(
        succeeded(&run("enrol", &["site", "--site", &owner, "migrate"]))
            .contains(&format!("schema {}", site::SCHEMA_VERSION))
    );
    SiteConfig::from_url(&owner)
        .unwrap()
        .connect()
        .unwrap()
        .batch_execute("CREATE ROLE front_door LOGIN")
        .unwrap();
    succeeded(&run(
        "enrol",
        &["site", "--site", &owner, "group", "--name", "lab"],
    ));
    succeeded(&run(
        "enrol",
        &[
            "site",
            "--site",
            &owner,
            "door",
            "--name",
            "front",
            "--role",
            "front_door",
            "--allow",
            "lab",
        ],
    ));

    let model = test_support::seeded_model(dir.path());
    let key_file = dir.path().join("site.key");
    let key = TemplateKey::create_file(&key_file).unwrap();
    let walk = write_walk(&dir.path().join("ada-walk"), 11);
    let add = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "add",
            "--site",
            &owner,
            "--model",
            model.to_str().unwrap(),
            "--name",
            name,
            "--input",
            walk.to_str().unwrap(),
            "--group",
            "lab",
        ];
        args.extend_from_slice(extra);
        run("enrol", &args)
    };
    let refused = add("ada", &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--key-file"));
    let added = succeeded(&add("ada", &["--key-file", key_file.to_str().unwrap()]));
    assert!(added.contains("ada enrolled at the site"), "{added}");
    // A station with a key file of its own would write templates no door of the site can open.
    let wrong_key_file = dir.path().join("station-own.key");
    TemplateKey::create_file(&wrong_key_file).unwrap();
    let wrong = add("bob", &["--key-file", wrong_key_file.to_str().unwrap()]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("not this site's key"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let listed = succeeded(&run("enrol", &["list", "--site", &owner]));
    assert!(
        listed.contains("ada") && listed.contains("groups lab"),
        "{listed}"
    );

    // A kiosk of the front door: its replica is made and filled before it decides.
    test_support::save_operating_point(&model, 0.5, &key.operating_point_key());
    let config = dir.path().join("kiosk.toml");
    std::fs::write(
        &config,
        format!(
            "door = \"front\"\n[model]\npath = \"model.onnx\"\n[source]\npath = \"ada-walk\"\n\
             [gallery]\npath = \"replica.db\"\nkey_file = \"site.key\"\n\
             [audit]\npath = \"audit/events.jsonl\"\nmax_file_bytes = 100000\nkeep_files = 2\n\
             [site]\nurl = \"{}\"\nplaintext = true\n",
            url("front_door").replace("?sslmode=disable", "")
        ),
    )
    .unwrap();
    succeeded(&run("kiosk", &["--config", config.to_str().unwrap()]));
    let replica = Gallery::open_existing(&dir.path().join("replica.db"), Some(&key)).unwrap();
    assert_eq!(replica.people().unwrap()[0].name, "ada");
    let mut site = SiteAdmin::connect(&SiteConfig::from_url(&owner).unwrap()).unwrap();
    let kinds: Vec<String> = site
        .events(Some("front"))
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&"started".to_string()) && kinds.contains(&"granted".to_string()),
        "{kinds:?}"
    );

    // The log is checked against the heads in the door's gallery and those at the site.
    let verified = succeeded(&run(
        "kiosk",
        &["verify-log", "--config", config.to_str().unwrap()],
    ));
    assert!(verified.contains(": gallery "), "{verified}");
    assert!(verified.contains(": site database "), "{verified}");
    // Someone who can write the door's gallery and its log, but not the site: the heads deleted
    // from the gallery and the log cut before its end still meet the heads the site holds.
    rusqlite::Connection::open(dir.path().join("replica.db"))
        .unwrap()
        .execute("DELETE FROM events WHERE kind = 'audit_head'", [])
        .unwrap();
    let log = dir.path().join("audit/events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&log, lines[..2].join("\n") + "\n").unwrap();
    let cut = run(
        "kiosk",
        &["verify-log", "--config", config.to_str().unwrap()],
    );
    assert!(!cut.status.success());
    let said = String::from_utf8_lossy(&cut.stderr);
    assert!(
        said.contains("(site database") && said.contains("cut from its end"),
        "{said}"
    );
    std::fs::remove_file(&log).unwrap();
    let gone = run(
        "kiosk",
        &["verify-log", "--config", config.to_str().unwrap()],
    );
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("(site database"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );

    let removed = succeeded(&run(
        "enrol",
        &["remove", "--site", &owner, "--name", "ada"],
    ));
    assert!(removed.contains("erased ada at the site"), "{removed}");
    assert!(!succeeded(&run("enrol", &["list", "--site", &owner])).contains("ada"));
    let local = run(
        "enrol",
        &[
            "remove",
            "--gallery",
            dir.path().join("replica.db").to_str().unwrap(),
            "--key-file",
            key_file.to_str().unwrap(),
            "--name",
            "ada",
        ],
    );
    assert!(
        String::from_utf8_lossy(&local.stderr).contains("site's replica"),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
}
