//! Per-path health from real events: RTT (RFC 6298 smoothing), loss and throughput estimators,
//! and the alive / stalled / dead state the scheduler stripes by.

use std::time::{Duration, Instant};

/// Tuning of the path estimators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    /// Shortest silence (with data outstanding) after which a path counts as stalled; the
    /// effective timeout is `max(min_stall, srtt + 4 × rttvar)`.
    pub min_stall: Duration,
    /// A path whose loss estimate exceeds this is stalled until its loss estimate falls again.
    pub max_loss: f64,
    /// Interval over which one throughput sample is measured.
    pub throughput_interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            min_stall: Duration::from_secs(2),
            max_loss: 0.5,
            throughput_interval: Duration::from_secs(1),
        }
    }
}

/// Whether a path takes part in striping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Carries symbols.
    Active,
    /// Silent past its stall timeout or too lossy: left out of the stripe set until it is heard
    /// from again (the caller keeps probing it, e.g. with keepalives).
    Stalled,
    /// The transport is closed: left out until reopened.
    Dead,
}

/// Estimators of one path. All times come from the caller.
#[derive(Debug, Clone)]
pub struct PathHealth {
    config: HealthConfig,
    srtt: Option<Duration>,
    rttvar: Duration,
    loss: f64,
    throughput: Option<f64>,
    last_heard: Instant,
    outstanding: u64,
    closed: bool,
    window_start: Instant,
    window_bytes: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

impl PathHealth {
    /// A new, active path first heard from at `now`.
    #[must_use]
    pub fn new(now: Instant, config: HealthConfig) -> Self {
        Self {
            config,
            srtt: None,
            rttvar: Duration::ZERO,
            loss: 0.0,
            throughput: None,
            last_heard: now,
            outstanding: 0,
            closed: false,
            window_start: now,
            window_bytes: 0,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// `bytes` (one or more symbols) were written to the path.
    pub fn on_sent(&mut self, now: Instant, bytes: u64) {
        if self.outstanding == 0 {
            // Silence only counts from the moment something awaits an answer.
            self.last_heard = self.last_heard.max(now);
        }
        self.outstanding = self.outstanding.saturating_add(bytes);
        self.bytes_sent = self.bytes_sent.saturating_add(bytes);
    }

    /// The peer acknowledged `bytes` sent on this path; `rtt` is the measured round trip when
    /// the acknowledgement names a send time.
    pub fn on_acked(&mut self, now: Instant, bytes: u64, rtt: Option<Duration>) {
        self.outstanding = self.outstanding.saturating_sub(bytes);
        if let Some(sample) = rtt {
            self.rtt_sample(sample);
        }
        self.loss_sample(0.0);
        self.heard(now, bytes);
    }

    /// `symbols` sent on this path were declared lost (never acknowledged in time).
    pub fn on_lost(&mut self, symbols: u32, bytes: u64) {
        self.outstanding = self.outstanding.saturating_sub(bytes);
        for _ in 0..symbols.min(64) {
            self.loss_sample(1.0);
        }
    }

    /// `bytes` arrived on this path (any traffic proves it is alive).
    pub fn on_received(&mut self, now: Instant, bytes: u64) {
        self.bytes_received = self.bytes_received.saturating_add(bytes);
        self.heard(now, bytes);
    }

    /// The transport closed.
    pub fn on_closed(&mut self) {
        self.closed = true;
    }

    /// The transport was re-established at `now` (a new `/connect` attached under the same id).
    pub fn on_reopened(&mut self, now: Instant) {
        self.closed = false;
        self.outstanding = 0;
        self.last_heard = now;
    }

    /// The state at `now`.
    #[must_use]
    pub fn state(&self, now: Instant) -> PathState {
        if self.closed {
            PathState::Dead
        } else if self.loss > self.config.max_loss
            || (self.outstanding > 0
                && now.saturating_duration_since(self.last_heard) > self.stall_timeout())
        {
            PathState::Stalled
        } else {
            PathState::Active
        }
    }

    /// Silence (with data outstanding) after which the path is stalled.
    #[must_use]
    pub fn stall_timeout(&self) -> Duration {
        let rto = self.srtt.map_or(Duration::ZERO, |s| s + 4 * self.rttvar);
        rto.max(self.config.min_stall)
    }

    /// Smoothed round-trip time, once sampled.
    #[must_use]
    pub const fn rtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Loss estimate in `[0, 1]` (EWMA over symbols, weight 1/8).
    #[must_use]
    pub const fn loss(&self) -> f64 {
        self.loss
    }

    /// Throughput estimate in bytes per second (EWMA over intervals, weight 1/4), once one full
    /// interval was measured.
    #[must_use]
    pub const fn throughput(&self) -> Option<f64> {
        self.throughput
    }

    /// Bytes written to the path.
    #[must_use]
    pub const fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Bytes received on the path.
    #[must_use]
    pub const fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    fn heard(&mut self, now: Instant, bytes: u64) {
        self.last_heard = self.last_heard.max(now);
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= self.config.throughput_interval && !elapsed.is_zero() {
            let sample = self.window_bytes as f64 / elapsed.as_secs_f64();
            self.throughput = Some(match self.throughput {
                Some(t) => t * 0.75 + sample * 0.25,
                None => sample,
            });
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    fn rtt_sample(&mut self, sample: Duration) {
        // RFC 6298 §2: alpha = 1/8, beta = 1/4.
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    fn loss_sample(&mut self, lost: f64) {
        self.loss = self.loss * 0.875 + lost * 0.125;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_follows_rfc_6298() {
        let t0 = Instant::now();
        let mut p = PathHealth::new(t0, HealthConfig::default());
        assert_eq!(p.rtt(), None);
        p.on_acked(t0, 0, Some(Duration::from_millis(100)));
        assert_eq!(p.rtt(), Some(Duration::from_millis(100)));
        p.on_acked(t0, 0, Some(Duration::from_millis(200)));
        assert_eq!(p.rtt(), Some(Duration::from_micros(112_500)));
        // rttvar = (50 × 3 + 100) / 4 = 62.5 ms; srtt + 4 × rttvar = 362.5 ms < min_stall.
        assert_eq!(p.stall_timeout(), Duration::from_secs(2));
    }

    #[test]
    fn silence_with_data_outstanding_stalls_and_traffic_revives() {
        let t0 = Instant::now();
        let mut p = PathHealth::new(t0, HealthConfig::default());
        // Silence without outstanding data is not a stall.
        assert_eq!(p.state(t0 + Duration::from_secs(60)), PathState::Active);
        let t1 = t0 + Duration::from_secs(60);
        p.on_sent(t1, 1200);
        assert_eq!(p.state(t1 + Duration::from_secs(2)), PathState::Active);
        assert_eq!(
            p.state(t1 + Duration::from_millis(2001)),
            PathState::Stalled
        );
        p.on_received(t1 + Duration::from_secs(3), 40);
        assert_eq!(p.state(t1 + Duration::from_secs(3)), PathState::Active);
    }

    #[test]
    fn heavy_loss_stalls_until_acks_bring_the_estimate_down() {
        let t0 = Instant::now();
        let mut p = PathHealth::new(t0, HealthConfig::default());
        p.on_lost(10, 0);
        assert!(p.loss() > 0.5);
        assert_eq!(p.state(t0), PathState::Stalled);
        for _ in 0..10 {
            p.on_acked(t0, 0, None);
        }
        assert!(p.loss() < 0.5);
        assert_eq!(p.state(t0), PathState::Active);
    }

    #[test]
    fn closed_is_dead_until_reopened() {
        let t0 = Instant::now();
        let mut p = PathHealth::new(t0, HealthConfig::default());
        p.on_closed();
        assert_eq!(p.state(t0), PathState::Dead);
        p.on_reopened(t0);
        assert_eq!(p.state(t0), PathState::Active);
    }

    #[test]
    fn throughput_is_measured_per_interval() {
        let t0 = Instant::now();
        let mut p = PathHealth::new(t0, HealthConfig::default());
        p.on_received(t0 + Duration::from_millis(500), 1000);
        assert_eq!(p.throughput(), None);
        p.on_received(t0 + Duration::from_secs(1), 1000);
        assert_eq!(p.throughput(), Some(2000.0));
        p.on_received(t0 + Duration::from_secs(2), 6000);
        assert_eq!(p.throughput(), Some(3000.0));
        assert_eq!(p.bytes_received(), 8000);
    }
}
