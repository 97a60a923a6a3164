//! Another process holding the gallery's write lock (an enrolment or an erasure that takes long): the
//! kiosk's writes fail with an error that says so, its reads go on, and every event refused while the
//! lock was held is stored, in order, once it is released.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use access::event_store::EventStore;
use access::events::{Event, EventDispatcher, EventKind, EventSink};
use access::gallery::{Gallery, NewTemplate, TemplateKey};
use hstl::Embedding;

const CHILD_GALLERY: &str = "GALLERY_LOCK_CHILD_DB";
/// Longer than two busy timeouts of the gallery (5 s each): the parent meets the lock twice.
const HOLD: Duration = Duration::from_secs(12);

fn event(kind: EventKind) -> Event {
    Event {
        at_ms: access::events::now_ms(),
        decided: None,
        ..Event::new("front", "model", kind)
    }
}

/// The child: takes the write lock as an enrolment would, says so, holds it, lets go.
#[test]
fn lock_holder() {
    let Ok(path) = std::env::var(CHILD_GALLERY) else {
        return;
    };
    let connection = rusqlite::Connection::open(path).unwrap();
    connection.execute_batch("BEGIN IMMEDIATE").unwrap();
    println!("locked");
    std::thread::sleep(HOLD);
    connection.execute_batch("COMMIT").unwrap();
}

#[test]
fn a_gallery_locked_by_another_process_delays_events_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.db");
    let key = TemplateKey::generate();
    let template = NewTemplate {
        embedding: Embedding::new(2, 2, vec![0.5; 4]).unwrap(),
        frames: 30,
        source: "walk".into(),
    };
    Gallery::open(&path, Some(&key))
        .unwrap()
        .enrol("Ada", "model", &[template])
        .unwrap();
    let mut dispatcher = EventDispatcher::new(100);
    dispatcher.add(Box::new(
        EventStore::open_existing(&path, Some(&key)).unwrap(),
    ));
    let mut direct = EventStore::open_existing(&path, Some(&key)).unwrap();

    let (mut child, output) = hold_lock(&path);
    let refused = direct.deliver(&event(EventKind::Started)).unwrap_err();
    assert!(
        refused.detail.contains("locked by another process"),
        "{refused}"
    );
    dispatcher.publish(&event(EventKind::Granted));
    assert_eq!(dispatcher.pending(), [("gallery database".to_string(), 1)]);
    let reader = Gallery::open_existing(&path, Some(&key)).unwrap();
    let reader_events = EventStore::of(&reader).unwrap();
    assert_eq!(
        reader.people().unwrap().len(),
        1,
        "reads go on under the lock"
    );

    assert!(child.wait().unwrap().success());
    drop(output);
    dispatcher.publish(&event(EventKind::Stopped));
    assert_eq!(dispatcher.pending(), [("gallery database".to_string(), 0)]);
    let stored: Vec<String> = [EventKind::Granted, EventKind::Stopped]
        .iter()
        .flat_map(|kind| reader_events.event_bodies(kind.label()).unwrap())
        .collect();
    assert_eq!(stored.len(), 2, "both events stored once the lock is gone");
    assert_eq!(reader_events.event_count().unwrap(), 2, "and nothing else");
}

/// A child process that holds the write lock of `path`, once it holds it, with its output (kept open
/// until the child is done, so that it can still write).
fn hold_lock(path: &Path) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_holder", "--nocapture"])
        .env(CHILD_GALLERY, path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while output.read_line(&mut line).unwrap() > 0 && !line.starts_with("locked") {
        line.clear();
    }
    assert!(line.starts_with("locked"), "the child never took the lock");
    (child, output)
}
