//! The two text formats `/metrics` speaks. Prometheus asks for OpenMetrics,
//! which is what `prometheus-client` writes; anything else (curl, `promtool
//! check metrics`, older scrapers) gets the classic text format 0.0.4, where
//! a counter's family is named with its `_total` suffix and there is no
//! `# UNIT` or `# EOF` line.

use std::collections::HashSet;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// From the scraper's `Accept` header.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

pub fn render(registry: &Registry, format: Format) -> String {
    let mut om = String::new();
    // Writing to a String cannot fail, and every label value encodes.
    encode(&mut om, registry).expect("encoding metrics into a String");
    match format {
        Format::OpenMetrics => om,
        Format::Text => to_text(&om),
    }
}

/// OpenMetrics → text format 0.0.4. The two agree on samples (we use no
/// exemplars and no `_created` series); they differ in a counter family's
/// name and in the `# UNIT` and `# EOF` lines.
fn to_text(om: &str) -> String {
    let counters: HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match meta {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_their_suffix_and_openmetrics_only_lines_go() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total{k=\"v\"} 2\n\
                  # HELP a_d Time.\n# TYPE a_d_seconds histogram\n# UNIT a_d_seconds seconds\n\
                  a_d_seconds_sum 0.5\n# EOF\n";
        assert_eq!(
            to_text(om),
            "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total{k=\"v\"} 2\n\
             # HELP a_d Time.\n# TYPE a_d_seconds histogram\na_d_seconds_sum 0.5\n"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_text() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
    }
}
