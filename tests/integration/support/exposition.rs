//! Strict checks of what `/metrics` serves: the OpenMetrics text grammar,
//! checked line by line here, and the classic text format, checked by
//! Prometheus's own `promtool check metrics` (lints included).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};

/// Every sample, as `name{labels}` (labels as served) → value.
pub type Samples = BTreeMap<String, f64>;

/// Check an OpenMetrics exposition strictly and return its samples.
pub fn check_openmetrics(text: &str) -> Samples {
    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("does not end with `# EOF`:\n{text}"));
    let mut seen = HashSet::new();
    let mut family: Option<(String, String)> = None;
    let mut samples = Samples::new();
    let mut rows = Vec::new();
    for line in body.lines() {
        let fail = |why: &str| -> ! { panic!("{why}: `{line}`\n{text}") };
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            let name = name
                .filter(|n| valid_name(n))
                .unwrap_or_else(|| fail("bad metric name"));
            let current = family.as_ref().map(|(n, _)| n.as_str());
            if current != Some(name) {
                check_histograms(&family, &std::mem::take(&mut rows), text);
                if !seen.insert(name.to_string()) {
                    fail("family appears twice");
                }
                family = Some((name.to_string(), "unknown".into()));
            }
            match kind {
                Some("HELP") if !rest.is_empty() => {}
                Some("TYPE") if ["counter", "gauge", "histogram", "unknown"].contains(&rest) => {
                    family.as_mut().unwrap().1 = rest.to_string();
                }
                Some("UNIT") if name.ends_with(&format!("_{rest}")) => {}
                _ => fail("bad metadata line"),
            }
            continue;
        }
        let (name, labels, value) = parse_sample(line).unwrap_or_else(|| fail("not a sample"));
        let (fam, kind) = family.as_ref().unwrap_or_else(|| fail("sample before any family"));
        let suffix = name
            .strip_prefix(fam.as_str())
            .unwrap_or_else(|| fail("sample outside its family"));
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_count", "_sum"],
            _ => &[""],
        };
        if !allowed.contains(&suffix) {
            fail("suffix not allowed for the family's type");
        }
        if kind == "counter" && value < 0.0 {
            fail("negative counter");
        }
        let key = format!("{name}{}", render_labels(&labels));
        if samples.insert(key, value).is_some() {
            fail("duplicate sample");
        }
        rows.push((suffix.to_string(), labels, value));
    }
    check_histograms(&family, &rows, text);
    samples
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label(n: &str) -> bool {
    valid_name(n) && !n.contains(':')
}

type Labels = Vec<(String, String)>;

/// `name{a="x",b="y"} value`: its parts, or None when it does not parse.
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.strip_prefix(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v if v.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => v.parse().ok()?,
        _ => return None,
    };
    Some((name.to_string(), labels, value))
}

/// Labels up to the closing brace; what follows it.
fn parse_labels(mut s: &str) -> Option<(Labels, &str)> {
    let mut labels = Labels::new();
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        if !labels.is_empty() {
            s = s.strip_prefix(',')?;
        }
        let (name, after) = s.split_once("=\"")?;
        if !valid_label(name) || labels.iter().any(|(n, _)| n == name) {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                (_, '\n') => return None,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        s = &after[end + 1..];
    }
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

/// One histogram series: (le, cumulative count) per bucket, `_count`, and
/// whether `_sum` was there.
#[derive(Default)]
struct Series {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: bool,
}

/// Per label set: buckets ascending in `le` and cumulative, the last one
/// `+Inf` and equal to `_count`, and a `_sum`.
fn check_histograms(family: &Option<(String, String)>, rows: &[(String, Labels, f64)], text: &str) {
    let Some((name, kind)) = family else { return };
    if kind != "histogram" {
        return;
    }
    let mut series: BTreeMap<Labels, Series> = BTreeMap::new();
    for (suffix, labels, value) in rows {
        let mut rest: Labels = labels.iter().filter(|(n, _)| n != "le").cloned().collect();
        rest.sort();
        let s = series.entry(rest).or_default();
        match suffix.as_str() {
            "_bucket" => {
                let le = labels.iter().find(|(n, _)| n == "le").map(|(_, v)| v.as_str());
                let le = match le {
                    Some("+Inf") => f64::INFINITY,
                    Some(v) => v.parse().unwrap_or_else(|_| panic!("{name}: bad le {v}\n{text}")),
                    None => panic!("{name}: bucket without le\n{text}"),
                };
                s.buckets.push((le, *value));
            }
            "_count" => s.count = Some(*value),
            _ => s.sum = true,
        }
    }
    for (labels, Series { buckets, count, sum }) in series {
        let ok = buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            && buckets.last().is_some_and(|b| b.0.is_infinite() && Some(b.1) == count)
            && sum;
        assert!(
            ok,
            "{name}{labels:?}: buckets {buckets:?}, count {count:?}, sum {sum}\n{text}"
        );
    }
}

/// `promtool check metrics` on the classic text format: exit 0, no lint.
/// promtool is Debian's `prometheus` package (`.ci/run` installs it); its
/// absence fails the test rather than skipping the check.
pub fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool is required (apt-get install prometheus; .ci/run installs it): {e}"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_checker_refuses_what_the_grammar_refuses() {
    let good = "# TYPE a counter\n# HELP a Things.\na_total{k=\"v\\\"\"} 1\n# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3.5\n# EOF\n";
    assert_eq!(check_openmetrics(good).get("h_count"), Some(&2.0));
    for bad in [
        good.trim_end_matches("# EOF\n"),
        &good.replace("a_total", "a_count"),
        &good.replace("h_count 2", "h_count 3"),
        &good.replace("{k=", "{1k="),
        &good.replace("1\n# TYPE h", "one\n# TYPE h"),
        &good.replace("h_sum 3.5\n", ""),
        &format!("{good}\n"),
    ] {
        let caught = std::panic::catch_unwind(|| check_openmetrics(bad));
        assert!(caught.is_err(), "accepted:\n{bad}");
    }
}
