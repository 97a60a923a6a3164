//! A running kiosk's health: what it logs every [`STATUS_EVERY`] and what an observer sees.

use super::*;

/// How often a running kiosk logs its throughput, drops and latency.
pub const STATUS_EVERY: Duration = Duration::from_secs(60);

/// What sees a running kiosk's health (see [`Outputs::on_status`]).
pub type StatusObserver = Box<dyn FnMut(&KioskStatus) + Send>;

/// A running kiosk's health, taken every [`STATUS_EVERY`]: what it logs, and what
/// [`Outputs::on_status`] sees.
#[derive(Debug, Clone, PartialEq)]
pub struct KioskStatus {
    /// Since the loop started.
    pub uptime: Duration,
    /// Frames read so far.
    pub frames: u64,
    /// Frames per second as the capture thread last measured them.
    pub frames_per_second: f32,
    /// Windows that went through the network so far.
    pub windows_embedded: u64,
    /// Windows dropped whole because the network was behind, so far.
    pub windows_dropped: u64,
    /// Windows waiting for the network now.
    pub windows_in_flight: usize,
    /// Decisions made so far.
    pub decisions: u64,
    /// The median latency of the last (at most) 100 decisions.
    pub recent_median_latency: Duration,
    /// Events each sink has not taken yet, by sink.
    pub pending_events: Vec<(String, usize)>,
    /// Events each sink took but has not passed on yet (the MQTT queue, the site outbox), by sink.
    pub sink_backlogs: Vec<(String, usize)>,
    /// Events dropped from full sink queues so far.
    pub events_dropped: u64,
    /// The process's resident memory now, in KiB, where the system says.
    pub resident_kib: Option<u64>,
    /// The site's people allowed here whose templates this door cannot open (see
    /// [`EventKind::TemplateQuarantined`]).
    pub quarantined_people: usize,
}

/// What a run of the loop did.
#[derive(Debug, Clone, Default)]
pub struct KioskStats {
    /// Frames read.
    pub frames: u64,
    /// Windows that went through the network.
    pub windows_embedded: u64,
    /// Windows dropped because the network was behind (a live camera only).
    pub windows_dropped: u64,
    /// Decisions made.
    pub decisions: u64,
    /// From the last frame of each deciding window to its event: the last [`LATENCIES_KEPT`]
    /// decisions' (a kiosk runs for months).
    pub recent_latencies: VecDeque<Duration>,
    /// The longest latency of the whole run.
    pub slowest: Duration,
    /// How long the run took.
    pub elapsed: Duration,
    /// Times the source failed.
    pub source_errors: u64,
    /// Tailgate alarms raised.
    pub tailgate_alarms: u64,
}

impl KioskStats {
    /// Frames read per second of the run.
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The median latency of the recent decisions (zero before the first decision).
    pub fn median_latency(&self) -> Duration {
        let recent: Vec<Duration> = self.recent_latencies.iter().copied().collect();
        median_latency(&recent)
    }

    pub(super) fn record_latency(&mut self, latency: Duration) {
        if self.recent_latencies.len() == LATENCIES_KEPT {
            self.recent_latencies.pop_front();
        }
        self.recent_latencies.push_back(latency);
        self.slowest = self.slowest.max(latency);
    }
}

/// Decisions whose latencies [`KioskStats`] keeps for its median.
pub const LATENCIES_KEPT: usize = 1000;

/// The median of decision latencies, the figure the kiosk and the demo report (zero for none).
pub fn median_latency(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_keeps_a_bounded_number_of_latencies_and_the_slowest() {
        let mut stats = KioskStats::default();
        stats.record_latency(Duration::from_secs(9));
        for ms in 0..(3 * LATENCIES_KEPT as u64) {
            stats.record_latency(Duration::from_millis(ms % 200));
        }
        assert_eq!(stats.recent_latencies.len(), LATENCIES_KEPT);
        assert_eq!(stats.slowest, Duration::from_secs(9));
        let median = stats.median_latency();
        assert!(
            (Duration::from_millis(90)..=Duration::from_millis(110)).contains(&median),
            "{median:?}"
        );
    }
}
