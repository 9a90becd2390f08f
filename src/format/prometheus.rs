//! Prometheus' text exposition format (version 0.0.4), as node_exporter's
//! textfile collector reads it: for each metric family a `# HELP` and a
//! `# TYPE` line, then its samples, one per line, `name{label="value",…}
//! value`. [`render`] writes it, [`parse`] reads it back and checks it
//! (every sample line well formed, every family announced by HELP and TYPE
//! before its samples, no family twice). Pure: no I/O.

use std::fmt::Write as _;

use crate::error::{Classify, ErrorClass};

/// Largest exposition [`parse`] accepts (bytes).
pub const MAX_LEN: usize = 1 << 20;

/// Why a text is not a valid exposition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Larger than [`MAX_LEN`].
    #[error("metrics text of {0} bytes is larger than the limit of {MAX_LEN}")]
    TooLong(usize),
    /// A line that is not a comment, HELP, TYPE or a sample.
    #[error("metrics line {line}: {reason}: {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
        /// The line.
        text: String,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Corrupt
    }
}

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up.
    Counter,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One sample: labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `(name, value)` pairs, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family: name, help, type and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    pub name: String,
    /// One line of help.
    pub help: String,
    /// Its type.
    pub kind: Kind,
    /// Its samples.
    pub samples: Vec<Sample>,
}

impl Family {
    /// A family with one unlabelled sample.
    #[must_use]
    pub fn single(name: &str, help: &str, kind: Kind, value: f64) -> Family {
        Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: vec![Sample {
                labels: Vec::new(),
                value,
            }],
        }
    }

    /// The value of the sample with exactly these labels.
    #[must_use]
    pub fn value(&self, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.labels.len() == labels.len()
                    && s.labels
                        .iter()
                        .zip(labels)
                        .all(|((a, b), (c, d))| a == c && b == d)
            })
            .map(|s| s.value)
    }
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    is_name(s) && !s.contains(':')
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn escape(s: &str, quote: bool) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '"' if quote => o.push_str("\\\""),
            c => o.push(c),
        }
    }
    o
}

/// The exposition of `families`, in order. Names and label names are the
/// caller's constants; help text and label values are escaped.
#[must_use]
pub fn render(families: &[Family]) -> String {
    let mut o = String::new();
    for f in families {
        let _ = writeln!(o, "# HELP {} {}", f.name, escape(&f.help, false));
        let _ = writeln!(o, "# TYPE {} {}", f.name, f.kind.word());
        for s in &f.samples {
            o.push_str(&f.name);
            if !s.labels.is_empty() {
                o.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    let _ = write!(o, "{k}=\"{}\"", escape(v, true));
                }
                o.push('}');
            }
            let _ = writeln!(o, " {}", number(s.value));
        }
    }
    o
}

/// HELP text: `\\` and `\n` escapes (any other backslash is kept).
fn unescape_help(h: &str) -> String {
    let mut o = String::with_capacity(h.len());
    let mut chars = h.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('n')) => {
                o.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                o.push('\\');
                chars.next();
            }
            (c, _) => o.push(c),
        }
    }
    o
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => s.parse().ok(),
        _ => None,
    }
}

/// `k="v",…}` (after the `{`): the labels and the rest after the `}`.
fn parse_labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Some((labels, r));
        }
        let (k, r) = rest.split_once("=\"")?;
        if !is_label_name(k) {
            return None;
        }
        let mut v = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => v.push('\n'),
                    c @ ('\\' | '"') => v.push(c),
                    _ => return None,
                },
                '"' => break i + 1,
                c => v.push(c),
            }
        };
        labels.push((k.to_owned(), v));
        rest = &r[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Read an exposition back, checking it.
///
/// # Errors
/// [`Error::BadLine`] for a malformed line, a sample before its family's
/// HELP and TYPE, a family announced twice or a TYPE other than gauge or
/// counter; [`Error::TooLong`].
pub fn parse(text: &str) -> Result<Vec<Family>, Error> {
    if text.len() > MAX_LEN {
        return Err(Error::TooLong(text.len()));
    }
    let mut out: Vec<Family> = Vec::new();
    // A family is opened by HELP (help known, type not yet) and complete
    // after its TYPE.
    let mut help: Option<(String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let bad = |reason| Error::BadLine {
            line: n + 1,
            reason,
            text: line.to_owned(),
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(r) = line.strip_prefix("# HELP ") {
            let (name, h) = r.split_once(' ').unwrap_or((r, ""));
            if !is_name(name) {
                return Err(bad("bad metric name"));
            }
            if out.iter().any(|f| f.name == name) || help.is_some() {
                return Err(bad("HELP repeated or without a TYPE after it"));
            }
            help = Some((name.to_owned(), unescape_help(h)));
            continue;
        }
        if let Some(r) = line.strip_prefix("# TYPE ") {
            let (name, kind) = r
                .split_once(' ')
                .ok_or_else(|| bad("TYPE without a type"))?;
            let kind = match kind {
                "gauge" => Kind::Gauge,
                "counter" => Kind::Counter,
                _ => return Err(bad("type is not gauge or counter")),
            };
            match help.take() {
                Some((h_name, h)) if h_name == name => out.push(Family {
                    name: h_name,
                    help: h,
                    kind,
                    samples: Vec::new(),
                }),
                _ => {
                    return Err(bad(
                        "TYPE without a HELP line for the same metric before it",
                    ))
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| bad("sample without a value"))?;
        let name = &line[..name_end];
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(r) => parse_labels(r).ok_or_else(|| bad("bad labels"))?,
            None => (Vec::new(), &line[name_end..]),
        };
        let value = rest
            .strip_prefix(' ')
            .map(|v| v.split(' ').next().unwrap_or(v))
            .and_then(parse_value)
            .ok_or_else(|| bad("bad value"))?;
        let fam = out
            .last_mut()
            .filter(|f| f.name == name && help.is_none())
            .ok_or_else(|| bad("sample without HELP and TYPE for its name just before"))?;
        fam.samples.push(Sample { labels, value });
    }
    if let Some((name, _)) = help {
        return Err(Error::BadLine {
            line: text.lines().count(),
            reason: "HELP without a TYPE",
            text: name,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Vec<Family> {
        vec![
            Family::single("hb_status", "1 ok, 0 failed", Kind::Gauge, 1.0),
            Family {
                name: "hb_lock_seconds".into(),
                help: "lock \\ held\nper stage".into(),
                kind: Kind::Gauge,
                samples: vec![
                    Sample {
                        labels: vec![("stage".into(), "BLOCK_DDL".into())],
                        value: 0.25,
                    },
                    Sample {
                        labels: vec![
                            ("stage".into(), "a \"q\" \\ b\nc".into()),
                            ("k".into(), String::new()),
                        ],
                        value: 1e-3,
                    },
                ],
            },
            Family::single("hb_bytes_total", "bytes", Kind::Counter, 123_456_789_012.0),
        ]
    }

    #[test]
    fn render_then_parse_is_identity() {
        let f = sample();
        let text = render(&f);
        assert!(text.contains("hb_status 1\n"));
        assert!(text.contains("hb_lock_seconds{stage=\"BLOCK_DDL\"} 0.25\n"));
        assert!(text.contains("# TYPE hb_bytes_total counter\n"));
        assert_eq!(parse(&text).unwrap(), f);
        assert_eq!(f[1].value(&[("stage", "BLOCK_DDL")]), Some(0.25));
        assert_eq!(f[1].value(&[("stage", "x")]), None);
    }

    #[test]
    fn special_values() {
        let text = render(&[Family::single("x", "h", Kind::Gauge, f64::INFINITY)]);
        assert!(text.ends_with("x +Inf\n"));
        assert_eq!(parse(&text).unwrap()[0].samples[0].value, f64::INFINITY);
        assert!(
            parse("# HELP x h\n# TYPE x gauge\nx NaN\n").unwrap()[0].samples[0]
                .value
                .is_nan()
        );
    }

    #[test]
    fn the_checker_refuses_malformed_expositions() {
        for bad in [
            "x 1\n",                                                    // no HELP/TYPE
            "# TYPE x gauge\nx 1\n",                                    // no HELP
            "# HELP x h\nx 1\n",                                        // no TYPE
            "# HELP x h\n# TYPE x summary\nx 1\n",                      // unsupported type
            "# HELP x h\n# TYPE x gauge\nx one\n",                      // bad value
            "# HELP x h\n# TYPE x gauge\nx\n",                          // no value
            "# HELP x h\n# TYPE x gauge\ny 1\n",                        // other name
            "# HELP x h\n# TYPE x gauge\nx{a=1} 1\n",                   // unquoted label
            "# HELP x h\n# TYPE x gauge\nx{a=\"1} 1\n",                 // open quote
            "# HELP x h\n# TYPE x gauge\nx{a:b=\"1\"} 1\n",             // bad label name
            "# HELP 1x h\n# TYPE 1x gauge\n1x 1\n",                     // bad name
            "# HELP x h\n# TYPE x gauge\n# HELP x h\n# TYPE x gauge\n", // twice
            "# HELP x h\n",                                             // dangling HELP
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(
            parse(&"x".repeat(MAX_LEN + 1)),
            Err(Error::TooLong(MAX_LEN + 1))
        );
    }

    proptest::proptest! {
        #[test]
        fn any_values_and_labels_round_trip(
            v in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            label in "\\PC*",
            help in "[^\\r\\n]*",
        ) {
            let f = vec![Family {
                name: "hotbak_x".into(),
                help,
                kind: Kind::Gauge,
                samples: vec![Sample { labels: vec![("l".into(), label)], value: v }],
            }];
            proptest::prop_assert_eq!(parse(&render(&f)).unwrap(), f);
        }
    }
}
