//! `kiosk --config` refuses to guard a door it cannot guard properly, and runs one it can: the model's
//! calibration, the configuration's sense, the key's permissions, the gallery's path and the model
//! its templates were made with (an int8 model is another model); and a run that leaves an audit log
//! `verify-log` checks against the heads it published.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use access::event_store::EventStore;
use access::gallery::{Gallery, TemplateKey};

struct Door {
    dir: tempfile::TempDir,
    model: PathBuf,
}

impl Door {
    /// A seeded model, an empty scene of a few frames, a key and an empty gallery.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = test_support::seeded_model(dir.path());
        let frames = dir.path().join("frames");
        std::fs::create_dir(&frames).unwrap();
        for i in 0..8 {
            image::GrayImage::from_pixel(160, 120, image::Luma([90]))
                .save(frames.join(format!("{i:03}.png")))
                .unwrap();
        }
        let key = TemplateKey::create_file(&dir.path().join("template.key")).unwrap();
        Gallery::open(&dir.path().join("gallery.db"), Some(&key)).unwrap();
        Door { dir, model }
    }

    /// Writes an operating point for the model now in place.
    fn calibrate(&self, accept_distance: f32) {
        let key = TemplateKey::read_file(&self.dir.path().join("template.key")).unwrap();
        test_support::save_operating_point(
            &self.model,
            accept_distance,
            &key.operating_point_key(),
        );
    }

    fn config(&self, extra_decision: &str, gallery: &str) -> PathBuf {
        let path = self.dir.path().join("kiosk.toml");
        std::fs::write(
            &path,
            format!(
                "door = \"test\"\n[model]\npath = \"model.onnx\"\n[source]\npath = \"frames\"\n\
                 [gallery]\npath = \"{gallery}\"\nkey_file = \"template.key\"\n\
                 [decision]\n{extra_decision}\n\
                 [audit]\npath = \"audit/events.jsonl\"\nmax_file_bytes = 100000\nkeep_files = 2\n"
            ),
        )
        .unwrap();
        path
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }
}

fn kiosk(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiosk"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// `kiosk verify-log` on `config`, which must pass: its report.
fn verify_log(config: &Path) -> String {
    let verified = kiosk(&["verify-log"], config);
    let stdout = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        verified.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    stdout
}

fn refused(output: &Output, because: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "ran: {stderr}");
    assert!(
        stderr.contains(because),
        "expected `{because}` in:\n{stderr}"
    );
}

#[test]
fn a_door_never_runs_on_a_distance_nobody_calibrated_for_its_model() {
    let door = Door::new();
    refused(
        &kiosk(&[], &door.config("", "gallery.db")),
        "model.onnx.operating-point.json is missing",
    );
    refused(
        &kiosk(&[], &door.config("accept_distance = 0.3", "gallery.db")),
        "operating-point.json is missing",
    );
    door.calibrate(0.5);
    refused(
        &kiosk(&[], &door.config("accept_distance = 0.9", "gallery.db")),
        "may only tighten it",
    );
    // The hostile probe: someone who can write the model's folder, not the key, loosens the
    // point (any finite distance made every stranger a grant) or drops its seal.
    let point_path = hstl::OperatingPoint::path_for(&door.model);
    let sealed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&point_path).unwrap()).unwrap();
    for (change, because) in [
        ("accept_distance", "changed after it was sealed"),
        ("seal", "is not sealed with this door's key"),
    ] {
        let mut edited = sealed.clone();
        match change {
            "seal" => {
                edited.as_object_mut().unwrap().remove("seal");
            }
            _ => edited[change] = 1e30.into(),
        }
        std::fs::write(&point_path, edited.to_string()).unwrap();
        refused(&kiosk(&[], &door.config("", "gallery.db")), because);
    }
    door.calibrate(0.5);
    // The model file replaced (retrained, say) without calibrating the new one.
    hstl::onnx_graph::write_model(
        &hstl::Weights::seeded(hstl::Variant::Compact, 8),
        &hstl::onnx_graph::ExportOptions::default(),
        &door.model,
    )
    .unwrap();
    refused(
        &kiosk(&[], &door.config("", "gallery.db")),
        "was calibrated for model",
    );
}

#[test]
fn the_shipped_models_point_edited_looser_is_refused_and_a_point_saved_looser_on_purpose_is_reported(
) {
    // The hostile probe: `accept_distance` of the shipped model's point edited to 12 and to 1e30
    // made every stranger a grant.
    let door = Door::new();
    std::fs::copy(hstl::shipped::source_tree_model(), &door.model).unwrap();
    let shipped_point = hstl::OperatingPoint::path_for(&hstl::shipped::source_tree_model());
    let point: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&shipped_point).unwrap()).unwrap();
    let shipped = point["accept_distance"].as_f64().unwrap();
    let door_key = TemplateKey::read_file(&door.path("template.key"))
        .unwrap()
        .operating_point_key();
    let with = |accept: f64, looser: Option<f64>| {
        let mut edited = point.clone();
        edited["accept_distance"] = accept.into();
        if let Some(looser) = looser {
            edited["looser_than_shipped"] = looser.into();
        }
        // Sealed with the door's key: the looseness alone is what is refused.
        let sealed = serde_json::from_value::<hstl::OperatingPoint>(edited)
            .unwrap()
            .sealed(&door_key);
        std::fs::write(
            hstl::OperatingPoint::path_for(&door.model),
            serde_json::to_string(&sealed).unwrap(),
        )
        .unwrap();
    };
    let config = door.config("", "gallery.db");
    for edited in [12.0, 1e30, shipped + 0.01] {
        with(edited, None);
        refused(&kiosk(&[], &config), "looser than the model's shipped");
    }
    with(shipped + 0.5, Some(shipped + 1.0));
    refused(&kiosk(&[], &config), "looser than the model's shipped");

    with(shipped + 0.5, Some(shipped));
    let run = kiosk(&[], &config);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("looser than the") && stderr.contains("--looser-than-shipped"),
        "{stderr}"
    );
}

#[test]
fn a_mistyped_gallery_and_a_key_others_can_read_are_refused() {
    let door = Door::new();
    door.calibrate(0.5);
    refused(&kiosk(&[], &door.config("", "galery.db")), "no gallery at");
    assert!(
        !door.path("galery.db").exists(),
        "no empty gallery was made"
    );
    let key = door.path("template.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(&kiosk(&[], &door.config("", "gallery.db")), "chmod 600");
}

#[test]
fn special_files_are_refused_by_kind_before_anything_opens_them() {
    // The hostile probe: a FIFO as the key file, the model or the audit log hung the kiosk
    // silently; a character device as the key file was read until the OOM killer came; an audit
    // log linked to /dev/full swallowed gigabytes.
    let mkfifo = |path: &Path| {
        let _ = std::fs::remove_file(path);
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    type Make<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Make, &str); 4] = [
        ("template.key", &mkfifo, "a FIFO, not a regular file"),
        (
            "template.key",
            &|path: &Path| {
                let _ = std::fs::remove_file(path);
                std::os::unix::fs::symlink("/dev/zero", path).unwrap();
            },
            "a character device, not a regular file",
        ),
        ("model.onnx", &mkfifo, "a FIFO, not a regular file"),
        (
            "audit/events.jsonl",
            &|path: &Path| {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink("/dev/full", path).unwrap();
            },
            "a character device, not a regular file",
        ),
    ];
    for (file, make, because) in cases {
        let door = Door::new();
        door.calibrate(0.5);
        make(&door.path(file));
        let started = std::time::Instant::now();
        refused(&kiosk(&[], &door.config("", "gallery.db")), because);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{file}"
        );
    }
}

#[test]
fn a_panel_the_build_cannot_reach_or_whose_key_others_can_read_is_refused() {
    let door = Door::new();
    door.calibrate(0.5);
    let config = door.config("", "gallery.db");
    let scbk = door.path("osdp.key");
    std::fs::write(&scbk, "00112233445566778899aabbccddeeff\n").unwrap();
    std::fs::set_permissions(&scbk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}[panel]\nmode = \"osdp\"\nfacility_code = 101\n\
             [panel.osdp]\ndevice = \"/dev/null\"\naddress = 1\nkey_file = \"osdp.key\"\n"
        ),
    )
    .unwrap();
    let output = kiosk(&[], &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "ran: {stderr}");
    assert!(
        stderr.contains("rebuild with `--features osdp`") || stderr.contains("chmod 600"),
        "{stderr}"
    );

    std::fs::write(
        &config,
        format!(
            "{text}[panel]\nmode = \"wiegand\"\nfacility_code = 101\n\
             [panel.wiegand]\nd0 = {{ chip = \"/dev/no-such-gpiochip\", line = 1 }}\n\
             d1 = {{ chip = \"/dev/no-such-gpiochip\", line = 2 }}\n"
        ),
    )
    .unwrap();
    let output = kiosk(&[], &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "ran: {stderr}");
    assert!(
        stderr.contains("rebuild with `--features gpio`")
            || stderr.contains("/dev/no-such-gpiochip"),
        "{stderr}"
    );
}

#[test]
fn a_credential_number_is_given_listed_refused_twice_and_cleared() {
    let door = Door::new();
    let key = TemplateKey::read_file(&door.path("template.key")).unwrap();
    let mut gallery = Gallery::open(&door.path("gallery.db"), Some(&key)).unwrap();
    let template = |seed: f32| access::gallery::NewTemplate {
        embedding: hstl::Embedding::new(2, 3, vec![seed; 6]).unwrap(),
        frames: 30,
        source: "walk".into(),
    };
    gallery.enrol("ada", "m", &[template(1.0)]).unwrap();
    gallery.enrol("bob", "m", &[template(2.0)]).unwrap();
    let enrol = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_enrol"))
            .args(args)
            .arg("--gallery")
            .arg(door.path("gallery.db"))
            .arg("--key-file")
            .arg(door.path("template.key"))
            .output()
            .unwrap()
    };
    let given = enrol(&["credential", "--name", "ada", "--number", "4711"]);
    assert!(
        given.status.success(),
        "{}",
        String::from_utf8_lossy(&given.stderr)
    );
    refused(
        &enrol(&["credential", "--name", "bob", "--number", "4711"]),
        "credential number 4711 is already held by someone else",
    );
    let listed = String::from_utf8_lossy(&enrol(&["list"]).stdout).into_owned();
    let ada = listed.lines().find(|l| l.contains("ada")).unwrap();
    assert!(ada.ends_with("credential 4711"), "{listed}");
    assert!(enrol(&["credential", "--name", "ada", "--clear"])
        .status
        .success());
    assert_eq!(
        Gallery::open(&door.path("gallery.db"), Some(&key))
            .unwrap()
            .person("ada")
            .unwrap()
            .credential,
        None
    );
}

#[test]
fn a_calibrated_door_runs_and_its_log_verifies_against_the_heads_it_published() {
    let door = Door::new();
    door.calibrate(0.5);
    let config = door.config("accept_distance = 0.4", "gallery.db");
    let run = kiosk(&[], &config);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("accept distance 0.4"), "{stderr}");

    let stdout = verify_log(&config);
    assert!(
        stdout.contains("every line sealed with this door's chain key"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 published head(s) found in the log as published: gallery"),
        "{stdout}"
    );
    assert!(door.path("audit/events.jsonl.key").exists());

    // Cutting the last lines off (the head's anchor and what followed) is found.
    let log = door.path("audit/events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text}");
    std::fs::write(&log, lines[..1].join("\n") + "\n").unwrap();
    let cut = Command::new(env!("CARGO_BIN_EXE_kiosk"))
        .args(["verify-log", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    refused(&cut, "cut from its end");

    // The hostile probe: every published head deleted from the gallery and the whole log removed
    // gave "0 lines ... chain intact".
    rusqlite::Connection::open(door.path("gallery.db"))
        .unwrap()
        .execute("DELETE FROM events WHERE kind = 'audit_head'", [])
        .unwrap();
    std::fs::remove_file(&log).unwrap();
    refused(
        &kiosk(&["verify-log"], &config),
        "no published chain head of",
    );
}

#[test]
fn an_int8_model_guards_a_door_like_any_other_but_never_with_templates_of_the_float_one() {
    let door = Door::new();
    let float_id = hstl::model_id(&door.model).unwrap();
    let key = TemplateKey::read_file(&door.path("template.key")).unwrap();
    let mut gallery = Gallery::open(&door.path("gallery.db"), Some(&key)).unwrap();
    let template = access::gallery::NewTemplate {
        embedding: hstl::Embedding::new(41, 64, vec![0.5; 41 * 64]).unwrap(),
        frames: 30,
        source: "a walk".into(),
    };
    gallery.enrol("ada", &float_id, &[template]).unwrap();
    drop(gallery);

    let weights = hstl::Weights::seeded(hstl::Variant::Compact, 7);
    let int8 = test_support::int8_model(&weights, &test_support::swaying_blob(12));
    std::fs::write(&door.model, int8).unwrap();
    door.calibrate(0.5);
    let config = door.config("", "gallery.db");
    refused(&kiosk(&[], &config), "the gallery was enrolled with model");

    std::fs::remove_file(door.path("gallery.db")).unwrap();
    Gallery::open(&door.path("gallery.db"), Some(&key)).unwrap();
    let run = kiosk(&[], &config);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("13 int8 convolutions"), "{stderr}");
}

/// Runs `command` as the unprivileged user `nobody`: only root can, so elsewhere the test says it
/// skipped (and fails under `CI`, where it must run).
fn as_service_user(program: &Path, args: &[&str], config: &Path) -> Option<Output> {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run as root to test the service user"
        );
        eprintln!("SKIPPED: only root can run the kiosk as another user");
        return None;
    }
    Some(
        Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(program)
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap(),
    )
}

fn chown(owner: &str, path: &Path) {
    let status = Command::new("chown")
        .args(["-R", owner])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_kiosk_runs_as_its_service_user_and_refuses_files_that_user_cannot_use() {
    let door = Door::new();
    door.calibrate(0.5);
    let config = door.config("", "gallery.db");
    // The binary beside the door's files, so the service user can reach it wherever the build is.
    let kiosk = door.path("kiosk");
    std::fs::copy(env!("CARGO_BIN_EXE_kiosk"), &kiosk).unwrap();
    chown("nobody:nogroup", door.dir.path());

    let Some(run) = as_service_user(&kiosk, &[], &config) else {
        return;
    };
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // A gallery made by root (enrolled as root, say): the kiosk cannot record into it.
    chown("root:root", &door.path("gallery.db"));
    std::fs::set_permissions(
        door.path("gallery.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    refused(
        &as_service_user(&kiosk, &[], &config).unwrap(),
        "belongs to another user",
    );
    chown("nobody:nogroup", &door.path("gallery.db"));

    // A key made by root and kept private to root.
    chown("root:root", &door.path("template.key"));
    refused(
        &as_service_user(&kiosk, &[], &config).unwrap(),
        "template.key",
    );
}

/// The kiosk with its wall clock set by libfaketime (`spec` in its format: `@2020-01-01 00:00:00`
/// starts the clock there, `-1d` shifts it), the monotonic clock left alone as NTP leaves it. `None`
/// (the test skipped) where faketime is not installed; CI installs it, so there it must run.
fn kiosk_with_wall_clock(spec: &str, config: &Path) -> Option<Output> {
    let Ok(output) = Command::new("faketime")
        .args(["-f", spec])
        .arg(env!("CARGO_BIN_EXE_kiosk"))
        .arg("--config")
        .arg(config)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have faketime (apt-get install faketime)"
        );
        eprintln!("SKIPPED: faketime is not installed");
        return None;
    };
    Some(output)
}

#[test]
fn wall_clock_steps_between_runs_stop_no_door_and_the_log_still_verifies() {
    let door = Door::new();
    door.calibrate(0.5);
    let config = door.config("", "gallery.db");
    // A board without a real-time clock boots in the past until NTP steps it to now; later the clock
    // is corrected back a day, then set far ahead by mistake.
    let day_ms = 86_400_000;
    let steps = [
        ("@2020-01-01 00:00:00", 1_577_836_800_000),
        ("+0", access::events::now_ms()),
        ("-1d", access::events::now_ms() - day_ms),
        ("+400d", access::events::now_ms() + 400 * day_ms),
    ];
    for (spec, _) in &steps {
        let Some(run) = kiosk_with_wall_clock(spec, &config) else {
            return;
        };
        assert!(
            run.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let log = std::fs::read_to_string(door.path("audit/events.jsonl")).unwrap();
    let started: Vec<i64> = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["event"]["kind"] == "started")
        .map(|line| line["event"]["at_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(started.len(), steps.len(), "{log}");
    let hour_ms = 3_600_000;
    for (stamped, (spec, expected)) in started.iter().zip(&steps) {
        assert!(
            (stamped - expected).abs() < hour_ms,
            "{spec}: started at {stamped}, expected about {expected}"
        );
    }
    let stdout = verify_log(&config);
    assert!(stdout.contains("4 published head(s)"), "{stdout}");
}

#[test]
fn a_kiosk_started_while_another_process_holds_the_gallery_refuses_then_starts_once_it_is_free() {
    let door = Door::new();
    door.calibrate(0.5);
    let config = door.config("", "gallery.db");
    // An enrolment that takes long, as another process: its write lock held past the busy timeout.
    let enrolment = rusqlite::Connection::open(door.path("gallery.db")).unwrap();
    enrolment.execute_batch("BEGIN IMMEDIATE").unwrap();
    let run = kiosk(&[], &config);
    refused(&run, "gallery database cannot store events");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("locked by another process"), "{stderr}");
    enrolment.execute_batch("COMMIT").unwrap();

    let run = kiosk(&[], &config);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let key = TemplateKey::read_file(&door.path("template.key")).unwrap();
    let events = EventStore::open_existing(&door.path("gallery.db"), Some(&key)).unwrap();
    assert_eq!(events.event_bodies("started").unwrap().len(), 1);
    assert_eq!(events.event_bodies("stopped").unwrap().len(), 1);
    verify_log(&config);
}
