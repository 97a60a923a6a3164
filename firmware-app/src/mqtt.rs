//! Events over MQTT for the site's access-control or building-management system.
//!
//! Topics, under `topic_prefix` (default `kiosk/<door>`):
//! - `<prefix>/events/<kind>`: one JSON event per message (the audit log's fields), QoS 1, where kind
//!   is `granted`, `denied`, `tailgating`, `camera_lost`, ...; subscribe to `<prefix>/events/#`;
//!   `<prefix>/events/audit_head` is retained, so that the broker always holds the audit chain's
//!   newest published head for `kiosk verify-log` to check the log against;
//! - `<prefix>/status`: `online`, retained; the broker publishes `offline` when the kiosk vanishes.
//!
//! Every event is first appended to an on-disk queue (fsync'd) and leaves it only when the broker has
//! acknowledged it, so events survive a broker outage and a kiosk restart. Delivery is at least once:
//! after a crash, up to [`COMPACT_EVERY`] acknowledged events can be sent again; consumers can tell
//! them apart by `(door, at_ms, kind, track)`.
//!
//! The connection is TLS (rustls, the broker's certificate verified against the site's authority in
//! `ca_file`; a client certificate with `cert_file` and `key_file`, or a user name and a password
//! from `password_file`), unless `plaintext` is set for a broker on the same host.
//!
//! The client needs the `mqtt` feature (rumqttc). The queue and the configuration are always built.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use site::tls::TlsSettings;

use access::events::Event;
use access::line_file::append_whole_line;

/// Acknowledged events are removed from the queue file in batches of this many.
pub const COMPACT_EVERY: usize = 256;

/// Why the MQTT sink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The queue file cannot be read or written.
    #[error("event queue {path}: {source}")]
    Queue {
        /// The queue file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TLS settings or the password file.
    #[error("mqtt: {0}")]
    Tls(#[from] site::tls::TlsError),
    /// MQTT not built in.
    #[error("this build has no MQTT support: rebuild with `--features mqtt`")]
    NoMqttSupport,
    /// The client's thread.
    #[error("mqtt: {0}")]
    Thread(#[from] crate::threads::SpawnError),
    /// The broker could not be reached or refused the client.
    #[error("mqtt broker {broker}: {detail}")]
    Broker {
        /// Host and port.
        broker: String,
        /// What the client said.
        detail: String,
    },
}

/// `[mqtt]` in kiosk.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker's host name or address.
    pub host: String,
    /// Its port (1883).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Defaults to `kiosk-<door>`; it must be unique on the broker.
    pub client_id: Option<String>,
    /// Defaults to `kiosk/<door>`.
    pub topic_prefix: Option<String>,
    /// User name, when the broker asks for one.
    pub username: Option<String>,
    /// A file holding its password alone, only readable by its owner.
    pub password_file: Option<PathBuf>,
    /// TLS to the broker, verified against the site's authority (the host is `host`).
    #[serde(flatten)]
    pub tls: TlsSettings,
    /// Where events wait for the broker.
    pub queue_path: PathBuf,
    /// Beyond this many waiting events the oldest are dropped (and logged).
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
}

fn default_port() -> u16 {
    1883
}

fn default_max_queued() -> usize {
    100_000
}

impl MqttConfig {
    /// Refuses settings that cannot work or would be unsafe.
    pub fn check_transport(&self) -> Result<(), String> {
        self.tls
            .check(&format!("the broker {}", self.host), &self.host)?;
        if self.password_file.is_some() && self.username.is_none() {
            return Err("a password_file needs a username".into());
        }
        Ok(())
    }

    /// The files the settings name, for a caller that resolves relative paths.
    pub fn files_mut(&mut self) -> [Option<&mut PathBuf>; 5] {
        let [ca_file, cert_file, key_file] = self.tls.files_mut();
        [
            Some(&mut self.queue_path),
            self.password_file.as_mut(),
            ca_file,
            cert_file,
            key_file,
        ]
    }

    /// The topic prefix for `door`.
    pub fn prefix(&self, door: &str) -> String {
        self.topic_prefix
            .clone()
            .unwrap_or_else(|| format!("kiosk/{door}"))
    }
}

/// Events (as JSON lines) waiting for the broker, in order, mirrored in a file.
pub struct DiskQueue {
    path: PathBuf,
    file: File,
    /// The file's length: whole lines only.
    length: u64,
    entries: VecDeque<String>,
    acknowledged_since_compaction: usize,
    max_entries: usize,
    dropped: u64,
}

impl DiskQueue {
    /// Opens or creates the queue; lines that are not events (a write cut by a power loss) are
    /// skipped and logged.
    pub fn open(path: &Path, max_entries: usize) -> Result<Self, MqttError> {
        let error = |source| MqttError::Queue {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        hstl::files::check_regular(path, u64::MAX).map_err(error)?;
        let mut entries = VecDeque::new();
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(error)?);
            for (number, line) in reader.lines().enumerate() {
                let line = line.map_err(error)?;
                if serde_json::from_str::<Event>(&line).is_ok() {
                    entries.push_back(line);
                } else if !line.is_empty() {
                    log::warn!(
                        "{}: line {} is not an event; skipped",
                        path.display(),
                        number + 1
                    );
                }
            }
        }
        while entries.len() > max_entries.max(1) {
            entries.pop_front();
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(error)?;
        let mut queue = DiskQueue {
            path: path.to_owned(),
            file,
            length: 0,
            entries,
            acknowledged_since_compaction: 0,
            max_entries: max_entries.max(1),
            dropped: 0,
        };
        queue.rewrite()?;
        Ok(queue)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The oldest waiting event, as its JSON line.
    pub fn front(&self) -> Option<&str> {
        self.entries.front().map(String::as_str)
    }

    /// Oldest events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends and syncs; on error nothing is queued.
    pub fn push(&mut self, event: &Event) -> Result<(), MqttError> {
        let line = serde_json::to_string(event).expect("events serialise");
        let error = |source| MqttError::Queue {
            path: self.path.clone(),
            source,
        };
        append_whole_line(
            &mut self.file,
            &mut self.length,
            format!("{line}\n").as_bytes(),
        )
        .map_err(error)?;
        self.entries.push_back(line);
        if self.entries.len() > self.max_entries {
            self.entries.pop_front();
            self.dropped += 1;
            log::error!(
                "{}: more than {} events waiting; the oldest was dropped",
                self.path.display(),
                self.max_entries
            );
            self.acknowledged_since_compaction += 1;
        }
        Ok(())
    }

    /// Removes the oldest event once the broker has it.
    pub fn acknowledge_front(&mut self) -> Result<(), MqttError> {
        if self.entries.pop_front().is_some() {
            self.acknowledged_since_compaction += 1;
        }
        if self.entries.is_empty() || self.acknowledged_since_compaction >= COMPACT_EVERY {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Replaces the file with what is still waiting (a temporary file renamed over it).
    fn rewrite(&mut self) -> Result<(), MqttError> {
        let error = |source| MqttError::Queue {
            path: self.path.clone(),
            source,
        };
        let partial = self.path.with_extension("partial");
        let mut text = String::new();
        for line in &self.entries {
            text.push_str(line);
            text.push('\n');
        }
        let mut file = File::create(&partial).map_err(error)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(error)?;
        std::fs::rename(&partial, &self.path).map_err(error)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(error)?;
        self.length = text.len() as u64;
        self.acknowledged_since_compaction = 0;
        Ok(())
    }
}

#[cfg(feature = "mqtt")]
pub use client::{retained_audit_head, MqttSink};

#[cfg(feature = "mqtt")]
mod client {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use rumqttc::{
        Client, Connection, Event as Notification, LastWill, MqttOptions, Packet, QoS,
        TlsConfiguration, Transport,
    };

    use super::{DiskQueue, MqttConfig, MqttError};
    use access::events::{Event, EventKind, EventSink, SinkError};
    use access::vocabulary::ChainHead;

    const POLL: Duration = Duration::from_millis(100);
    const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
    /// How long a retained message may take to follow its subscription's acknowledgement.
    const RETAINED_PATIENCE: Duration = Duration::from_millis(500);

    /// The MQTT event sink: queues on disk, publishes from a thread of its own.
    pub struct MqttSink {
        queue: Arc<Mutex<DiskQueue>>,
        connected: Arc<AtomicBool>,
        last_error: Arc<Mutex<Option<String>>>,
        stop: Arc<AtomicBool>,
        worker: Option<JoinHandle<()>>,
    }

    impl MqttSink {
        /// Opens the queue file and starts the publishing thread; the broker may be down.
        pub fn start(config: &MqttConfig, door: &str) -> Result<Self, MqttError> {
            let queue = Arc::new(Mutex::new(DiskQueue::open(
                &config.queue_path,
                config.max_queued,
            )?));
            let prefix = config.prefix(door);
            let client_id = config
                .client_id
                .clone()
                .unwrap_or_else(|| format!("kiosk-{door}"));
            let mut options = options(config, client_id)?;
            options.set_last_will(LastWill::new(
                format!("{prefix}/status"),
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
            let (client, connection) = Client::new(options, 16);
            let connected = Arc::new(AtomicBool::new(false));
            let last_error = Arc::new(Mutex::new(None));
            let stop = Arc::new(AtomicBool::new(false));
            let worker = {
                let link = Link {
                    queue: queue.clone(),
                    connected: connected.clone(),
                    last_error: last_error.clone(),
                    stop: stop.clone(),
                };
                crate::threads::spawn("mqtt", move || {
                    publish_loop(client, connection, &prefix, &link)
                })?
            };
            Ok(MqttSink {
                queue,
                connected,
                last_error,
                stop,
                worker: Some(worker),
            })
        }

        /// Whether the broker is connected now.
        pub fn is_connected(&self) -> bool {
            self.connected.load(Ordering::SeqCst)
        }

        /// Why the last attempt to reach the broker failed, if it did (a refused certificate, a
        /// broker gone).
        pub fn last_error(&self) -> Option<String> {
            self.last_error.lock().ok().and_then(|e| e.clone())
        }

        /// Events not yet acknowledged by the broker.
        pub fn waiting(&self) -> usize {
            self.queue.lock().map_or(0, |q| q.len())
        }
    }

    impl EventSink for MqttSink {
        fn name(&self) -> &str {
            "mqtt"
        }

        fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
            let mut queue = self.queue.lock().map_err(|_| SinkError {
                sink: "mqtt".into(),
                detail: "the publishing thread panicked".into(),
            })?;
            queue.push(event).map_err(|e| SinkError {
                sink: "mqtt".into(),
                detail: e.to_string(),
            })
        }

        fn backlog(&self) -> usize {
            self.waiting()
        }
    }

    impl Drop for MqttSink {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(worker) = self.worker.take() {
                let _ = worker.join();
            }
        }
    }

    /// What the publishing thread shares with the sink.
    struct Link {
        queue: Arc<Mutex<DiskQueue>>,
        connected: Arc<AtomicBool>,
        last_error: Arc<Mutex<Option<String>>>,
        stop: Arc<AtomicBool>,
    }

    fn publish_loop(client: Client, mut connection: Connection, prefix: &str, link: &Link) {
        let (queue, connected, stop) = (&*link.queue, &*link.connected, &*link.stop);
        // One event in flight at a time: the next acknowledgement is its own.
        let mut in_flight = false;
        while !stop.load(Ordering::SeqCst) {
            match connection.recv_timeout(POLL) {
                Ok(Ok(Notification::Incoming(Packet::ConnAck(_)))) => {
                    log::info!("mqtt: connected");
                    if let Ok(mut last) = link.last_error.lock() {
                        *last = None;
                    }
                    connected.store(true, Ordering::SeqCst);
                    in_flight = false;
                    // QoS 0, so that its (absent) acknowledgement is never taken for an event's.
                    let _ = client.try_publish(
                        format!("{prefix}/status"),
                        QoS::AtMostOnce,
                        true,
                        "online",
                    );
                }
                Ok(Ok(Notification::Incoming(Packet::PubAck(_)))) if in_flight => {
                    in_flight = false;
                    if let Ok(mut queue) = queue.lock() {
                        if let Err(e) = queue.acknowledge_front() {
                            log::error!("mqtt: {e}");
                        }
                    }
                }
                Ok(Ok(_)) | Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Ok(Err(e)) => {
                    let detail = site::with_causes(&e);
                    if connected.swap(false, Ordering::SeqCst) {
                        log::warn!("mqtt: broker lost ({detail}); events wait on disk");
                    }
                    if let Ok(mut last) = link.last_error.lock() {
                        if last.as_deref() != Some(detail.as_str()) {
                            log::error!(
                                "mqtt: cannot reach the broker: {detail}; events wait on disk"
                            );
                        }
                        *last = Some(detail);
                    }
                    in_flight = false;
                    pause(stop);
                }
                Err(rumqttc::RecvTimeoutError::Disconnected) => return,
            }
            if connected.load(Ordering::SeqCst) && !in_flight {
                let next = queue.lock().ok().and_then(|q| q.front().map(str::to_owned));
                if let Some(line) = next {
                    let kind =
                        serde_json::from_str::<Event>(&line).map_or("event", |e| e.kind.label());
                    let topic = format!("{prefix}/events/{kind}");
                    let retain = kind == EventKind::AUDIT_HEAD_LABEL;
                    in_flight = client
                        .try_publish(topic, QoS::AtLeastOnce, retain, line)
                        .is_ok();
                }
            }
        }
        let _ = client.try_publish(format!("{prefix}/status"), QoS::AtMostOnce, true, "offline");
        let _ = client.try_disconnect();
        for _ in 0..5 {
            if !matches!(connection.recv_timeout(POLL), Ok(Ok(_))) {
                break;
            }
        }
    }

    /// The connection as `config` describes it (credentials, TLS), for `client_id`.
    fn options(config: &MqttConfig, client_id: String) -> Result<MqttOptions, MqttError> {
        let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
        options
            .set_keep_alive(Duration::from_secs(15))
            .set_clean_session(true);
        if let (Some(user), Some(file)) = (&config.username, &config.password_file) {
            let password =
                access::secret_file::read_private_file(file).map_err(site::tls::TlsError::from)?;
            options.set_credentials(user.clone(), password.trim_end_matches(['\r', '\n']));
        }
        if let Some(tls) = config.tls.client_config()? {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        Ok(options)
    }

    /// The audit chain head the broker retains for `door` (the newest the kiosk published), waiting
    /// at most `patience` for the broker; `None` when it holds none.
    pub fn retained_audit_head(
        config: &MqttConfig,
        door: &str,
        patience: Duration,
    ) -> Result<Option<ChainHead>, MqttError> {
        let broker = format!("{}:{}", config.host, config.port);
        let refused = |detail: String| MqttError::Broker {
            broker: broker.clone(),
            detail,
        };
        let client_id = format!("kiosk-{door}-verify-{}", std::process::id());
        let (client, mut connection) = Client::new(options(config, client_id)?, 4);
        let topic = format!(
            "{}/events/{}",
            config.prefix(door),
            EventKind::AUDIT_HEAD_LABEL
        );
        let mut deadline = std::time::Instant::now() + patience;
        let mut subscribed = false;
        let head = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break if subscribed {
                    Ok(None)
                } else {
                    Err(refused(format!("no answer within {patience:?}")))
                };
            }
            match connection.recv_timeout(left) {
                Ok(Ok(Notification::Incoming(Packet::ConnAck(_)))) => {
                    client
                        .try_subscribe(topic.clone(), QoS::AtLeastOnce)
                        .map_err(|e| refused(e.to_string()))?;
                }
                // A retained message follows the subscription's acknowledgement at once: a short
                // wait after it tells "none retained" from "not yet".
                Ok(Ok(Notification::Incoming(Packet::SubAck(_)))) => {
                    subscribed = true;
                    deadline = deadline.min(std::time::Instant::now() + RETAINED_PATIENCE);
                }
                Ok(Ok(Notification::Incoming(Packet::Publish(message))))
                    if message.topic == topic =>
                {
                    break Ok(head_of(&message.payload));
                }
                Ok(Ok(_)) | Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Ok(Err(error)) => break Err(refused(error.to_string())),
                Err(rumqttc::RecvTimeoutError::Disconnected) => {
                    break Err(refused("disconnected".into()))
                }
            }
        };
        let _ = client.try_disconnect();
        head
    }

    /// The head an `audit_head` event carries; `None` for anything else.
    fn head_of(payload: &[u8]) -> Option<ChainHead> {
        match serde_json::from_slice::<Event>(payload).ok()?.kind {
            EventKind::AuditHead { seq, mac } => Some(ChainHead { seq, mac }),
            _ => None,
        }
    }

    fn pause(stop: &AtomicBool) {
        let steps = RECONNECT_PAUSE.as_millis() / POLL.as_millis();
        for _ in 0..steps {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The sink the configuration names.
pub fn open_sink(
    config: &MqttConfig,
    door: &str,
) -> Result<Box<dyn access::events::EventSink>, MqttError> {
    #[cfg(feature = "mqtt")]
    {
        Ok(Box::new(MqttSink::start(config, door)?))
    }
    #[cfg(not(feature = "mqtt"))]
    {
        let _ = (config, door);
        Err(MqttError::NoMqttSupport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use access::events::EventKind;

    /// A grant as the queue stores it: the monotonic `decided` is never written.
    fn event(at_ms: i64) -> Event {
        let granted = Event::new("front", "m", EventKind::Granted);
        Event {
            at_ms,
            person: Some("p".into()),
            decided: None,
            ..granted
        }
    }

    #[test]
    fn a_queue_file_that_is_a_device_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let error = DiskQueue::open(&path, 10).err().unwrap().to_string();
        assert!(error.contains("a character device"), "{error}");
    }

    #[test]
    fn the_queue_survives_reopening_and_forgets_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool/mqtt.jsonl");
        let mut queue = DiskQueue::open(&path, 10).unwrap();
        for at in 1..=3 {
            queue.push(&event(at)).unwrap();
        }
        queue.acknowledge_front().unwrap();
        drop(queue);
        // The acknowledgement was not compacted yet: after a crash it is sent again (at least once).
        let mut queue = DiskQueue::open(&path, 10).unwrap();
        assert_eq!(queue.len(), 3);
        for _ in 0..3 {
            queue.acknowledge_front().unwrap();
        }
        assert!(queue.is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        queue.push(&event(4)).unwrap();
        drop(queue);
        let queue = DiskQueue::open(&path, 10).unwrap();
        assert_eq!(queue.len(), 1);
        assert!(queue.front().unwrap().contains("\"at_ms\":4"));
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_full_queue_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt.jsonl");
        let good = serde_json::to_string(&event(1)).unwrap();
        std::fs::write(&path, format!("{good}\n{}", &good[..good.len() / 2])).unwrap();
        let mut queue = DiskQueue::open(&path, 2).unwrap();
        assert_eq!(queue.len(), 1);
        queue.push(&event(2)).unwrap();
        queue.push(&event(3)).unwrap();
        assert_eq!((queue.len(), queue.dropped()), (2, 1));
        assert!(queue.front().unwrap().contains("\"at_ms\":2"));
    }

    #[test]
    fn topics_default_to_the_door() {
        let config: MqttConfig =
            toml::from_str("host = \"broker\"\nqueue_path = \"q.jsonl\"").unwrap();
        assert_eq!(
            (config.port, config.prefix("front").as_str()),
            (1883, "kiosk/front")
        );
    }
}
