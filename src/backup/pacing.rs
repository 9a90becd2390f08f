//! Pacing by measured contention: the data-file reads slow down only when
//! they measurably wait behind the server's own I/O, in the spirit of a
//! scavenger transport (LEDBAT, RFC 6817) on the disk queue. Pure: the
//! load monitor feeds it samples and applies its decisions.
//!
//! **Signal.** The latency of our own reads, per MiB (every read is
//! `O_DIRECT`, so it is a trip through the device queue the server's page
//! flushes, log writes and reads share). The **base** is the smallest
//! interval median seen in the last [`Config::base_window`] (the device
//! with only us on it); the **queuing delay** is the current interval's
//! median minus the base. Our own read queue is constant (the workers and
//! their one read ahead), so what raises the delay is somebody else's I/O,
//! and what we add to theirs is symmetric.
//!
//! **Control.** Every interval (500 ms, the monitor's):
//! - delay above the target ([`Config::target`], or the base itself when
//!   larger, i.e. reads taking twice their quiet time): the rate cap drops
//!   to [`Config::decrease`] × the rate measured in the interval, never
//!   under the floor;
//! - delay under the target: a cap, if any, grows by
//!   [`Config::increase`] of itself (at least half the floor); once it
//!   exceeds the fastest rate seen uncapped, it is lifted;
//! - fewer than [`Config::min_samples`] reads in the interval: hold.
//!
//! **Forward progress.** The floor ([`Config::floor`]) always; and the redo
//! log must not wrap before the copy ends: under half the log free the cap
//! never decreases, under a quarter it is lifted ("redo headroom").
//! `--max-rate` stays a hard cap on top of all this.

use std::collections::VecDeque;
use std::time::Duration;

/// The controller's constants.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Queuing delay per MiB tolerated above the base (the larger of this
    /// and the base itself).
    pub target: Duration,
    /// Never cap under this, bytes/s.
    pub floor: u64,
    /// Multiplicative decrease on delay.
    pub decrease: f64,
    /// Additive increase, as a fraction of the cap, per quiet interval.
    pub increase: f64,
    /// How long a base sample is remembered, seconds.
    pub base_window: f64,
    /// Reads per interval needed to decide anything.
    pub min_samples: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            target: Duration::from_millis(3),
            floor: 20_000_000,
            decrease: 0.7,
            increase: 0.25,
            base_window: 120.0,
            min_samples: 3,
        }
    }
}

/// One read: its size and how long it took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Bytes read.
    pub bytes: u64,
    /// Time the read took.
    pub latency: Duration,
}

/// Why the cap is what it is.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// No cap: reads do not wait for the server's I/O.
    Quiet,
    /// Reads wait: capped.
    Busy {
        /// Median latency per MiB in the interval, ms.
        current_ms: f64,
        /// Base latency per MiB, ms.
        base_ms: f64,
    },
    /// Quiet again: the cap grows.
    Recovering,
    /// The redo log is filling: no cap, whatever the delay.
    RedoHeadroom {
        /// Free fraction of the log, percent.
        percent: f64,
    },
    /// Too few reads to tell: as before.
    Hold,
}

/// A decision: the cap (bytes/s, `None` for none) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The cap.
    pub rate: Option<u64>,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    /// One line for the progress output.
    #[must_use]
    pub fn describe(&self) -> String {
        let rate = self.rate.map_or("full speed".to_owned(), |r| {
            format!("{} MB/s", r / 1_000_000)
        });
        match &self.reason {
            Reason::Quiet => format!("disk quiet: reads at {rate}"),
            Reason::Busy { current_ms, base_ms } => format!(
                "server busy: our reads wait {current_ms:.1} ms per MiB over a {base_ms:.1} ms baseline; reads paced at {rate}"
            ),
            Reason::Recovering => format!("disk quieter: reads paced at {rate}"),
            Reason::RedoHeadroom { percent } => {
                format!("redo log {percent:.0}% free: reads at {rate} so that the copy ends before it wraps")
            }
            Reason::Hold => format!("reads at {rate}"),
        }
    }
}

/// The controller's state.
#[derive(Debug)]
pub struct Pacer {
    cfg: Config,
    /// (time, interval minimum per-MiB latency in ms).
    bases: VecDeque<(f64, f64)>,
    rate: Option<f64>,
    peak_uncapped: f64,
}

fn per_mib_ms(s: &Sample) -> Option<f64> {
    (s.bytes > 0).then(|| s.latency.as_secs_f64() * 1e3 / (s.bytes as f64 / 1_048_576.0))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Pacer {
    /// A pacer with no cap.
    #[must_use]
    pub fn new(cfg: Config) -> Pacer {
        Pacer {
            cfg,
            bases: VecDeque::new(),
            rate: None,
            peak_uncapped: 0.0,
        }
    }

    /// The cap in force.
    #[must_use]
    pub fn rate(&self) -> Option<u64> {
        self.rate.map(|r| r as u64)
    }

    /// Decide at time `t` (seconds) from the reads of the last interval,
    /// the rate they achieved (bytes/s) and the redo log's free fraction.
    pub fn decide(
        &mut self,
        t: f64,
        samples: &[Sample],
        measured: f64,
        headroom: Option<f64>,
    ) -> Decision {
        let floor = self.cfg.floor as f64;
        if let Some(h) = headroom.filter(|h| *h < 0.25) {
            self.rate = None;
            return self.decision(Reason::RedoHeadroom { percent: h * 100.0 });
        }
        let mut lat: Vec<f64> = samples.iter().filter_map(per_mib_ms).collect();
        if lat.len() < self.cfg.min_samples {
            return self.decision(Reason::Hold);
        }
        let current = median(&mut lat);
        self.bases.push_back((t, current));
        while self
            .bases
            .front()
            .is_some_and(|(t0, _)| t - t0 > self.cfg.base_window)
        {
            self.bases.pop_front();
        }
        let base = self
            .bases
            .iter()
            .map(|(_, b)| *b)
            .fold(f64::INFINITY, f64::min);
        if self.rate.is_none() {
            self.peak_uncapped = self.peak_uncapped.max(measured);
        }
        let target = (self.cfg.target.as_secs_f64() * 1e3).max(base);
        if current - base > target {
            let from = self.rate.map_or(measured, |r| r.min(measured.max(floor)));
            let mut new = (from * self.cfg.decrease).max(floor);
            if headroom.is_some_and(|h| h < 0.5) {
                new = new.max(self.rate.unwrap_or(f64::INFINITY).min(measured.max(floor)));
            }
            self.rate = Some(new);
            return self.decision(Reason::Busy {
                current_ms: current,
                base_ms: base,
            });
        }
        match self.rate {
            None => self.decision(Reason::Quiet),
            Some(r) => {
                let next = r + (r * self.cfg.increase).max(floor / 2.0);
                if next > self.peak_uncapped.max(floor) {
                    self.rate = None;
                    self.decision(Reason::Quiet)
                } else {
                    self.rate = Some(next);
                    self.decision(Reason::Recovering)
                }
            }
        }
    }

    fn decision(&self, reason: Reason) -> Decision {
        Decision {
            rate: self.rate(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1_048_576;

    fn reads(ms: &[f64]) -> Vec<Sample> {
        ms.iter()
            .map(|m| Sample {
                bytes: MIB,
                latency: Duration::from_secs_f64(m / 1e3),
            })
            .collect()
    }

    /// Replay a trace of (read latencies ms, measured MB/s, headroom) at
    /// 0.5 s steps; the caps chosen, MB/s (0 = none).
    fn replay(p: &mut Pacer, trace: &[(&[f64], f64, Option<f64>)]) -> Vec<u64> {
        trace
            .iter()
            .enumerate()
            .map(|(i, (ms, mbs, h))| {
                p.decide(i as f64 * 0.5, &reads(ms), mbs * 1e6, *h)
                    .rate
                    .map_or(0, |r| r / 1_000_000)
            })
            .collect()
    }

    /// A quiet disk (steady ~1 ms per MiB, jitter included) is never capped.
    #[test]
    fn quiet_disk_is_never_capped() {
        let mut p = Pacer::new(Config::default());
        let q: &[f64] = &[1.0, 1.2, 0.9, 1.4, 1.1];
        let trace: Vec<_> = (0..40).map(|_| (q, 700.0, Some(0.9))).collect();
        assert!(replay(&mut p, &trace).iter().all(|r| *r == 0));
    }

    /// The server starts writing (our reads take 8 ms instead of 1): the
    /// cap falls multiplicatively to the floor, not below; when the server
    /// stops it climbs back and is lifted.
    #[test]
    fn backs_off_on_delay_and_recovers() {
        let mut p = Pacer::new(Config::default());
        let quiet: &[f64] = &[1.0, 1.1, 1.0, 0.9];
        let busy: &[f64] = &[8.0, 9.0, 7.5, 8.2];
        let mut trace = vec![(quiet, 700.0, Some(0.9)); 4];
        trace.extend(vec![(busy, 300.0, Some(0.9)); 10]);
        trace.extend(vec![(quiet, 100.0, Some(0.9)); 30]);
        let caps = replay(&mut p, &trace);
        assert_eq!(&caps[..4], &[0, 0, 0, 0]);
        assert_eq!(caps[4], 210, "first back-off: 0.7 x the measured 300 MB/s");
        assert!(caps[5..14].windows(2).all(|w| w[1] <= w[0]), "{caps:?}");
        assert_eq!(caps[13], 20, "the floor holds: {caps:?}");
        assert!(caps[14] > 20, "recovers when quiet: {caps:?}");
        assert_eq!(*caps.last().unwrap_or(&1), 0, "the cap is lifted: {caps:?}");
    }

    /// A delay just under the target is tolerated; the target scales with
    /// a slow device's base (a disk at 10 ms per MiB is not "busy" at 15).
    #[test]
    fn target_scales_with_the_base() {
        let mut p = Pacer::new(Config::default());
        let slow: &[f64] = &[10.0, 10.5, 10.2];
        let slower: &[f64] = &[15.0, 16.0, 15.5];
        let mut trace = vec![(slow, 90.0, None); 3];
        trace.extend(vec![(slower, 90.0, None); 3]);
        assert!(replay(&mut p, &trace).iter().all(|r| *r == 0));
        let much: &[f64] = &[25.0, 26.0, 24.0];
        let d = p.decide(10.0, &reads(much), 60e6, None);
        assert!(matches!(d.reason, Reason::Busy { .. }), "{d:?}");
        assert!(
            d.describe().contains("over a 10.2 ms baseline"),
            "{}",
            d.describe()
        );
    }

    /// The redo log filling up overrides the delay: under half free the cap
    /// stops falling, under a quarter it is lifted.
    #[test]
    fn redo_headroom_guarantees_progress() {
        let mut p = Pacer::new(Config::default());
        let quiet: &[f64] = &[1.0, 1.0, 1.0];
        let busy: &[f64] = &[9.0, 9.0, 9.0];
        let mut trace = vec![(quiet, 500.0, Some(0.9)); 2];
        trace.extend(vec![(busy, 200.0, Some(0.9)); 2]);
        trace.extend(vec![(busy, 98.0, Some(0.4)); 3]);
        trace.push((busy, 98.0, Some(0.2)));
        let caps = replay(&mut p, &trace);
        assert_eq!(&caps[2..4], &[140, 98], "{caps:?}");
        assert!(
            caps[4..7].iter().all(|c| *c == 98),
            "no decrease under half free: {caps:?}"
        );
        assert_eq!(caps[7], 0, "lifted under a quarter free: {caps:?}");
        let d = p.decide(9.0, &reads(busy), 98e6, Some(0.2));
        assert!(
            d.describe().contains("redo log 20% free"),
            "{}",
            d.describe()
        );
    }

    /// Too few reads to judge: the cap stays where it is.
    #[test]
    fn holds_without_samples() {
        let mut p = Pacer::new(Config::default());
        let busy: &[f64] = &[9.0, 9.0, 9.0];
        let quiet: &[f64] = &[1.0, 1.0, 1.0];
        replay(&mut p, &[(quiet, 500.0, None), (busy, 100.0, None)]);
        assert_eq!(p.rate(), Some(70_000_000));
        let d = p.decide(5.0, &reads(&[1.0]), 0.0, None);
        assert_eq!((d.rate, d.reason), (Some(70_000_000), Reason::Hold));
    }
}
