//! The door's engine: each window's new frames streamed into its track's walk, the walk so far
//! searched and voted on; a track's end decided.

use super::*;

/// Streams each track's walk through the network, matches the walk so far against the gallery after
/// every window and applies the policy.
pub struct DoorEngine {
    /// The door's name.
    pub door: String,
    /// SHA-256 of the model.
    pub model_id: String,
    embedder: StreamingEmbedder,
    /// The walk so far of each undecided track in view.
    walks: HashMap<TrackId, WalkSoFar>,
    index: MatchIndex,
    policy: DecisionPolicy,
    pub(super) window_frames: usize,
    /// The gallery the index was built from, watched for changes made by other processes.
    watched: Option<Gallery>,
    /// The last reload failed: nobody is matched until one succeeds.
    reload_pending: bool,
}

/// A decision with its event and how long it took.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    /// What was decided.
    pub decision: Decision,
    /// The event published for it.
    pub event: Event,
    /// The gallery name, for the screen only (events carry the pseudonym).
    pub name: Option<String>,
    /// From the capture of the window's last frame (or the track's end) to the event.
    pub latency: Duration,
    /// Already given to the sinks (a grant, recorded by the audit log before the others acted).
    pub published: bool,
}

impl DoorEngine {
    /// An engine deciding with `policy` on searches of `index`, walks streamed by `embedder`.
    pub fn new(
        door: String,
        model_id: String,
        embedder: StreamingEmbedder,
        index: MatchIndex,
        policy: DecisionPolicy,
    ) -> Self {
        DoorEngine {
            door,
            model_id,
            embedder,
            walks: HashMap::new(),
            index,
            policy,
            window_frames: silhouette::windows::WindowConfig::default().frames,
            watched: None,
            reload_pending: false,
        }
    }

    /// Rebuilds the index whenever another process commits to `gallery` (an enrolment, an erasure):
    /// checked before every search and every track's end, so an erased person is never matched again.
    pub fn watch_gallery(&mut self, gallery: Gallery) {
        self.watched = Some(gallery);
    }

    fn follow_gallery(&mut self) -> Result<(), KioskError> {
        let Some(gallery) = self.watched.as_mut() else {
            return Ok(());
        };
        if !gallery
            .roster_changed_elsewhere()
            .map_err(MatchError::from)?
            && !self.reload_pending
        {
            return Ok(());
        }
        self.policy.forget_identities();
        let shape = self.index.shape();
        let threads = self.index.threads();
        let reloaded = gallery
            .check_model(&self.model_id)
            .map_err(MatchError::from)
            .and_then(|()| MatchIndex::from_gallery(gallery, shape, threads));
        match reloaded {
            Ok(index) => {
                log::info!(
                    "gallery {} changed: now {} people, {} templates",
                    gallery.path().display(),
                    index.identities().len(),
                    index.template_count()
                );
                self.index = index;
                self.reload_pending = false;
                Ok(())
            }
            Err(e) => {
                // Fail secure: the old index may hold someone just erased.
                self.index = MatchIndex::new(shape.0, shape.1, threads);
                self.reload_pending = true;
                Err(e.into())
            }
        }
    }

    /// The templates it searches.
    pub fn index(&self) -> &MatchIndex {
        &self.index
    }

    /// The policy it decides with.
    pub fn policy(&self) -> &DecisionPolicy {
        &self.policy
    }

    /// The network the walks stream through.
    pub fn embedder(&self) -> &StreamingEmbedder {
        &self.embedder
    }

    /// One window of a track: its frames not yet seen streamed into the track's walk, the walk so far
    /// searched and voted on; a decision when the track's votes settle. A window refused by the
    /// silhouette stage is voted on as refused and gives the walk none of its frames.
    pub fn on_window(
        &mut self,
        window: &Window,
        people_in_view: usize,
        completed_at: Instant,
    ) -> Result<Option<DecisionRecord>, KioskError> {
        self.follow_gallery()?;
        if !self.policy.wants(window, self.window_frames) {
            return Ok(None);
        }
        let outcome = match window.quality {
            WindowQuality::Good => {
                let embedder = &self.embedder;
                let walk = self
                    .walks
                    .entry(window.track)
                    .or_insert_with(|| WalkSoFar::new(embedder));
                let embedding = walk.take(window)?;
                WindowOutcome::Matched {
                    ranking: self.index.search(&embedding)?,
                    frames: walk.frames(),
                }
            }
            WindowQuality::TooFewValidFrames { .. } => WindowOutcome::PoorQuality,
            WindowQuality::NotAWalker(_) => WindowOutcome::NotAWalker,
        };
        let decision = self.policy.observe(window.track, &outcome, people_in_view);
        if decision.is_some() {
            self.walks.remove(&window.track);
        }
        Ok(decision.map(|d| self.record(d, completed_at)))
    }

    /// A track left: an undecided track is decided now (denied, with the reason its votes point to).
    pub fn on_track_ended(&mut self, track: TrackId, ended_at: Instant) -> Option<DecisionRecord> {
        self.walks.remove(&track);
        if let Err(e) = self.follow_gallery() {
            log::error!("{e}; nobody is recognised until the gallery reloads");
        }
        self.policy
            .track_ended(track)
            .map(|d| self.record(d, ended_at))
    }

    fn record(&mut self, decision: Decision, since: Instant) -> DecisionRecord {
        let (kind, identity) = match &decision.verdict {
            Verdict::Granted { identity } => (EventKind::Granted, Some(*identity)),
            Verdict::Denied { reason, identity } => {
                (EventKind::Denied { reason: *reason }, *identity)
            }
        };
        let identity = identity.map(|i| self.index.identity(i).clone());
        let event = Event {
            track: Some(decision.track),
            person: identity.as_ref().map(|i| i.pseudonym.clone()),
            figures: decision.figures.clone(),
            credential: identity
                .as_ref()
                .filter(|_| matches!(decision.verdict, Verdict::Granted { .. }))
                .and_then(|i| i.credential),
            ..self.event(kind)
        };
        DecisionRecord {
            decision,
            event,
            name: identity.map(|i| i.name),
            latency: since.elapsed(),
            published: false,
        }
    }

    /// An event of this door that is not a decision.
    pub fn event(&self, kind: EventKind) -> Event {
        Event::new(&self.door, &self.model_id, kind)
    }
}
