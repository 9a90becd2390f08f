//! What the progress display shows, from one sample: pure functions with
//! no I/O and no clock (the caller passes the wall-clock time and the
//! terminal's width).
//!
//! - [`bar_line`]: the terminal bar, fitted to a width: the bar, bytes
//!   done/total with the percentage, the rate, the ETA as `h:mm:ss`, the
//!   redo lag (backup), the files; what does not fit is left out, least
//!   useful first, and the line never reaches the last column.
//! - [`status`]: the same fields as one line of text (lines mode).
//! - [`timestamp`]: the wall-clock prefix of lines mode, as the server's
//!   error log writes it (`2026-12-05 06:30:01`, here in UTC).

use crate::events::Sample;

/// One sample as the display sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct View {
    /// The counters.
    pub sample: Sample,
    /// Show the redo copied and the lag (a backup).
    pub redo: bool,
}

impl View {
    /// The byte total is known (a stream on a pipe has none).
    fn total_known(&self) -> bool {
        self.sample.bytes_total > 0
    }

    /// Percentage done, when the total is known.
    fn percent(&self) -> Option<u64> {
        let s = &self.sample;
        self.total_known().then(|| {
            (u128::from(s.bytes_done.min(s.bytes_total)) * 100 / u128::from(s.bytes_total)) as u64
        })
    }
}

/// Human-readable bytes: `512 B`, `1.5 KiB`, `20.0 GiB`.
#[must_use]
pub fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Seconds as `h:mm:ss` (`0:00:07`, `12:03:59`).
#[must_use]
pub fn hms(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `1.2/4.0 GiB` when both have the same unit, else `512.0 MiB/4.0 GiB`;
/// only `1.2 GiB` when the total is unknown.
fn bytes_pair(v: &View) -> String {
    let s = &v.sample;
    let done = human(s.bytes_done);
    if !v.total_known() {
        return done;
    }
    let total = human(s.bytes_total);
    match (done.split_once(' '), total.split_once(' ')) {
        (Some((dn, du)), Some((_, tu))) if du == tu => format!("{dn}/{total}"),
        _ => format!("{done}/{total}"),
    }
}

fn eta(v: &View) -> String {
    match v.sample.eta_s {
        Some(e) => format!("ETA {}", hms(e)),
        None if v.total_known() && v.sample.bytes_done >= v.sample.bytes_total => {
            "ETA 0:00:00".into()
        }
        None => "ETA -".into(),
    }
}

fn files(v: &View) -> String {
    let s = &v.sample;
    if s.files_total > 0 {
        format!("{}/{} files", s.files_done, s.files_total.max(s.files_done))
    } else {
        format!("{} files", s.files_done)
    }
}

/// Screen columns of a line (every character we print is one column).
#[must_use]
pub fn columns(s: &str) -> usize {
    s.chars().count()
}

/// Narrowest bar drawn, brackets included; below that the bar is left out.
const MIN_BAR: usize = 12;
/// Widest bar drawn, brackets included (a wide terminal gets a readable
/// line, not a 150-column bar).
const MAX_BAR: usize = 52;

/// `[#####>      ]` of `cells` columns (brackets included), `frac` done.
fn bar(cells: usize, done: u64, total: u64) -> String {
    let inner = cells.saturating_sub(2);
    let fill = if total == 0 {
        0
    } else {
        (u128::from(done.min(total)) * inner as u128 / u128::from(total)) as usize
    };
    let head = usize::from(fill < inner && fill > 0);
    format!(
        "[{}{}{}]",
        "#".repeat(fill),
        ">".repeat(head),
        " ".repeat(inner - fill - head)
    )
}

/// The terminal line for `v` on a terminal `width` columns wide: at most
/// `width - 1` columns, so the cursor never lands past the last column and
/// nothing wraps. Fields in order of importance (dropped from the last when
/// the width is short): bytes and percentage, ETA, rate, redo lag (backup),
/// the bar, the files; at 80 columns all of them fit but the files, which
/// fit when the numbers are short. Below about 30 columns the line is cut.
#[must_use]
pub fn bar_line(v: &View, width: usize) -> String {
    let budget = width.saturating_sub(1);
    let s = &v.sample;
    let mut bytes = bytes_pair(v);
    if let Some(p) = v.percent() {
        bytes.push_str(&format!(" {p}%"));
    }
    // Fields by importance; the bar goes first on the line.
    let mut fields: Vec<String> = vec![bytes, eta(v), format!("{}/s", human(s.rate_bps))];
    if v.redo {
        fields.push(format!("redo lag {}", human(s.redo_lag)));
    }
    let files_at = fields.len();
    fields.push(files(v));
    // Displayed order: bytes, rate, ETA, lag, files.
    let order = |n: usize| -> Vec<&String> {
        let mut shown: Vec<&String> = fields.iter().take(n).collect();
        if n >= 3 {
            shown.swap(1, 2);
        }
        shown
    };
    let text_len = |shown: &[&String]| -> usize {
        shown.iter().map(|f| columns(f)).sum::<usize>() + shown.len().saturating_sub(1)
    };
    // The most fields that fit with the bar, then the most without it.
    let mut best: Option<(usize, usize)> = None; // (fields, bar cells)
    for n in (1..=fields.len()).rev() {
        let t = text_len(&order(n));
        // The bar is worth more than the files, not more than the rest.
        let with_bar = v.total_known() && t + 1 + MIN_BAR <= budget;
        if with_bar {
            best = Some((n, (budget - t - 1).min(MAX_BAR)));
            break;
        }
        // Without a bar to show, the files are shown like the rest.
        if (n <= files_at || !v.total_known()) && t <= budget {
            best = Some((n, 0));
            break;
        }
    }
    let Some((n, cells)) = best else {
        // Narrower than the first field: cut it.
        return fields[0].chars().take(budget).collect();
    };
    let mut line = String::new();
    if cells > 0 {
        line.push_str(&bar(cells, s.bytes_done, s.bytes_total));
        line.push(' ');
    }
    let shown: Vec<&str> = order(n).into_iter().map(String::as_str).collect();
    line.push_str(&shown.join(" "));
    line
}

/// The fields as one line of text (lines mode): `12/40 files, 1.2/4.0 GiB
/// (31%), 120.0 MiB/s, ETA 0:00:25[, redo copied 4.0 MiB lag 1.0 MiB]`.
#[must_use]
pub fn status(v: &View) -> String {
    let s = &v.sample;
    let mut out = format!("{}, {}", files(v), bytes_pair(v));
    if let Some(p) = v.percent() {
        out.push_str(&format!(" ({p}%)"));
    }
    out.push_str(&format!(", {}/s, {}", human(s.rate_bps), eta(v)));
    if v.redo {
        out.push_str(&format!(
            ", redo copied {} lag {}",
            human(s.redo_copied),
            human(s.redo_lag)
        ));
    }
    out
}

/// The wall-clock prefix of lines mode: UTC, ISO-8601 date and time to the
/// second with a space between them, as the server's error log writes its
/// own (`2026-12-05 06:30:01`).
#[must_use]
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `[   12.3s]`: the seconds since the command started.
#[must_use]
pub fn elapsed(secs: f64) -> String {
    format!("[{secs:7.1}s]")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn typical(redo: bool) -> View {
        View {
            sample: Sample {
                files_done: 12,
                files_total: 40,
                bytes_done: 1288 * MIB,
                bytes_total: 4 * GIB,
                rate_bps: 120 * MIB,
                eta_s: Some(25),
                redo_copied: 4 * MIB,
                redo_lag: 3 * MIB + MIB / 10,
            },
            redo,
        }
    }

    /// Every field as long as it gets below a PiB and 100 hours.
    fn widest() -> View {
        View {
            sample: Sample {
                files_done: 123_456,
                files_total: 123_457,
                bytes_done: 1000 * GIB + 900 * MIB,
                bytes_total: 1023 * 1024 * GIB,
                rate_bps: 1000 * MIB + 900 * 1024,
                eta_s: Some(99 * 3600 + 59 * 60 + 59),
                redo_copied: 1000 * GIB,
                redo_lag: 1000 * MIB + 900 * 1024,
            },
            redo: true,
        }
    }

    #[test]
    fn hms_is_hours_minutes_seconds() {
        assert_eq!(hms(0), "0:00:00");
        assert_eq!(hms(7), "0:00:07");
        assert_eq!(hms(61), "0:01:01");
        assert_eq!(hms(3600 * 12 + 3 * 60 + 59), "12:03:59");
        assert_eq!(hms(3600 * 100), "100:00:00");
    }

    /// The line for `v` at `width` fits and shows every one of `wants`.
    fn assert_fits(v: &View, width: usize, wants: &[&str]) -> String {
        let l = bar_line(v, width);
        assert!(
            columns(&l) < width,
            "{} columns at {width}: {l:?}",
            columns(&l)
        );
        for want in wants {
            assert!(l.contains(want), "{want} in {l:?}");
        }
        l
    }

    #[test]
    fn the_bar_at_80_columns_shows_everything_and_does_not_wrap() {
        let fields = [
            "1.3/4.0 GiB 31%",
            "120.0 MiB/s",
            "ETA 0:00:25",
            "redo lag 3.1 MiB",
        ];
        let l = assert_fits(&typical(true), 80, &fields);
        assert!(l.starts_with('['), "{l}");
        // The widest numbers give up the bar, not a field.
        let wide = [
            "1000.9 GiB/1023.0 TiB 0%",
            "ETA 99:59:59",
            "/s",
            "redo lag 1000.9 MiB",
        ];
        assert_fits(&widest(), 80, &wide);
    }

    #[test]
    fn the_exact_line_at_80_columns() {
        let l = bar_line(&typical(true), 80);
        assert_eq!(
            l,
            "[######>             ] 1.3/4.0 GiB 31% 120.0 MiB/s ETA 0:00:25 redo lag 3.1 MiB"
        );
        // Short numbers leave room for the files.
        let mut small = typical(true);
        small.sample.bytes_done = 30 * MIB;
        small.sample.bytes_total = 90 * MIB;
        small.sample.rate_bps = 12 * MIB;
        small.sample.redo_lag = 0;
        (small.sample.files_done, small.sample.files_total) = (3, 9);
        let l = bar_line(&small, 80);
        assert_eq!(
            l,
            "[####>        ] 30.0/90.0 MiB 33% 12.0 MiB/s ETA 0:00:25 redo lag 0 B 3/9 files"
        );
        // Without redo (verify, restore) the bar gets the room.
        let l = bar_line(&typical(false), 80);
        assert_eq!(
            l,
            "[#######>                 ] 1.3/4.0 GiB 31% 120.0 MiB/s ETA 0:00:25 12/40 files"
        );
        assert_eq!(columns(&l), 79);
    }

    #[test]
    fn at_60_columns_the_bar_gives_way_to_the_numbers() {
        let l = bar_line(&typical(true), 60);
        assert!(columns(&l) < 60, "{l:?}");
        assert_eq!(
            l,
            "1.3/4.0 GiB 31% 120.0 MiB/s ETA 0:00:25 redo lag 3.1 MiB"
        );
        let w = bar_line(&widest(), 60);
        assert!(columns(&w) < 60, "{w:?}");
        assert!(w.contains("ETA 99:59:59"), "{w}");
        let l = bar_line(&typical(false), 60);
        assert!(columns(&l) < 60, "{l:?}");
        assert_eq!(
            l,
            "[#####>           ] 1.3/4.0 GiB 31% 120.0 MiB/s ETA 0:00:25"
        );
    }

    #[test]
    fn at_200_columns_the_bar_is_capped_and_everything_shows() {
        for v in [typical(true), widest(), typical(false)] {
            let l = bar_line(&v, 200);
            assert!(columns(&l) < 200, "{l:?}");
            assert!(l.ends_with(" files"), "{l}");
            let bar = &l[..=l.find(']').unwrap()];
            assert_eq!(columns(bar), MAX_BAR, "{l}");
        }
    }

    #[test]
    fn an_unknown_total_has_no_bar_percentage_or_eta() {
        let v = View {
            sample: Sample {
                files_done: 3,
                bytes_done: 5 * MIB,
                rate_bps: MIB,
                ..Sample::default()
            },
            redo: false,
        };
        assert_eq!(bar_line(&v, 80), "5.0 MiB 1.0 MiB/s ETA - 3 files");
        assert_eq!(status(&v), "3 files, 5.0 MiB, 1.0 MiB/s, ETA -");
    }

    #[test]
    fn done_shows_a_full_bar_and_no_time_left() {
        let v = View {
            sample: Sample {
                files_done: 40,
                files_total: 40,
                bytes_done: 4 * GIB,
                bytes_total: 4 * GIB,
                rate_bps: 100 * MIB,
                eta_s: None,
                ..Sample::default()
            },
            redo: false,
        };
        let l = bar_line(&v, 80);
        assert!(l.starts_with("[######"), "{l}");
        assert!(
            !l.contains(' ') || !l[..l.find(']').unwrap()].contains(' '),
            "{l}"
        );
        assert!(
            l.contains("4.0/4.0 GiB 100%") && l.contains("ETA 0:00:00"),
            "{l}"
        );
    }

    #[test]
    fn the_status_line_names_every_field() {
        assert_eq!(
            status(&typical(true)),
            "12/40 files, 1.3/4.0 GiB (31%), 120.0 MiB/s, ETA 0:00:25, redo copied 4.0 MiB lag 3.1 MiB"
        );
        assert_eq!(
            status(&typical(false)),
            "12/40 files, 1.3/4.0 GiB (31%), 120.0 MiB/s, ETA 0:00:25"
        );
    }

    #[test]
    fn the_timestamp_is_the_error_logs() {
        let t = chrono::DateTime::from_timestamp(1_796_452_201, 0).unwrap();
        assert_eq!(timestamp(t), "2026-12-05 06:30:01");
        assert_eq!(elapsed(12.34), "[   12.3s]");
    }

    #[test]
    fn humans() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(20 * GIB), "20.0 GiB");
    }

    proptest! {
        /// Whatever the numbers and the width, the line never reaches the
        /// last column.
        #[test]
        fn never_wraps(
            done in any::<u64>(), total in any::<u64>(), rate in any::<u64>(),
            eta in proptest::option::of(any::<u64>()), lag in any::<u64>(),
            files in any::<u64>(), redo in any::<bool>(), width in 1usize..300,
        ) {
            let v = View {
                sample: Sample {
                    files_done: files / 2,
                    files_total: files,
                    bytes_done: done,
                    bytes_total: total,
                    rate_bps: rate,
                    eta_s: eta,
                    redo_copied: lag,
                    redo_lag: lag,
                },
                redo,
            };
            let l = bar_line(&v, width);
            prop_assert!(columns(&l) < width.max(1), "{} at {}: {:?}", columns(&l), width, l);
        }
    }
}
