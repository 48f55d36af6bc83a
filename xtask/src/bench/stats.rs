//! Pure helpers of `cargo xtask bench`: percentiles, Prometheus text parsing, histogram
//! quantiles and `/proc` memory figures.

use serde::Serialize;

/// p50/p95/p99/max of a set of samples, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Quantiles {
    /// Nearest-rank percentiles of `samples_us` (microseconds); zeros when empty.
    pub fn of_micros(samples_us: &mut [u64]) -> Self {
        samples_us.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(nearest_rank(samples_us, 0.50)),
            p95_ms: ms(nearest_rank(samples_us, 0.95)),
            p99_ms: ms(nearest_rank(samples_us, 0.99)),
            max_ms: ms(samples_us.last().copied().unwrap_or(0)),
        }
    }
}

/// The nearest-rank `q` quantile of sorted samples (0 when empty).
pub fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One sample line of the Prometheus text format: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the sample lines of a Prometheus text exposition (comments and junk are skipped).
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(' ')?),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.find('{') {
        Some(open) => (&series[..open], parse_labels(&series[open + 1..series.len() - 1])),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        // Values are quoted with `\"` escapes.
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        out.push((key, value));
        rest = &body[end.min(body.len())..];
    }
    out
}

/// Sum of every series of `name` whose labels contain all of `matching`.
pub fn sum(samples: &[Sample], name: &str, matching: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| matching.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

/// A cumulative histogram: `(upper bound, count)` pairs sorted by bound (`+Inf` last), plus the
/// sum and count series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// The histogram `name` (without the `_bucket` suffix), summed over its label sets.
    pub fn from_samples(samples: &[Sample], name: &str) -> Self {
        let bucket_name = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for s in samples.iter().filter(|s| s.name == bucket_name) {
            let Some(le) = s.label("le").and_then(parse_bound) else {
                continue;
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(entry) => entry.1 += s.value,
                None => buckets.push((le, s.value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self {
            buckets,
            sum: sum(samples, &format!("{name}_sum"), &[]),
            count: sum(samples, &format!("{name}_count"), &[]),
        }
    }

    /// `self - earlier`, bucket by bucket (the observations made in between).
    pub fn since(&self, earlier: &Self) -> Self {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| b == le)
                    .map_or(0.0, |(_, c)| *c);
                (*le, n - before)
            })
            .collect();
        Self {
            buckets,
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The `q` quantile in seconds, interpolated linearly inside the bucket that holds it (as
    /// PromQL's `histogram_quantile`); `None` without observations. A quantile in the `+Inf`
    /// bucket reports the largest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (le, count) in &self.buckets {
            if *count >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = count - below;
                let fraction = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return Some(lower + (le - lower) * fraction);
            }
            lower = *le;
            below = *count;
        }
        Some(lower)
    }

    /// Mean in seconds (`None` without observations).
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

fn parse_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process in MiB, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Memory {
    pub rss_mib: f64,
    pub peak_mib: f64,
}

impl Memory {
    pub fn of(pid: u32) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
    }

    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0)
        };
        Some(Self {
            rss_mib: field("VmRSS:")?,
            peak_mib: field("VmHWM:")?,
        })
    }
}

/// CPU seconds (user + system) a process used so far, from `/proc/<pid>/stat` (clock ticks
/// of 1/100 s, Linux's `USER_HZ` on every architecture the bench runs on).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    parse_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_user_plus_system_ticks() {
        let stat = "123 (lmcache (op)) S 1 123 123 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_seconds(stat), Some(3.8));
    }

    const WEBHOOK: &str = r#"# HELP lmcache_webhook_admission_duration_seconds Time.
# TYPE lmcache_webhook_admission_duration_seconds histogram
lmcache_webhook_admission_duration_seconds_sum 0.25
lmcache_webhook_admission_duration_seconds_count 100
lmcache_webhook_admission_duration_seconds_bucket{le="0.0001"} 10
lmcache_webhook_admission_duration_seconds_bucket{le="0.0002"} 60
lmcache_webhook_admission_duration_seconds_bucket{le="0.0004"} 90
lmcache_webhook_admission_duration_seconds_bucket{le="0.0008"} 100
lmcache_webhook_admission_duration_seconds_bucket{le="+Inf"} 100
lmcache_webhook_admission_total{outcome="injected",reason=""} 100
lmcache_webhook_admission_total{outcome="skipped",reason="engine-not-found"} 3
lmcache_operator_api_writes_total{verb="PATCH",resource="daemonsets"} 300
lmcache_operator_api_writes_total{verb="POST",resource="events"} 3e2
# EOF
"#;

    #[test]
    fn samples_parse_with_labels_and_exponents() {
        let samples = parse_samples(WEBHOOK);
        assert_eq!(samples.len(), 11);
        assert_eq!(sum(&samples, "lmcache_operator_api_writes_total", &[]), 600.0);
        assert_eq!(
            sum(
                &samples,
                "lmcache_operator_api_writes_total",
                &[("verb", "PATCH")]
            ),
            300.0
        );
        assert_eq!(
            sum(
                &samples,
                "lmcache_webhook_admission_total",
                &[("outcome", "injected")]
            ),
            100.0
        );
        let skipped = samples
            .iter()
            .find(|s| s.label("outcome") == Some("skipped"))
            .unwrap();
        assert_eq!(skipped.label("reason"), Some("engine-not-found"));
    }

    #[test]
    fn escaped_label_values_parse() {
        let samples = parse_samples("m{a=\"x\\\"y\",b=\"z\"} 1\n");
        assert_eq!(samples[0].label("a"), Some("x\"y"));
        assert_eq!(samples[0].label("b"), Some("z"));
    }

    #[test]
    fn histogram_quantiles_interpolate_inside_buckets() {
        let h = Histogram::from_samples(
            &parse_samples(WEBHOOK),
            "lmcache_webhook_admission_duration_seconds",
        );
        assert_eq!(h.count, 100.0);
        assert_eq!(h.buckets.len(), 5);
        // Rank 50 lies in (0.1 ms, 0.2 ms]: 40 of its 50 observations.
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.00018).abs() < 1e-9, "{p50}");
        // Rank 99 lies in (0.4 ms, 0.8 ms]: 9 of its 10.
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - 0.00076).abs() < 1e-9, "{p99}");
        assert_eq!(h.mean(), Some(0.0025));
    }

    #[test]
    fn histogram_differences_and_the_inf_bucket() {
        let after = Histogram {
            buckets: vec![(0.001, 10.0), (f64::INFINITY, 20.0)],
            sum: 2.0,
            count: 20.0,
        };
        let before = Histogram {
            buckets: vec![(0.001, 10.0), (f64::INFINITY, 10.0)],
            sum: 1.0,
            count: 10.0,
        };
        let d = after.since(&before);
        assert_eq!(d.buckets, vec![(0.001, 0.0), (f64::INFINITY, 10.0)]);
        // Everything beyond the last finite bound reports that bound.
        assert_eq!(d.quantile(0.5), Some(0.001));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(before.since(&before).quantile(0.5), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut us: Vec<u64> = (1..=100).rev().collect();
        let q = Quantiles::of_micros(&mut us);
        assert_eq!(q.p50_ms, 0.050);
        assert_eq!(q.p95_ms, 0.095);
        assert_eq!(q.p99_ms, 0.099);
        assert_eq!(q.max_ms, 0.100);
        assert_eq!(Quantiles::of_micros(&mut []), Quantiles::default());
        assert_eq!(nearest_rank(&[7], 0.99), 7);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn proc_status_memory() {
        let status = "Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            Memory::parse(status),
            Some(Memory {
                rss_mib: 10.0,
                peak_mib: 20.0
            })
        );
        assert_eq!(Memory::parse("Name:\tx\n"), None);
        let me = Memory::of(std::process::id()).unwrap();
        assert!(me.rss_mib > 0.0 && me.peak_mib >= me.rss_mib);
    }
}
