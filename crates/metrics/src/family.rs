//! Metric families: every series is allocated when the family is built (one per combination
//! of label values), so recording is an index computation and an atomic add, and rendering
//! walks a fixed array.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One label of a family with every value it can take.
#[derive(Debug)]
pub(crate) struct Dim {
    name: &'static str,
    values: Vec<String>,
}

impl Dim {
    pub(crate) fn new(name: &'static str, values: Vec<String>) -> Self {
        Self { name, values }
    }
}

/// The series of a family: their rendered label sets (`a="x",b="y"`, escaped once, here) in
/// row-major order of the dimensions, and the dimension sizes to index them.
#[derive(Debug)]
struct Series {
    labels: Vec<String>,
    sizes: Vec<usize>,
}

impl Series {
    fn new(dims: &[Dim]) -> Self {
        let mut labels = vec![String::new()];
        for dim in dims {
            labels = labels
                .iter()
                .flat_map(|prefix| {
                    dim.values.iter().map(move |value| {
                        let separator = if prefix.is_empty() { "" } else { "," };
                        format!("{prefix}{separator}{}=\"{}\"", dim.name, escape_label_value(value))
                    })
                })
                .collect();
        }
        Self {
            labels,
            sizes: dims.iter().map(|d| d.values.len()).collect(),
        }
    }

    /// The series index of one value index per dimension (row-major).
    fn index(&self, at: &[usize]) -> usize {
        debug_assert_eq!(at.len(), self.sizes.len(), "one index per label");
        at.iter().zip(&self.sizes).fold(0, |acc, (i, size)| {
            debug_assert!(i < size, "label value index in range");
            acc * size + i
        })
    }
}

/// Escapes a label value for the text format: backslash, double quote and line feed.
pub(crate) fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes HELP text: backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(&escape_help(help));
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Writes `name{labels} ` (no braces when there are no labels), ready for the value.
fn sample_start(out: &mut String, name: &str, labels: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
}

fn push_u64(out: &mut String, value: u64) {
    // fmt::Write for String never fails.
    let _ = write!(out, "{value}");
}

/// A float as the text format spells it (`+Inf`, `-Inf`, `NaN`; Rust's `{}` otherwise, which
/// never uses an exponent and is valid Go `ParseFloat` input).
fn push_f64(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // fmt::Write for String never fails.
        let _ = write!(out, "{value}");
    }
}

/// A family of counters (or integer gauges: `kind` says which).
#[derive(Debug)]
pub(crate) struct CounterFamily {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    series: Series,
    cells: Box<[AtomicU64]>,
}

impl CounterFamily {
    pub(crate) fn counter(name: &'static str, help: &'static str, dims: &[Dim]) -> Self {
        Self::new(name, help, "counter", dims)
    }

    pub(crate) fn gauge(name: &'static str, help: &'static str, dims: &[Dim]) -> Self {
        Self::new(name, help, "gauge", dims)
    }

    fn new(name: &'static str, help: &'static str, kind: &'static str, dims: &[Dim]) -> Self {
        let series = Series::new(dims);
        let cells = series.labels.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            name,
            help,
            kind,
            series,
            cells,
        }
    }

    /// Adds one to the series at `at` (one value index per label).
    pub(crate) fn inc(&self, at: &[usize]) {
        if let Some(cell) = self.cells.get(self.series.index(at)) {
            // Relaxed: each counter is independent; a scrape needs no ordering between them.
            cell.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the series at `at` (gauges).
    pub(crate) fn set(&self, at: &[usize], value: u64) {
        if let Some(cell) = self.cells.get(self.series.index(at)) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    pub(crate) fn render(&self, out: &mut String) {
        header(out, self.name, self.help, self.kind);
        for (labels, cell) in self.series.labels.iter().zip(self.cells.iter()) {
            sample_start(out, self.name, labels);
            push_u64(out, cell.load(Ordering::Relaxed));
            out.push('\n');
        }
    }
}

/// `u64::MAX` is a NaN bit pattern: it stands for "not set", so set and value are one atomic.
const UNSET: u64 = u64::MAX;

/// A single float gauge that can be unset (then only its HELP and TYPE are rendered).
#[derive(Debug)]
pub(crate) struct OptionalGauge {
    name: &'static str,
    help: &'static str,
    bits: AtomicU64,
}

impl OptionalGauge {
    pub(crate) fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            bits: AtomicU64::new(UNSET),
        }
    }

    /// Sets the value; `None` or NaN unsets it.
    pub(crate) fn set(&self, value: Option<f64>) {
        let bits = value.filter(|v| !v.is_nan()).map_or(UNSET, f64::to_bits);
        self.bits.store(bits, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "gauge");
        let bits = self.bits.load(Ordering::Relaxed);
        if bits != UNSET {
            sample_start(out, self.name, "");
            push_f64(out, f64::from_bits(bits));
            out.push('\n');
        }
    }
}

/// One histogram series: a count per bucket (not cumulative; the last is above every bound)
/// and the sum in nanoseconds, so recording needs no compare-and-swap loop.
#[derive(Debug)]
struct HistogramCell {
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A family of duration histograms.
#[derive(Debug)]
pub(crate) struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    /// Upper bounds in nanoseconds, ascending.
    bounds: &'static [u64],
    /// The `le` value of each bound, then `+Inf`.
    le: Vec<String>,
    series: Series,
    cells: Box<[HistogramCell]>,
}

impl HistogramFamily {
    /// `bounds`: bucket upper bounds in nanoseconds, strictly ascending (checked by a test of
    /// every family).
    pub(crate) fn new(name: &'static str, help: &'static str, bounds: &'static [u64], dims: &[Dim]) -> Self {
        let series = Series::new(dims);
        let cells = series
            .labels
            .iter()
            .map(|_| HistogramCell {
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_nanos: AtomicU64::new(0),
            })
            .collect();
        let mut le: Vec<String> = bounds
            .iter()
            .map(|&nanos| {
                let mut s = String::new();
                // Nanoseconds below 2^53 convert exactly and the division rounds once, so
                // 500_000 ns prints as 0.0005.
                push_f64(&mut s, nanos as f64 / 1e9);
                s
            })
            .collect();
        le.push("+Inf".to_owned());
        Self {
            name,
            help,
            bounds,
            le,
            series,
            cells,
        }
    }

    /// Records one observation in the series at `at`.
    pub(crate) fn observe(&self, at: &[usize], value: Duration) {
        let Some(cell) = self.cells.get(self.series.index(at)) else {
            return;
        };
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        // `le` is inclusive: the first bound not below the value; past every bound, +Inf.
        let bucket = self.bounds.partition_point(|&bound| bound < nanos);
        if let Some(count) = cell.buckets.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        // Wraps only after 584 years of summed durations.
        cell.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Renders cumulative buckets; `_count` is the `+Inf` bucket, so the two always agree even
    /// while observations race with the scrape.
    pub(crate) fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        for (labels, cell) in self.series.labels.iter().zip(self.cells.iter()) {
            let separator = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0u64;
            for (le, count) in self.le.iter().zip(cell.buckets.iter()) {
                cumulative += count.load(Ordering::Relaxed);
                out.push_str(self.name);
                out.push_str("_bucket{");
                out.push_str(labels);
                out.push_str(separator);
                out.push_str("le=\"");
                out.push_str(le);
                out.push_str("\"} ");
                push_u64(out, cumulative);
                out.push('\n');
            }
            sample_start(out, &format!("{}_sum", self.name), labels);
            push_f64(out, cell.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
            out.push('\n');
            sample_start(out, &format!("{}_count", self.name), labels);
            push_u64(out, cumulative);
            out.push('\n');
        }
    }

    #[cfg(test)]
    pub(crate) fn bounds(&self) -> &'static [u64] {
        self.bounds
    }
}
