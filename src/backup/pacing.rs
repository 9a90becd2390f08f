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
//!   under the floor (where the server's throughput is measured, only
//!   while it is also under [`Config::keep`] of its reference: the
//!   throughput is the cost itself, the delay a proxy for it);
//! - delay under the target: a cap, if any, grows by
//!   [`Config::increase`] of itself (at least half the floor); once it
//!   exceeds the fastest rate seen uncapped, it is lifted;
//! - fewer than [`Config::min_samples`] reads in the interval: hold.
//!
//! **Second signal: the server's own throughput.** A disk queue is not
//! the only thing a backup shares with the server: on a host where the
//! server is short of CPU or memory bandwidth, or where its reads are small
//! random ones waiting behind our large ones, our reads cost it throughput
//! without our own latency moving. So the monitor also counts the
//! statements other clients run per second ([`Pacer::decide`]'s `serve`),
//! and the controller keeps them at [`Config::keep`] of the **reference**:
//! what the server runs while we read nothing. The reference is measured,
//! not guessed: before the copy begins, and then by **probes**, one interval
//! ([`Pacer::decide`] returns `pause`) in which our reads stop, every
//! [`Config::probe_every`] seconds (the first after [`Config::probe_first`];
//! the period doubles, up to [`Config::probe_max`], while the server is
//! unhindered). The reference is the best probe of the last
//! [`Config::tp_window`] seconds (the newest one when all are older), or
//! what the server runs now when that is more. Below `keep` the cap falls as
//! on delay; between `keep` and [`Config::keep_high`] it holds; above, it
//! grows. A server running under [`Config::busy_qps`] statements per second
//! is idle: the signal is off and nothing is probed.
//!
//! **Slow start.** When the server is busy before the copy begins
//! ([`Pacer::start`]), the copy starts at [`Config::start`] and speeds up every
//! interval the server keeps its throughput (× 1.5), until the first back-off;
//! past 8 × the start (or the fastest uncapped rate seen) the cap is lifted.
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
    /// Fraction of the server's reference throughput to keep: under it
    /// the cap falls. The reference is a probe, which runs 15-20% above
    /// the server's steady rate (it catches up on what our reads held
    /// back), so 0.74 of it is about 0.85-0.89 of that rate
    /// (format-spec/pacing.md).
    pub keep: f64,
    /// Above this fraction the cap grows; between `keep` and this it holds.
    pub keep_high: f64,
    /// How long a throughput sample is remembered, seconds.
    pub tp_window: f64,
    /// Statements per second (other clients') under which the server's
    /// throughput is no signal: a half-second sample of fewer statements
    /// cannot tell a 15% change from noise, and a server that light is
    /// paced by its clients' think time (a few monitoring or probe
    /// sessions: their statements wait on fsyncs our reads barely touch).
    /// Our reads' own delay still applies.
    pub busy_qps: f64,
    /// The first cap when the server is busy as the copy begins, bytes/s.
    pub start: u64,
    /// The throughput signal alone never caps under this, bytes/s: at
    /// 100 MB/s our reads, page checks and framing take about 6% of one
    /// core and a small share of any SSD, so a server that is still slower
    /// is slowed by something else (its own load changing, other
    /// processes); only our reads' own delay (the disk) goes lower.
    pub tp_floor: u64,
    /// Seconds into the copy of the first probe of the server's own
    /// throughput.
    pub probe_first: f64,
    /// Seconds between probes while the server is hindered.
    pub probe_every: f64,
    /// The longest period between probes (unhindered server).
    pub probe_max: f64,
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
            keep: 0.74,
            keep_high: 0.82,
            tp_window: 10.0,
            busy_qps: 1000.0,
            start: 200_000_000,
            tp_floor: 100_000_000,
            probe_first: 1.0,
            probe_every: 5.0,
            probe_max: 30.0,
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
    /// The server serves fewer statements than before: capped.
    Slower {
        /// Statements per second in the interval.
        qps: f64,
        /// The reference throughput.
        base_qps: f64,
    },
    /// The server keeps its throughput but close to the limit: the cap holds.
    Holding {
        /// Statements per second in the interval.
        qps: f64,
        /// The reference throughput.
        base_qps: f64,
    },
    /// The server was busy as the copy began: the copy starts capped and
    /// speeds up while the server keeps its throughput.
    SlowStart {
        /// Statements per second before the copy.
        qps: f64,
    },
    /// The interval just ended was a probe: the server ran this many
    /// statements per second while we read nothing.
    Probed {
        /// Statements per second.
        qps: f64,
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
    /// Read nothing in the next interval: a probe of the server's own
    /// throughput.
    pub pause: bool,
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
            Reason::Slower { qps, base_qps } => format!(
                "server busy: it runs {qps:.0} statements/s, {:.0}% of its {base_qps:.0} without our reads; reads paced at {rate}",
                qps / base_qps * 100.0
            ),
            Reason::Holding { qps, base_qps } => format!(
                "server near its limit: {qps:.0} statements/s, {:.0}% of its {base_qps:.0}; reads held at {rate}",
                qps / base_qps * 100.0
            ),
            Reason::SlowStart { qps } => format!(
                "server busy ({qps:.0} statements/s): reads start at {rate} and speed up while it keeps its throughput"
            ),
            Reason::Probed { qps } => format!(
                "probe: the server runs {qps:.0} statements/s while we read nothing; reads at {rate}"
            ),
            Reason::Recovering => format!("server unhindered: reads paced at {rate}"),
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
    /// (time, statements per second) of the probes: the server without
    /// our reads.
    refs: VecDeque<(f64, f64)>,
    /// Doubling (slow start) until the first back-off.
    slow_start: bool,
    /// The interval now running is a probe.
    probing: bool,
    /// When the last probe was asked for, and the period to the next.
    last_probe: f64,
    probe_period: f64,
    /// Probes asked for.
    pub probes: u64,
    /// Statements per second of the interval before (none after a probe).
    last_qps: Option<f64>,
    /// The server's throughput before the copy: a reference until the
    /// first probe (a short sample, taken while the redo follower starts).
    pre: Option<f64>,
    /// The server runs well above the reference: probe again now.
    early_probe: bool,
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
            refs: VecDeque::new(),
            slow_start: false,
            probing: false,
            last_probe: 0.0,
            probe_period: cfg.probe_first,
            probes: 0,
            last_qps: None,
            pre: None,
            early_probe: false,
        }
    }

    /// The server's throughput before the copy (other clients' statements
    /// per second; `None` when unknown): a busy server makes the copy start
    /// at [`Config::start`]. Returns the first decision.
    pub fn start(&mut self, qps: Option<f64>) -> Decision {
        match qps.filter(|q| *q >= self.cfg.busy_qps) {
            Some(q) => {
                self.pre = Some(q);
                self.rate = Some(self.cfg.start.max(self.cfg.floor) as f64);
                self.slow_start = true;
                self.decision(Reason::SlowStart { qps: q })
            }
            None => self.decision(Reason::Hold),
        }
    }

    /// The cap in force.
    #[must_use]
    pub fn rate(&self) -> Option<u64> {
        self.rate.map(|r| r as u64)
    }

    /// The reference throughput at `t`: the median of the last three
    /// probes of the window (the newest alone when all are older; the
    /// pre-copy sample before any probe).
    fn reference(&mut self, t: f64) -> Option<f64> {
        while self.refs.len() > 1
            && self
                .refs
                .front()
                .is_some_and(|(t0, _)| t - t0 > self.cfg.tp_window)
        {
            self.refs.pop_front();
        }
        let mut last: Vec<f64> = self.refs.iter().rev().take(3).map(|(_, q)| *q).collect();
        last.sort_by(f64::total_cmp);
        match last.len() {
            0 => self.pre,
            2 => Some((last[0] + last[1]) / 2.0),
            n => Some(last[n / 2]),
        }
    }

    /// Decide at time `t` (seconds) from the reads of the last interval,
    /// the rate they achieved (bytes/s), the redo log's free fraction and
    /// the statements per second other clients ran in the interval (`None`
    /// without a monitoring connection).
    pub fn decide(
        &mut self,
        t: f64,
        samples: &[Sample],
        measured: f64,
        headroom: Option<f64>,
        serve: Option<f64>,
    ) -> Decision {
        let mut d = self.decide_cap(t, samples, measured, headroom, serve);
        // A probe is due: the server is busy (or was as the copy began),
        // the period is over, and nothing else (the redo log, a probe that
        // just ended) has a say.
        let busy = serve.is_some_and(|q| q >= self.cfg.busy_qps)
            || self.reference(t).is_some_and(|q| q >= self.cfg.busy_qps);
        let free = !matches!(
            d.reason,
            Reason::RedoHeadroom { .. } | Reason::Probed { .. }
        );
        let due = t - self.last_probe >= self.probe_period
            || std::mem::take(&mut self.early_probe)
            || (self.refs.is_empty() && self.pre.is_none());
        if busy && free && due {
            self.probe_period = match d.reason {
                Reason::Quiet => (self.probe_period * 2.0)
                    .max(self.cfg.probe_every)
                    .min(self.cfg.probe_max),
                _ => self.cfg.probe_every,
            };
            self.last_probe = t;
            self.probing = true;
            self.probes += 1;
            d.pause = true;
        }
        d
    }

    fn decide_cap(
        &mut self,
        t: f64,
        samples: &[Sample],
        measured: f64,
        headroom: Option<f64>,
        serve: Option<f64>,
    ) -> Decision {
        let floor = self.cfg.floor as f64;
        if let Some(h) = headroom.filter(|h| *h < 0.25) {
            self.rate = None;
            self.slow_start = false;
            self.probing = false;
            return self.decision(Reason::RedoHeadroom { percent: h * 100.0 });
        }
        let last_qps = std::mem::replace(&mut self.last_qps, serve);
        if std::mem::take(&mut self.probing) {
            self.last_qps = None;
            // The interval just ended read nothing: what the server ran is
            // the reference; our reads' latencies and rate say nothing.
            return match serve {
                Some(qps) => {
                    self.refs.push_back((t, qps));
                    self.decision(Reason::Probed { qps })
                }
                None => self.decision(Reason::Hold),
            };
        }
        // Throughput against the reference: the interval's, and over the
        // last two intervals (one interval is noisy: a server's statement
        // rate varies by 10-15% from one half second to the next). A server
        // running well above the reference (its load grew, or the reference
        // was taken in a bad moment) is probed again at once.
        let throughput = serve.and_then(|q| {
            let base = self.reference(t).unwrap_or(q);
            let two = last_qps.map_or(q, |l| (l + q) / 2.0);
            if two > 1.2 * base && q >= self.cfg.busy_qps {
                self.early_probe = true;
            }
            (base >= self.cfg.busy_qps).then_some((q, two, base))
        });
        let mut lat: Vec<f64> = samples.iter().filter_map(per_mib_ms).collect();
        let delay = (lat.len() >= self.cfg.min_samples).then(|| {
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
            (current, base)
        });
        if delay.is_none() && throughput.is_none() {
            return self.decision(Reason::Hold);
        }
        if self.rate.is_none() {
            self.peak_uncapped = self.peak_uncapped.max(measured);
        }
        let slower = throughput
            .filter(|(_, two, base)| *two < self.cfg.keep * base)
            .map(|(q, _, base)| (q, base));
        // Our reads' delay is a proxy for what we cost the server. Where
        // the server's throughput is measured, the measure decides: at
        // `keep` of its reference or more it runs as well as we promise
        // (its own writes may fill the queue, or our parallel reads wait
        // on each other), and the proxy is overruled; under it, the delay
        // only lets the cap fall below the throughput signal's floor.
        let kept = throughput.is_some_and(|(_, two, base)| two >= self.cfg.keep * base);
        let waits = delay.filter(|(current, base)| {
            !kept && current - base > (self.cfg.target.as_secs_f64() * 1e3).max(*base)
        });
        if slower.is_some() || waits.is_some() {
            let from = self.rate.map_or(measured, |r| r.min(measured.max(floor)));
            let mut new = (from * self.cfg.decrease).max(floor);
            if waits.is_none() {
                // The throughput alone goes no lower than its own floor
                // (nor lifts a lower cap the disk asked for).
                let tp_floor = self.cfg.tp_floor as f64;
                new = new.max(self.rate.map_or(tp_floor, |r| r.min(tp_floor)));
            }
            if headroom.is_some_and(|h| h < 0.5) {
                new = new.max(self.rate.unwrap_or(f64::INFINITY).min(measured.max(floor)));
            }
            self.rate = Some(new);
            self.slow_start = false;
            // The interval just ended ran at the old cap: not a sample of the new.
            self.last_qps = None;
            return self.decision(match (slower, waits) {
                (Some((qps, base_qps)), _) => Reason::Slower { qps, base_qps },
                (None, Some((current_ms, base_ms))) => Reason::Busy {
                    current_ms,
                    base_ms,
                },
                (None, None) => Reason::Hold,
            });
        }
        if let Some((qps, _, base_qps)) =
            throughput.filter(|(q, _, base)| *q < self.cfg.keep_high * base)
        {
            if self.rate.is_some() {
                return self.decision(Reason::Holding { qps, base_qps });
            }
        }
        match self.rate {
            None => self.decision(Reason::Quiet),
            Some(r) => {
                let next = if self.slow_start {
                    r * 1.5
                } else {
                    r + (r * self.cfg.increase).max(floor / 2.0)
                };
                // A cap above the fastest uncapped rate seen is no cap;
                // never uncapped (a slow start), one of 8 × the start.
                let ceiling = if self.peak_uncapped > 0.0 {
                    self.peak_uncapped.max(floor)
                } else {
                    8.0 * self.cfg.start.max(self.cfg.floor) as f64
                };
                if next > ceiling {
                    self.rate = None;
                    self.slow_start = false;
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
            pause: false,
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
                p.decide(i as f64 * 0.5, &reads(ms), mbs * 1e6, *h, None)
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
        let d = p.decide(10.0, &reads(much), 60e6, None, None);
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
        let d = p.decide(9.0, &reads(busy), 98e6, Some(0.2), None);
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
        let d = p.decide(5.0, &reads(&[1.0]), 0.0, None, None);
        assert_eq!((d.rate, d.reason), (Some(70_000_000), Reason::Hold));
    }

    /// Replay (statements/s, measured MB/s) at 0.5 s steps with quiet
    /// reads; the caps chosen, MB/s (0 = none), `P` after a cap where a
    /// probe was asked for.
    fn replay_served(p: &mut Pacer, t0: f64, trace: &[(f64, f64)]) -> Vec<String> {
        let quiet: &[f64] = &[1.0, 1.0, 1.1];
        trace
            .iter()
            .enumerate()
            .map(|(i, (qps, mbs))| {
                let d = p.decide(
                    t0 + i as f64 * 0.5,
                    &reads(quiet),
                    mbs * 1e6,
                    Some(0.9),
                    Some(*qps),
                );
                let cap = d.rate.map_or(0, |r| r / 1_000_000);
                if d.pause {
                    format!("{cap}P")
                } else {
                    cap.to_string()
                }
            })
            .collect()
    }

    /// A busy server before the copy: the copy starts at 200 MB/s and
    /// speeds up × 1.5 while the server keeps its throughput; a probe (an
    /// interval without reads) measures the server alone; two intervals
    /// (one after a probe or a cut) that cost it more than 18% cut the cap
    /// to 0.7×; it holds in the band between 74% and 82%, and grows by a
    /// quarter above it.
    #[test]
    fn slow_start_then_keeps_the_server_throughput() {
        let mut p = Pacer::new(Config::default());
        let d = p.start(Some(19_000.0));
        assert_eq!(d.rate, Some(200_000_000));
        assert!(
            d.describe().contains("19000 statements/s"),
            "{}",
            d.describe()
        );
        let caps = replay_served(
            &mut p,
            0.5,
            &[
                (19_200.0, 200.0), // 200 MB/s costs nothing: × 1.5
                (18_300.0, 300.0), // 96% at 300: × 1.5; the first probe is due
                (19_500.0, 0.0),   // the probe: the server alone
                (11_400.0, 450.0), // 58% at 450: 0.7 x at once
                (13_600.0, 315.0), // 70% (one interval after a cut): down
                (15_200.0, 220.0), // 78%: hold
                (17_000.0, 220.0), // 87% (83% over two): up a quarter
            ],
        );
        assert_eq!(caps, ["300", "450P", "450", "315", "220", "220", "275"]);
        let d = p.decide(4.0, &reads(&[1.0, 1.0, 1.0]), 490e6, None, Some(9_750.0));
        assert!(matches!(d.reason, Reason::Slower { .. }), "{d:?}");
        assert!(
            d.describe().contains("9750 statements/s, 50% of its 19500"),
            "{}",
            d.describe()
        );
        assert_eq!(p.probes, 1);
    }

    /// An idle server (our own sampling only) never slows the copy nor is
    /// probed; under a light load our reads do not slow down the slow start
    /// runs to its end (8 × the start) and the cap is lifted.
    #[test]
    fn idle_or_unhindered_server_is_never_capped() {
        let mut p = Pacer::new(Config::default());
        assert_eq!(p.start(Some(4.0)).rate, None);
        let trace: Vec<(f64, f64)> = (0..20)
            .map(|i| (if i % 2 == 0 { 3.0 } else { 40.0 }, 800.0))
            .collect();
        assert!(replay_served(&mut p, 0.5, &trace).iter().all(|c| c == "0"));
        assert_eq!(p.probes, 0);
        // Five probe sessions, ~370 statements/s, even slowed by a fifth:
        // too light a load to pace by its statements.
        let mut p = Pacer::new(Config::default());
        assert_eq!(p.start(Some(371.0)).rate, None);
        let trace: Vec<(f64, f64)> = (0..20).map(|_| (299.0, 800.0)).collect();
        assert!(replay_served(&mut p, 0.5, &trace).iter().all(|c| c == "0"));
        // A load our reads do not slow down.
        let mut p = Pacer::new(Config::default());
        assert_eq!(p.start(Some(2_050.0)).rate, Some(200_000_000));
        let caps = replay_served(
            &mut p,
            0.5,
            &[
                (2_010.0, 200.0),
                (1_990.0, 300.0),
                (2_000.0, 0.0),
                (2_040.0, 450.0),
                (2_030.0, 675.0),
                (2_020.0, 800.0),
                (2_000.0, 800.0),
            ],
        );
        assert_eq!(caps, ["300", "450P", "450", "675", "1012", "1518", "0"]);
        // Unhindered, the probes come less and less often (5, 10, 20, 30 s).
        let trace: Vec<(f64, f64)> = (0..200).map(|_| (2_000.0, 800.0)).collect();
        let caps = replay_served(&mut p, 3.0, &trace);
        assert!(caps.iter().all(|c| c.starts_with('0')), "{caps:?}");
        let probes: Vec<usize> = (0..caps.len())
            .filter(|i| caps[*i].ends_with('P'))
            .collect();
        let gaps: Vec<usize> = probes.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [20, 40, 60, 60], "{probes:?}");
    }

    /// A load that ends by itself is not taken for our doing: the next
    /// probe measures the server alone at its new level, and the cap grows
    /// again and is lifted.
    #[test]
    fn a_load_that_ends_is_forgotten() {
        let mut p = Pacer::new(Config::default());
        p.start(Some(10_000.0));
        // Slow start, a probe at 1 s (the server alone: 10,000/s), then the
        // load falls to 3,000/s while we read.
        let mut trace = vec![(10_000.0, 200.0), (10_000.0, 300.0), (10_000.0, 0.0)];
        trace.extend(vec![(3_000.0, 100.0); 80]);
        let caps = replay_served(&mut p, 0.5, &trace);
        let mb = |c: &String| c.trim_end_matches('P').parse::<u64>().unwrap_or(u64::MAX);
        assert!(
            caps[3..8].iter().all(|c| mb(c) < 300),
            "backs off first: {caps:?}"
        );
        assert_eq!(caps.last().map(&mb), Some(0), "lifted again: {caps:?}");
    }

    /// A server whose throughput wanders for reasons of its own (here 60–
    /// 80% of the probes whatever we do) is not blamed on reads at
    /// 100 MB/s: the throughput signal alone stops there; only our reads'
    /// own delay goes lower.
    #[test]
    fn throughput_alone_stops_at_its_floor() {
        let mut p = Pacer::new(Config::default());
        p.start(Some(10_000.0));
        let mut trace = vec![(10_000.0, 200.0), (10_000.0, 300.0), (10_000.0, 0.0)];
        // The server at 60-70% of itself; every tenth interval from the
        // first probe on is a probe (every 5 s while hindered): the server
        // alone, at its full rate.
        trace.extend((3..43).map(|j| match j {
            _ if (j - 2) % 10 == 0 => (10_000.0, 0.0),
            _ if j % 3 == 0 => (7_000.0, 150.0),
            _ => (6_000.0, 150.0),
        }));
        let caps = replay_served(&mut p, 0.5, &trace);
        let mb = |c: &String| c.trim_end_matches('P').parse::<u64>().unwrap_or(0);
        assert!(caps[3..].iter().all(|c| mb(c) >= 100), "{caps:?}");
        assert!(caps[3..].iter().any(|c| mb(c) == 100), "{caps:?}");
        // Our reads waiting on the disk take the cap under it.
        let mut p = Pacer::new(Config::default());
        p.start(Some(10_000.0));
        let d = p.decide(0.5, &reads(&[1.0, 1.0, 1.0]), 200e6, None, Some(6_000.0));
        assert_eq!(d.rate, Some(140_000_000), "{d:?}");
        let d = p.decide(1.0, &reads(&[9.0, 9.0, 9.0]), 140e6, None, Some(6_000.0));
        assert_eq!(d.rate, Some(98_000_000), "{d:?}");
    }

    /// Our reads wait on the disk (the server flushes), but the server
    /// keeps its throughput: the measured throughput overrules the proxy.
    #[test]
    fn throughput_overrules_the_delay_of_a_busy_disk() {
        let mut p = Pacer::new(Config::default());
        p.start(Some(20_000.0));
        let quiet: &[f64] = &[2.0, 2.1, 2.0];
        let busy: &[f64] = &[12.0, 12.5, 11.0];
        p.decide(0.5, &reads(quiet), 200e6, None, Some(20_100.0));
        let d = p.decide(1.0, &reads(busy), 300e6, None, Some(19_800.0));
        assert_eq!(d.rate, Some(450_000_000), "{d:?}");
        // The same delay with the server at 78% of its reference (kept, in
        // the hold band): the cap holds, the delay does not push it down.
        // (The interval to 1.5 s is the first probe: the reference, 20000.)
        p.decide(1.5, &[], 0.0, None, Some(20_000.0));
        let d = p.decide(2.0, &reads(busy), 450e6, None, Some(15_600.0));
        assert!(matches!(d.reason, Reason::Holding { .. }), "{d:?}");
        assert_eq!(d.rate, Some(450_000_000), "{d:?}");
        // Slowed under `keep` (65%) with the delay: down, and past the
        // throughput signal's own floor when the disk agrees.
        let mut caps = Vec::new();
        for i in 0..12 {
            let d = p.decide(
                2.5 + f64::from(i) * 0.5,
                &reads(busy),
                450e6,
                None,
                Some(13_000.0),
            );
            caps.push(d.rate.unwrap_or(0));
        }
        assert!(caps[0] < 450_000_000, "{caps:?}");
        assert!(caps.iter().any(|&c| c < 100_000_000), "{caps:?}");
    }
}
