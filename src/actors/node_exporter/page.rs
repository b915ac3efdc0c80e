//! A node_exporter page (the Prometheus text exposition format) → the series
//! [`node_series`](crate::node_series) uses.
//!
//! The grammar is parsed by the `prom_text_format_parser` crate. It parses a text all or
//! nothing, so the page is first cut into its metric families (a family starts at its
//! `# HELP` or `# TYPE` line) and only the families a derivation uses are parsed: a broken
//! family loses only itself, named in the page's problems, and the rest of the page flows
//! on. Lines before the first comment line are parsed as one more family.

use crate::node_series::{NodeConfig, Series, UNAME_SERIES};
use prom_text_format_parser::{Metric as Family, ScrapeParseError, Type, parse_scrape};

/// What a page gave.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Page {
    /// The series used, with their values.
    pub series: Vec<(Series, f64)>,
    /// `node_uname_info`'s `nodename`, the host's own name.
    pub nodename: Option<String>,
    /// Families that did not parse or values that are not numbers, each named.
    pub problems: Vec<String>,
    /// Metric families on the page (all of them, used or not).
    pub families: usize,
}

/// Reads the series `config` uses from a page.
pub fn parse(text: &str, config: &NodeConfig) -> Page {
    let mut page = Page::default();
    for chunk in families(text) {
        page.families += 1;
        if chunk.name.is_some_and(|name| !wanted(name, config)) {
            continue;
        }
        let (parsed, error) = parse_scrape(chunk.text);
        if let Some(error) = error {
            page.problems.push(format!(
                "family `{}` (page line {}): {}",
                chunk.name.unwrap_or("(before the first comment)"),
                chunk.first_line,
                describe(&error)
            ));
        }
        for family in &parsed {
            read_family(family, config, &mut page);
        }
    }
    page
}

/// Whether a family named `name` feeds a derivation (or names the host).
fn wanted(name: &str, config: &NodeConfig) -> bool {
    name == UNAME_SERIES
        || name == "node_scrape_collector_success"
        || name == config.load.series_name()
        || matches!(
            name,
            "node_cpu_seconds_total"
                | "node_memory_MemTotal_bytes"
                | "node_memory_MemAvailable_bytes"
                | "node_memory_SwapTotal_bytes"
                | "node_memory_SwapFree_bytes"
                | "node_filesystem_size_bytes"
                | "node_filesystem_free_bytes"
                | "node_filesystem_avail_bytes"
                | "node_network_receive_bytes_total"
                | "node_network_transmit_bytes_total"
                | "node_boot_time_seconds"
                | "node_tcp_connection_states"
        )
}

fn read_family(family: &Family, config: &NodeConfig, page: &mut Page) {
    if matches!(family.kind, Type::Histogram | Type::Summary) {
        return;
    }
    for sample in &family.samples {
        let label = |key: &str| {
            sample
                .labels
                .iter()
                .find(|label| label.key == key)
                .map(|label| label.value.as_str())
        };
        if family.name == UNAME_SERIES {
            page.nodename = label("nodename").map(str::to_string);
            continue;
        }
        let Some(series) = config.classify(&family.name, label) else {
            continue;
        };
        match sample.value.value.parse::<f64>() {
            Ok(value) if value.is_finite() => page.series.push((series, value)),
            _ => page.problems.push(format!(
                "`{}` has the value `{}`, not a finite number",
                family.name,
                sample.value.value.as_str()
            )),
        }
    }
}

/// One metric family's lines.
struct Chunk<'a> {
    name: Option<&'a str>,
    text: &'a str,
    first_line: usize,
}

/// Cuts a page into metric families: a family starts at a `# HELP` or `# TYPE` line that
/// does not follow a comment line of the same family.
fn families(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut name: Option<&str> = None;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let header = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(family) = header
            && name != Some(family)
        {
            if offset > start && !text[start..offset].trim().is_empty() {
                chunks.push(Chunk {
                    name,
                    text: &text[start..offset],
                    first_line: start_line,
                });
            }
            start = offset;
            start_line = index + 1;
            name = Some(family);
        }
        offset += line.len();
    }
    if !text[start..].trim().is_empty() {
        chunks.push(Chunk {
            name,
            text: &text[start..],
            first_line: start_line,
        });
    }
    chunks
}

/// The parser's error on one line of words.
fn describe(error: &ScrapeParseError) -> String {
    match error {
        ScrapeParseError::Parse(message) => message
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        ScrapeParseError::Collect(errors) => errors
            .iter()
            .map(|error| format!("lines {:?}: {}", error.line_no, error.error))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.5\n\
        # HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.\n# TYPE node_memory_MemTotal_bytes gauge\nnode_memory_MemTotal_bytes{x=\"a,b=c\"} 100\n\
        # HELP node_network_receive_bytes_total Network device statistic receive_bytes.\n# TYPE node_network_receive_bytes_total counter\n\
        node_network_receive_bytes_total{device=\"eth0\"} 10\nnode_network_receive_bytes_total{device=\"lo\"} 99\n\
        # TYPE node_uname_info gauge\nnode_uname_info{nodename=\"box\",version=\"#1 SMP, x\"} 1\n";

    /// The wanted families are read, `lo` is left out, quoted commas do not split labels.
    #[test]
    fn reads_the_used_series() {
        let page = parse(PAGE, &NodeConfig::default());
        assert_eq!(page.problems, Vec::<String>::new());
        assert_eq!(page.families, 4);
        assert_eq!(page.nodename.as_deref(), Some("box"));
        assert_eq!(
            page.series,
            vec![
                (Series::Load, 0.5),
                (Series::MemTotal, 100.0),
                (Series::NetRx("eth0".into()), 10.0)
            ]
        );
    }

    /// A broken family is named and lost alone; the families around it still count.
    #[test]
    fn a_broken_family_loses_only_itself() {
        let broken = PAGE.replace(
            "node_memory_MemTotal_bytes{x=\"a,b=c\"} 100",
            "node_memory_MemTotal_bytes{x=\"a} 100",
        );
        let page = parse(&broken, &NodeConfig::default());
        assert_eq!(page.problems.len(), 1, "{:?}", page.problems);
        assert!(
            page.problems[0].contains("node_memory_MemTotal_bytes"),
            "{:?}",
            page.problems
        );
        assert!(
            page.problems[0].contains("page line 4"),
            "{:?}",
            page.problems
        );
        assert!(page.series.contains(&(Series::Load, 0.5)));
        assert!(page.series.contains(&(Series::NetRx("eth0".into()), 10.0)));
    }

    /// Something that is not an exposition at all gives no series and says so.
    #[test]
    fn html_is_a_problem() {
        let page = parse("<html><body>hello</body></html>\n", &NodeConfig::default());
        assert!(page.series.is_empty());
        assert_eq!(page.problems.len(), 1, "{:?}", page.problems);
    }
}
