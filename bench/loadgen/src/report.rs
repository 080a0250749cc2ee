//! Turns the JSON lines written by `bench/run` into a markdown report.
//!
//! Input, one JSON object per line:
//! - `{"meta": [["key", "value"], ...]}`: shown as a list at the top, in order;
//! - `{"scenario": ID, "kind": K, "title": T, "target": NAME, "rep": N, "result": {...}}` where
//!   `result` is `sy-loadgen --json` output and K is `latency`, `throughput`, `stream` or `hold`;
//! - the same with `"error": "message"` instead of `result` when a target or tool failed;
//! - `{"scenario": ID, "kind": "pending", "title": T, "note": "..."}` for scenarios that cannot
//!   run yet.
//!
//! Medians are taken over repetitions, with min–max beside them. Overheads at c=1 are paired:
//! each repetition's target percentile minus the direct run of the same repetition; so is the
//! gzip cost: each repetition's gzip run against the identity run just before it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// One scenario × target: its repetitions in order.
#[derive(Debug, Default, Clone)]
pub struct Cell {
    pub runs: Vec<(u64, Value)>,
    pub failures: Vec<(u64, String)>,
}

#[derive(Debug, Default, Clone)]
pub struct Scenario {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub note: Option<String>,
    /// Targets in order of first appearance.
    pub targets: Vec<(String, Cell)>,
}

impl Scenario {
    fn cell(&self, target: &str) -> Option<&Cell> {
        self.targets
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, c)| c)
    }
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub meta: Vec<(String, String)>,
    pub scenarios: Vec<Scenario>,
    /// Lines that could not be read.
    pub bad_lines: Vec<String>,
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses the JSON lines; never fails (bad lines are kept in `bad_lines`).
pub fn parse(input: &str) -> Report {
    let mut r = Report::default();
    for (i, line) in input.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                r.bad_lines.push(format!("line {}: {e}", i + 1));
                continue;
            }
        };
        if let Some(meta) = v.get("meta").and_then(Value::as_array) {
            for pair in meta {
                if let Some([k, val]) = pair.as_array().map(Vec::as_slice) {
                    r.meta.push((as_text(k), as_text(val)));
                }
            }
            continue;
        }
        let Some(id) = v.get("scenario").and_then(Value::as_str) else {
            r.bad_lines.push(format!("line {}: no scenario", i + 1));
            continue;
        };
        let idx = match r.scenarios.iter().position(|s| s.id == id) {
            Some(idx) => idx,
            None => {
                r.scenarios.push(Scenario {
                    id: id.to_string(),
                    kind: v["kind"].as_str().unwrap_or("").to_string(),
                    title: v["title"].as_str().unwrap_or(id).to_string(),
                    ..Scenario::default()
                });
                r.scenarios.len() - 1
            }
        };
        let sc = &mut r.scenarios[idx];
        if let Some(kind) = v.get("kind").and_then(Value::as_str) {
            if sc.kind.is_empty() || (sc.kind == "pending" && kind != "pending") {
                sc.kind = kind.to_string();
            }
        }
        if let Some(note) = v.get("note").and_then(Value::as_str) {
            sc.note = Some(note.to_string());
        }
        let Some(target) = v.get("target").and_then(Value::as_str) else {
            continue;
        };
        let rep = v["rep"].as_u64().unwrap_or(0);
        let cell_idx = match sc.targets.iter().position(|(t, _)| t == target) {
            Some(i) => i,
            None => {
                sc.targets.push((target.to_string(), Cell::default()));
                sc.targets.len() - 1
            }
        };
        let cell = &mut sc.targets[cell_idx].1;
        if let Some(err) = v.get("error") {
            cell.failures.push((rep, as_text(err)));
        } else if let Some(result) = v.get("result") {
            if let Some(fatal) = result.get("fatal") {
                cell.failures
                    .push((rep, format!("sy-loadgen failed: {}", as_text(fatal))));
            } else {
                cell.runs.push((rep, result.clone()));
            }
        }
    }
    r
}

/// A median with its range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Median (mean of the middle two for even counts), min and max; `None` for no values.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Looks up a number by a `/`-separated path (`latency_us/p50`).
pub fn num(v: &Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for part in path.split('/') {
        cur = cur.get(part)?;
    }
    cur.as_f64()
}

impl Cell {
    pub fn values(&self, path: &str) -> Vec<f64> {
        self.runs.iter().filter_map(|(_, v)| num(v, path)).collect()
    }

    pub fn spread(&self, path: &str) -> Option<Spread> {
        spread(&self.values(path))
    }

    pub fn total(&self, path: &str) -> f64 {
        self.values(path).iter().sum()
    }
}

/// `combine(a, b)` of a metric per repetition (paired by repetition number), as a spread over
/// the repetitions both cells ran.
fn paired(
    a: &Cell,
    b: &Cell,
    path: &str,
    combine: impl Fn(f64, f64) -> Option<f64>,
) -> Option<Spread> {
    let by_rep: BTreeMap<u64, f64> = b
        .runs
        .iter()
        .filter_map(|(rep, v)| Some((*rep, num(v, path)?)))
        .collect();
    let values: Vec<f64> = a
        .runs
        .iter()
        .filter_map(|(rep, v)| combine(num(v, path)?, *by_rep.get(rep)?))
        .collect();
    spread(&values)
}

/// Per-repetition differences `target - direct` of a metric (paired by repetition number).
pub fn paired_overhead(target: &Cell, direct: &Cell, path: &str) -> Option<Spread> {
    paired(target, direct, path, |t, d| Some(t - d))
}

/// Per-repetition ratios `a / b` of a metric (paired by repetition number): for runs that
/// `bench/run` places next to each other on purpose, where the ratio of two medians could
/// compare runs minutes apart on a machine whose speed drifts.
pub fn paired_ratio(a: &Cell, b: &Cell, path: &str) -> Option<Spread> {
    paired(a, b, path, |x, y| (y > 0.0).then(|| x / y))
}

/// What accepting gzip costs a target in throughput: per repetition, one minus its gzip run's
/// req/s over its identity run's (the two run back to back), as a spread over repetitions.
fn gzip_cost(gzip: Option<&Cell>, identity: Option<&Cell>) -> Option<Spread> {
    let r = paired_ratio(gzip?, identity?, "rps")?;
    Some(Spread {
        median: 1.0 - r.median,
        min: 1.0 - r.max,
        max: 1.0 - r.min,
        n: r.n,
    })
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// `48.2 µs` / `1.53 ms` / `2.10 s` from microseconds.
pub fn fmt_us(us: f64) -> String {
    let a = us.abs();
    if a < 1000.0 {
        format!("{us:.1} µs")
    } else if a < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

pub fn fmt_signed_us(us: f64) -> String {
    if us >= 0.0 {
        format!("+{}", fmt_us(us))
    } else {
        fmt_us(us)
    }
}

pub fn fmt_count(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub fn fmt_mib_from_kib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// `median (min–max)`, or just the median for a single value.
pub fn fmt_spread(s: Option<Spread>, f: impl Fn(f64) -> String) -> String {
    match s {
        None => "—".to_string(),
        Some(s) if s.n == 1 || s.min == s.max => f(s.median),
        Some(s) => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
    }
}

fn ratio(a: Option<Spread>, b: Option<Spread>) -> Option<f64> {
    let (a, b) = (a?.median, b?.median);
    if b > 0.0 && a.is_finite() {
        Some(a / b)
    } else {
        None
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".to_string(), |r| format!("{r:.2}×"))
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header.iter().map(|_| " --- |").collect::<String>()
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn failure_row(name: &str, cell: &Cell, columns: usize) -> Option<Vec<String>> {
    if !cell.runs.is_empty() {
        return None;
    }
    let mut row = vec![name.to_string()];
    let msg = cell
        .failures
        .first()
        .map_or("no result".to_string(), |(_, m)| m.replace('|', "/"));
    row.push(format!("**FAILED**: {msg}"));
    while row.len() < columns {
        row.push(String::new());
    }
    Some(row)
}

fn errors_cell(cell: &Cell) -> String {
    let errors = cell.total("errors");
    let mut s = format!("{errors:.0}");
    if !cell.failures.is_empty() {
        let _ = write!(s, " + {} failed run(s)", cell.failures.len());
    }
    if errors > 0.0 {
        if let Some(first) = cell
            .runs
            .iter()
            .find_map(|(_, v)| v["first_error"].as_str())
        {
            let _ = write!(s, " (first: {})", first.replace('|', "/"));
        }
    }
    s
}

fn proc_cpu(cell: &Cell, name: &str) -> Option<Spread> {
    cell.spread(&format!("procs/{name}/cpu_us_per_req"))
}

fn proc_rss(cell: &Cell, name: &str) -> Option<Spread> {
    cell.spread(&format!("procs/{name}/peak_rss_kib"))
}

fn render_latency(out: &mut String, sc: &Scenario) {
    let header = [
        "target",
        "p50",
        "p99",
        "p99.9",
        "overhead p50",
        "overhead p99",
        "req/s",
        "CPU/req",
        "peak RSS",
        "errors",
    ];
    let direct = sc.cell("direct");
    let mut rows = Vec::new();
    for (name, cell) in &sc.targets {
        if let Some(row) = failure_row(name, cell, header.len()) {
            rows.push(row);
            continue;
        }
        let ovh = |p: &str| match direct {
            Some(d) if name != "direct" => fmt_spread(paired_overhead(cell, d, p), fmt_signed_us),
            _ => "—".to_string(),
        };
        rows.push(vec![
            name.clone(),
            fmt_spread(cell.spread("latency_us/p50"), fmt_us),
            fmt_spread(cell.spread("latency_us/p99"), fmt_us),
            fmt_spread(cell.spread("latency_us/p999"), fmt_us),
            ovh("latency_us/p50"),
            ovh("latency_us/p99"),
            fmt_spread(cell.spread("rps"), fmt_count),
            fmt_spread(proc_cpu(cell, "target"), fmt_us),
            fmt_spread(proc_rss(cell, "target"), fmt_mib_from_kib),
            errors_cell(cell),
        ]);
    }
    table(out, &header, &rows);
}

fn render_throughput(out: &mut String, sc: &Scenario) {
    let header = [
        "target",
        "req/s",
        "vs nginx",
        "p50",
        "p99",
        "CPU/req",
        "peak RSS",
        "mock CPU/req",
        "bytes/resp",
        "encoded resp",
        "errors",
    ];
    let nginx = sc.cell("nginx").and_then(|c| c.spread("rps"));
    let mut rows = Vec::new();
    for (name, cell) in &sc.targets {
        if let Some(row) = failure_row(name, cell, header.len()) {
            rows.push(row);
            continue;
        }
        let rps = cell.spread("rps");
        rows.push(vec![
            name.clone(),
            fmt_spread(rps, fmt_count),
            fmt_ratio(ratio(rps, nginx)),
            fmt_spread(cell.spread("latency_us/p50"), fmt_us),
            fmt_spread(cell.spread("latency_us/p99"), fmt_us),
            fmt_spread(proc_cpu(cell, "target"), fmt_us),
            fmt_spread(proc_rss(cell, "target"), fmt_mib_from_kib),
            fmt_spread(proc_cpu(cell, "upstream"), fmt_us),
            fmt_spread(cell.spread("bytes_per_response"), |x| format!("{x:.0}")),
            format!("{:.0}", cell.total("encoded_responses")),
            errors_cell(cell),
        ]);
    }
    table(out, &header, &rows);
}

fn render_stream(out: &mut String, sc: &Scenario) {
    let header = [
        "target",
        "TTFB p50",
        "TTFB p99",
        "TTFB p99 vs nginx",
        "stream p50",
        "events/stream",
        "missing [DONE]",
        "streams/s",
        "CPU/stream",
        "peak RSS",
        "errors",
    ];
    let nginx = sc.cell("nginx").and_then(|c| c.spread("ttfb_us/p99"));
    let mut rows = Vec::new();
    for (name, cell) in &sc.targets {
        if let Some(row) = failure_row(name, cell, header.len()) {
            rows.push(row);
            continue;
        }
        let ttfb99 = cell.spread("ttfb_us/p99");
        let emin = cell
            .values("events/min")
            .into_iter()
            .fold(f64::NAN, f64::min);
        let emax = cell
            .values("events/max")
            .into_iter()
            .fold(f64::NAN, f64::max);
        let events = if emin.is_nan() {
            "—".to_string()
        } else if emin == emax {
            format!("{emin:.0}")
        } else {
            format!("{emin:.0}–{emax:.0}")
        };
        rows.push(vec![
            name.clone(),
            fmt_spread(cell.spread("ttfb_us/p50"), fmt_us),
            fmt_spread(ttfb99, fmt_us),
            fmt_ratio(ratio(ttfb99, nginx)),
            fmt_spread(cell.spread("latency_us/p50"), fmt_us),
            events,
            format!("{:.0}", cell.total("done_missing")),
            fmt_spread(cell.spread("rps"), fmt_count),
            fmt_spread(proc_cpu(cell, "target"), fmt_us),
            fmt_spread(proc_rss(cell, "target"), fmt_mib_from_kib),
            errors_cell(cell),
        ]);
    }
    table(out, &header, &rows);
}

fn render_hold(out: &mut String, sc: &Scenario) {
    let header = [
        "target",
        "streams",
        "peak open",
        "completed ok",
        "all open after",
        "TTFB p99",
        "stream p50",
        "peak RSS",
        "CPU total",
        "errors",
    ];
    let mut rows = Vec::new();
    for (name, cell) in &sc.targets {
        if let Some(row) = failure_row(name, cell, header.len()) {
            rows.push(row);
            continue;
        }
        rows.push(vec![
            name.clone(),
            fmt_spread(cell.spread("hold/streams"), |x| format!("{x:.0}")),
            fmt_spread(cell.spread("hold/peak_open"), |x| format!("{x:.0}")),
            fmt_spread(cell.spread("hold/completed_ok"), |x| format!("{x:.0}")),
            fmt_spread(cell.spread("hold/all_open_s"), |x| format!("{x:.2} s")),
            fmt_spread(cell.spread("ttfb_us/p99"), fmt_us),
            fmt_spread(cell.spread("latency_us/p50"), fmt_us),
            fmt_spread(proc_rss(cell, "target"), fmt_mib_from_kib),
            fmt_spread(cell.spread("procs/target/cpu_ms"), |x| {
                format!("{:.2} s", x / 1000.0)
            }),
            errors_cell(cell),
        ]);
    }
    table(out, &header, &rows);
}

/// The target of scenario (e): `auth: keys`, a key with limits, usage records on.
pub const FULL: &str = "switchyard-full";
/// The target of scenario (f): an Anthropic-format upstream behind an OpenAI client.
pub const TRANSLATE: &str = "switchyard-translate";
/// Where (e) is compared with the bare target: id and short label.
const E_SCENARIOS: [(&str, &str); 3] = [("a", "a"), ("b-identity", "b"), ("c", "c")];
/// Where (f) is compared with the pass-through (bare) target.
const F_SCENARIOS: [(&str, &str); 2] = [("b-identity", "b"), ("c", "c")];

/// One line of the goals table.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub status: &'static str,
}

fn goal(goal: &str, measured: String, ok: Option<bool>) -> Goal {
    Goal {
        goal: goal.to_string(),
        measured,
        status: match ok {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "n/a",
        },
    }
}

impl Report {
    pub fn scenario(&self, id: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.id == id)
    }

    fn cell(&self, scenario: &str, target: &str) -> Option<&Cell> {
        self.scenario(scenario)?
            .cell(target)
            .filter(|c| !c.runs.is_empty())
    }

    /// The goals of issue 3 for `target` (Switchyard) measured against nginx in the same run.
    pub fn goals(&self, target: &str) -> Vec<Goal> {
        let mut g = Vec::new();
        let sy = |s: &str| self.cell(s, target);
        let ng = |s: &str| self.cell(s, "nginx");
        let direct = self.cell("a", "direct");

        for (p, label) in [("p50", "p50"), ("p99", "p99")] {
            let path = format!("latency_us/{p}");
            let (so, no) = match (sy("a"), ng("a"), direct) {
                (Some(s), Some(n), Some(d)) => {
                    (paired_overhead(s, d, &path), paired_overhead(n, d, &path))
                }
                _ => (None, None),
            };
            let measured = match (so, no) {
                (Some(s), Some(n)) => format!(
                    "{} vs nginx {} ({})",
                    fmt_signed_us(s.median),
                    fmt_signed_us(n.median),
                    if n.median > 0.0 {
                        format!("{:.2}×", s.median / n.median)
                    } else {
                        "nginx overhead not measurable".to_string()
                    }
                ),
                _ => "—".to_string(),
            };
            let ok = match (so, no) {
                (Some(s), Some(n)) if n.median > 0.0 => Some(s.median <= 2.0 * n.median),
                _ => None,
            };
            g.push(goal(
                &format!("(a) c=1 overhead {label} ≤ 2× nginx's"),
                measured,
                ok,
            ));
        }

        let rps = |c: Option<&Cell>, s| c.and_then(|c: &Cell| c.spread(s));
        let r = ratio(rps(sy("b-identity"), "rps"), rps(ng("b-identity"), "rps"));
        g.push(goal(
            "(b) c=64 throughput ≥ 0.8× nginx",
            fmt_ratio(r),
            r.map(|r| r >= 0.8),
        ));
        let r = ratio(
            rps(sy("b-identity"), "procs/target/cpu_us_per_req"),
            rps(ng("b-identity"), "procs/target/cpu_us_per_req"),
        );
        g.push(goal(
            "(b) c=64 CPU per request ≤ 1.5× nginx",
            fmt_ratio(r),
            r.map(|r| r <= 1.5),
        ));
        // Each target's gzip run follows its identity run (`bench/run`), so the cost is taken
        // per repetition, from runs seconds apart, and its median over repetitions is judged.
        let cost = gzip_cost(sy("b-gzip"), sy("b-identity"));
        let ng_cost = gzip_cost(ng("b-gzip"), ng("b-identity"));
        let pct = |s: Option<Spread>| fmt_spread(s, |x| format!("{:.1}%", x * 100.0));
        g.push(goal(
            "(b) accepting gzip costs ≤ 10% of throughput",
            match (cost, ng_cost) {
                (Some(_), Some(_)) => format!("{} (nginx {})", pct(cost), pct(ng_cost)),
                (Some(_), None) => pct(cost),
                _ => "—".to_string(),
            },
            cost.map(|c| c.median <= 0.10),
        ));
        let stream = sy("c");
        let integrity = stream.map(|c| (c.total("errors"), c.total("done_missing")));
        g.push(goal(
            "(c) every event relayed, [DONE] included (no stream errors)",
            integrity.map_or("—".to_string(), |(e, d)| {
                format!("{e:.0} errors, {d:.0} missing [DONE]")
            }),
            integrity.map(|(e, d)| e == 0.0 && d == 0.0),
        ));
        let r = ratio(rps(stream, "ttfb_us/p99"), rps(ng("c"), "ttfb_us/p99"));
        g.push(goal(
            "(c) c=64 streaming TTFB p99 ≤ 2× nginx",
            fmt_ratio(r),
            r.map(|r| r <= 2.0),
        ));
        let peak = ["b-identity", "b-gzip", "c"]
            .iter()
            .filter_map(|s| rps(sy(s), "procs/target/peak_rss_kib"))
            .map(|s| s.median)
            .fold(None, |acc: Option<f64>, x| {
                Some(acc.map_or(x, |a| a.max(x)))
            });
        g.push(goal(
            "(b)(c) peak RSS ≤ 40 MiB at c=64",
            peak.map_or("—".to_string(), fmt_mib_from_kib),
            peak.map(|p| p <= 40.0 * 1024.0),
        ));
        let hold = sy("d");
        let held = hold.and_then(|c| {
            Some((
                c.spread("procs/target/peak_rss_kib")?.median,
                c.total("errors") + c.failures.len() as f64,
                c.spread("hold/streams")?.median,
                c.spread("hold/completed_ok")?.min,
            ))
        });
        g.push(goal(
            "(d) 10,000 concurrent streams held with ≤ 250 MiB and no error",
            held.map_or("—".to_string(), |(rss, e, n, ok)| {
                format!(
                    "{n:.0} streams: {}, {e:.0} errors, {ok:.0} completed",
                    fmt_mib_from_kib(rss)
                )
            }),
            held.map(|(rss, e, n, ok)| rss <= 250.0 * 1024.0 && e == 0.0 && ok >= n),
        ));
        g.push(self.variant_goal(
            "(e) keys, limits and usage writer: CPU per request ≤ 1.3× bare",
            target,
            FULL,
            &E_SCENARIOS,
            1.3,
        ));
        g.push(self.variant_goal(
            "(f) translation path: CPU per request ≤ 3× pass-through",
            target,
            TRANSLATE,
            &F_SCENARIOS,
            3.0,
        ));
        g
    }

    /// Whether `target` appears at all, and if so the first reason it failed when it has no
    /// result anywhere.
    fn presence(&self, target: &str) -> Option<Option<String>> {
        let cells: Vec<&Cell> = self
            .scenarios
            .iter()
            .filter_map(|sc| sc.cell(target))
            .collect();
        if cells.is_empty() {
            return None;
        }
        if cells.iter().any(|c| !c.runs.is_empty()) {
            return Some(None);
        }
        Some(Some(
            cells
                .iter()
                .find_map(|c| c.failures.first())
                .map_or("no result".to_string(), |(_, m)| m.clone()),
        ))
    }

    /// CPU per request of `variant` over `bare` in each of `scenarios` (medians of the same
    /// run): the goal is met when every measured ratio is at most `limit`.
    fn variant_goal(
        &self,
        label: &str,
        bare: &str,
        variant: &str,
        scenarios: &[(&str, &str)],
        limit: f64,
    ) -> Goal {
        match self.presence(variant) {
            None => return goal(label, format!("not run (no `{variant}` target)"), None),
            Some(Some(err)) => {
                let short: String = err.chars().take(120).collect();
                return goal(
                    label,
                    format!("`{variant}` failed: {}", short.replace('|', "/")),
                    None,
                );
            }
            Some(None) => {}
        }
        let cpu = "procs/target/cpu_us_per_req";
        let ratios: Vec<(&str, f64)> = scenarios
            .iter()
            .filter_map(|(id, short)| {
                let r = ratio(
                    self.cell(id, variant)?.spread(cpu),
                    self.cell(id, bare)?.spread(cpu),
                )?;
                Some((*short, r))
            })
            .collect();
        if ratios.is_empty() {
            return goal(label, "—".to_string(), None);
        }
        let worst = ratios.iter().map(|(_, r)| *r).fold(f64::MIN, f64::max);
        let parts: Vec<String> = ratios.iter().map(|(s, r)| format!("{s} {r:.2}×")).collect();
        goal(
            label,
            format!("{} (worst {worst:.2}×)", parts.join(", ")),
            Some(worst <= limit),
        )
    }

    /// `variant` against `bare` in the same run, one row per scenario of `scenarios` that both
    /// ran: CPU per request (per stream in (c)) and its ratio, req/s (streams/s) and its ratio.
    pub fn variant_vs_bare(
        &self,
        bare: &str,
        variant: &str,
        scenarios: &[(&str, &str)],
    ) -> Vec<[String; 7]> {
        let cpu = "procs/target/cpu_us_per_req";
        let mut rows = Vec::new();
        for (id, _) in scenarios {
            let (Some(b), Some(v)) = (self.cell(id, bare), self.cell(id, variant)) else {
                continue;
            };
            let label = match *id {
                "a" => "(a) c=1 latency: per request",
                "b-identity" => "(b) throughput, identity: per request",
                "c" => "(c) streaming: per stream",
                other => other,
            };
            let (bc, vc) = (b.spread(cpu), v.spread(cpu));
            let (br, vr) = (b.spread("rps"), v.spread("rps"));
            rows.push([
                label.to_string(),
                fmt_spread(bc, fmt_us),
                fmt_spread(vc, fmt_us),
                fmt_ratio(ratio(vc, bc)),
                fmt_spread(br, fmt_count),
                fmt_spread(vr, fmt_count),
                fmt_ratio(ratio(vr, br)),
            ]);
        }
        rows
    }

    /// The cost of Switchyard's per-request log line: `switchyard-log` (the default
    /// `log_level: info`) against `switchyard` (`warn`, no line per request) in the same run.
    /// Rows: (what, with warn, with info, difference); empty when `switchyard-log` did not run.
    pub fn log_cost(&self) -> Vec<[String; 4]> {
        let mut rows = Vec::new();
        let pair = |sc: &str, path: &str| -> Option<(f64, f64)> {
            let warn = self.cell(sc, "switchyard")?.spread(path)?.median;
            let info = self.cell(sc, "switchyard-log")?.spread(path)?.median;
            Some((warn, info))
        };
        let pct = |w: f64, i: f64| {
            if w > 0.0 {
                format!("{:+.1}%", (i / w - 1.0) * 100.0)
            } else {
                "—".to_string()
            }
        };
        if let (Some(sy), Some(lg), Some(d)) = (
            self.cell("a", "switchyard"),
            self.cell("a", "switchyard-log"),
            self.cell("a", "direct"),
        ) {
            let path = "latency_us/p50";
            if let (Some(w), Some(i)) = (paired_overhead(sy, d, path), paired_overhead(lg, d, path))
            {
                rows.push([
                    "(a) c=1 overhead p50".to_string(),
                    fmt_signed_us(w.median),
                    fmt_signed_us(i.median),
                    fmt_signed_us(i.median - w.median),
                ]);
            }
        }
        if let Some((w, i)) = pair("b-identity", "rps") {
            rows.push([
                "(b) c=64 req/s".to_string(),
                fmt_count(w),
                fmt_count(i),
                pct(w, i),
            ]);
        }
        if let Some((w, i)) = pair("b-identity", "procs/target/cpu_us_per_req") {
            rows.push([
                "(b) c=64 CPU per request".to_string(),
                fmt_us(w),
                fmt_us(i),
                format!("{} ({})", fmt_signed_us(i - w), pct(w, i)),
            ]);
        }
        if let Some((w, i)) = pair("c", "procs/target/cpu_us_per_req") {
            rows.push([
                "(c) c=64 CPU per stream".to_string(),
                fmt_us(w),
                fmt_us(i),
                format!("{} ({})", fmt_signed_us(i - w), pct(w, i)),
            ]);
        }
        rows
    }

    /// Problems that make a smoke run fail: failed targets or tools, errors, empty results.
    pub fn problems(&self) -> Vec<String> {
        let mut p: Vec<String> = self.bad_lines.clone();
        for sc in &self.scenarios {
            for (name, cell) in &sc.targets {
                for (rep, msg) in &cell.failures {
                    p.push(format!("{} / {name} / rep {rep}: {msg}", sc.id));
                }
                for (rep, v) in &cell.runs {
                    let errors = num(v, "errors").unwrap_or(0.0);
                    let ok = num(v, "ok").unwrap_or(0.0);
                    if errors > 0.0 {
                        p.push(format!(
                            "{} / {name} / rep {rep}: {errors:.0} errors (first: {})",
                            sc.id,
                            v["first_error"].as_str().unwrap_or("?")
                        ));
                    }
                    if ok == 0.0 {
                        p.push(format!(
                            "{} / {name} / rep {rep}: no successful request",
                            sc.id
                        ));
                    }
                }
            }
        }
        p
    }

    /// CPU used by other processes during the measured windows (median and max over all runs).
    pub fn background(&self) -> Option<Spread> {
        let all: Vec<f64> = self
            .scenarios
            .iter()
            .flat_map(|sc| sc.targets.iter())
            .flat_map(|(_, c)| c.values("machine/other_cores"))
            .collect();
        spread(&all)
    }

    fn render_background(&self, out: &mut String) {
        let Some(all) = self.background() else {
            return;
        };
        let _ = writeln!(
            out,
            "## Background load
"
        );
        let _ = writeln!(
            out,
            "CPU time (in cores) that processes other than the load generator, the mock and the \
             target used during each measured window, from /proc/stat (interrupt and softirq \
             time excluded). Anything well above 0 means someone else was using the machine and \
             the figures above are noisy.\n"
        );
        let mut targets: Vec<&str> = Vec::new();
        for sc in &self.scenarios {
            for (t, _) in &sc.targets {
                if !targets.contains(&t.as_str()) {
                    targets.push(t);
                }
            }
        }
        let mut header = vec!["scenario"];
        header.extend(targets.iter().copied());
        let rows: Vec<Vec<String>> = self
            .scenarios
            .iter()
            .filter(|sc| !sc.targets.is_empty())
            .map(|sc| {
                let mut row = vec![sc.id.clone()];
                for t in &targets {
                    row.push(fmt_spread(
                        sc.cell(t).and_then(|c| c.spread("machine/other_cores")),
                        |x| format!("{x:.2}"),
                    ));
                }
                row
            })
            .collect();
        table(out, &header, &rows);
        let _ = writeln!(
            out,
            "Over all runs: median {:.2}, max {:.2} cores.\n",
            all.median, all.max
        );
    }

    fn render_variant(
        &self,
        out: &mut String,
        title: &str,
        intro: &str,
        (bare_label, variant): (&str, &str),
        scenarios: &[(&str, &str)],
    ) {
        if self.presence(variant).is_none() {
            return;
        }
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(out, "{intro}\n");
        let rows: Vec<Vec<String>> = self
            .variant_vs_bare("switchyard", variant, scenarios)
            .into_iter()
            .map(Vec::from)
            .collect();
        if rows.is_empty() {
            let why = match self.presence(variant) {
                Some(Some(err)) => format!("**FAILED**: {err}"),
                _ => "No scenario where both `switchyard` and this target ran.".to_string(),
            };
            let _ = writeln!(out, "{why}\n");
            return;
        }
        let cpu_b = format!("CPU {bare_label}");
        let cpu_v = format!("CPU {variant}");
        let rps_b = format!("req/s {bare_label}");
        let rps_v = format!("req/s {variant}");
        table(
            out,
            &[
                "scenario",
                &cpu_b,
                &cpu_v,
                "CPU ratio",
                &rps_b,
                &rps_v,
                "req/s ratio",
            ],
            &rows,
        );
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Switchyard benchmark\n");
        for (k, v) in &self.meta {
            if k == "command" {
                let _ = writeln!(out, "- {k}: `{v}`");
            } else {
                let _ = writeln!(out, "- {k}: {v}");
            }
        }
        if !self.meta.is_empty() {
            out.push('\n');
        }
        if let Some(bg) = self.background() {
            if bg.median > 0.1 || bg.max > 0.3 {
                let _ = writeln!(
                    out,
                    "**Warning:** other processes used a median of {:.2} CPU cores (max {:.2}) \
                     while this ran (see Background load); the figures are noisy.\n",
                    bg.median, bg.max
                );
            }
        }
        let _ = writeln!(
            out,
            "Cells are medians over repetitions with (min–max). Overheads are per repetition \
             (target minus the direct run of the same repetition). CPU/req is the target's \
             utime+stime over the measured window (in runs taking turns: over each of its \
             turns together with the turn after it, so that deferred work counts and idle time \
             during other targets' turns does not) divided by successful \
             requests (10 ms tick resolution); peak RSS is the target's VmHWM (summed over its processes), the target \
             being restarted for every run.\n"
        );
        if self
            .scenarios
            .iter()
            .any(|s| s.cell("switchyard").is_some())
        {
            let _ = writeln!(
                out,
                "## Goals of issue 3 (Switchyard against nginx, this run)\n"
            );
            let rows: Vec<Vec<String>> = self
                .goals("switchyard")
                .into_iter()
                .map(|g| vec![g.goal, g.measured, g.status.to_string()])
                .collect();
            table(&mut out, &["goal", "measured", "status"], &rows);
        }
        let log_cost = self.log_cost();
        if !log_cost.is_empty() {
            let _ = writeln!(out, "## Cost of the per-request log line\n");
            let _ = writeln!(
                out,
                "Target `switchyard` runs with `telemetry.log_level: warn`, the counterpart of \
                 nginx's `access_log off`; `switchyard-log` with Switchyard's default `info`, \
                 which writes one line per request (through the non-blocking writer, to a \
                 file). Medians of the same run.\n"
            );
            let rows: Vec<Vec<String>> = log_cost.into_iter().map(Vec::from).collect();
            table(
                &mut out,
                &[
                    "measure",
                    "switchyard (warn)",
                    "switchyard-log (info)",
                    "log line costs",
                ],
                &rows,
            );
        }
        self.render_variant(
            &mut out,
            "(e) keys, limits and usage writer vs bare",
            "Target `switchyard-full`: `auth: keys` (every request carries the key), one key with \
             `rpm`, `tpm` and `max_concurrency` limits far above the load (so the limiter and \
             the token estimate run on every request but never refuse) and usage records on \
             (the default). Target `switchyard` (bare): `auth: none`, \
             `server.usage_records: false`. Both `log_level: warn`. Medians of the same run; a \
             ratio above 1 means the full configuration costs more.",
            ("bare", FULL),
            &E_SCENARIOS,
        );
        self.render_variant(
            &mut out,
            "(f) translation path vs pass-through",
            "Target `switchyard-translate`: the same OpenAI chat request, routed to a \
             `type: anthropic` provider: rendered as an Anthropic Messages request to the mock's \
             `POST /v1/messages`, the answer (or the Anthropic event stream) translated back to \
             OpenAI's format. Target `switchyard` (pass-through): an `openai-compatible` \
             provider. Otherwise the same bare configuration. Medians of the same run.",
            ("pass-through", TRANSLATE),
            &F_SCENARIOS,
        );
        for sc in &self.scenarios {
            let _ = writeln!(out, "## {}\n", sc.title);
            if let Some(note) = &sc.note {
                let _ = writeln!(out, "{note}\n");
            }
            match sc.kind.as_str() {
                "latency" => render_latency(&mut out, sc),
                "throughput" => render_throughput(&mut out, sc),
                "stream" => render_stream(&mut out, sc),
                "hold" => render_hold(&mut out, sc),
                _ => {}
            }
        }
        self.render_background(&mut out);
        let problems = self.problems();
        if !problems.is_empty() {
            let _ = writeln!(out, "## Problems\n");
            for p in problems {
                let _ = writeln!(out, "- {}", p.replace('\n', " "));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn line(scenario: &str, kind: &str, target: &str, rep: u64, p50: f64, rps: f64) -> String {
        serde_json::json!({
            "scenario": scenario, "kind": kind, "title": scenario, "target": target, "rep": rep,
            "result": {
                "ok": 100, "errors": 0, "rps": rps,
                "latency_us": {"p50": p50, "p99": p50 * 2.0, "p999": p50 * 3.0},
                "ttfb_us": {"p50": p50, "p99": p50 * 2.0},
                "events": {"min": 22, "max": 22}, "done_missing": 0,
                "hold": {"streams": 10, "completed_ok": 10, "peak_open": 10},
                "procs": {"target": {"cpu_us_per_req": 20.0, "peak_rss_kib": 10240, "cpu_ms": 5.0}}
            }
        })
        .to_string()
    }

    #[test]
    fn spreads() {
        assert_eq!(spread(&[]), None);
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[1.0, 2.0, 3.0, 10.0]).unwrap().median, 2.5);
        assert_eq!(spread(&[f64::NAN]), None);
    }

    #[test]
    fn paired_overheads_and_goals() {
        let mut input = String::from(r#"{"meta": [["command", "bench/run"], ["reps", 2]]}"#);
        input.push('\n');
        for rep in 1..=2 {
            let d = 50.0 + rep as f64;
            input += &format!("{}\n", line("a", "latency", "direct", rep, d, 10000.0));
            input += &format!("{}\n", line("a", "latency", "nginx", rep, d + 30.0, 9000.0));
            input += &format!(
                "{}\n",
                line("a", "latency", "switchyard", rep, d + 50.0, 8000.0)
            );
            for s in ["b-identity", "b-gzip"] {
                input += &format!("{}\n", line(s, "throughput", "nginx", rep, 900.0, 30000.0));
                input += &format!(
                    "{}\n",
                    line(s, "throughput", "switchyard", rep, 900.0, 27000.0)
                );
            }
            input += &format!("{}\n", line("c", "stream", "nginx", rep, 500.0, 600.0));
            input += &format!("{}\n", line("c", "stream", "switchyard", rep, 600.0, 600.0));
        }
        input += r#"{"scenario":"d","kind":"hold","title":"hold","target":"switchyard","rep":1,"error":"did not start"}"#;
        input.push('\n');
        input += "not json\n";
        let r = parse(&input);
        assert_eq!(r.meta.len(), 2);
        assert_eq!(r.bad_lines.len(), 1);
        let a = r.scenario("a").unwrap();
        let o = paired_overhead(
            a.cell("switchyard").unwrap(),
            a.cell("direct").unwrap(),
            "latency_us/p50",
        )
        .unwrap();
        assert_eq!((o.median, o.min, o.max), (50.0, 50.0, 50.0));
        let goals = r.goals("switchyard");
        let status: Vec<&str> = goals.iter().map(|g| g.status).collect();
        // p50 50 vs 30: 1.67× met; p99 (2×p50 paired) 100+... met; throughput 0.9 met;
        // CPU 1.0 met; gzip 0% met; stream ok; TTFB 1.2× met; RSS 10 MiB met; hold failed -> n/a.
        assert_eq!(
            status,
            vec!["met", "met", "met", "met", "met", "met", "met", "met", "n/a", "n/a", "n/a"]
        );
        let md = r.to_markdown();
        assert!(md.contains("`bench/run`"));
        assert!(md.contains("+50.0 µs"));
        assert!(md.contains("**FAILED**: did not start"));
        assert!(md.contains("0.90×"));
        let problems = r.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    /// The gzip cost is judged per repetition (each gzip run follows its identity run): a
    /// slow phase of the machine in one repetition's gzip run is not read as a cost, and a
    /// real cost in most repetitions is.
    #[test]
    fn gzip_cost_is_paired_by_repetition() {
        let report = |identity: [f64; 3], gzip: [f64; 3]| {
            let mut input = String::new();
            for rep in 1..=3u64 {
                let i = rep as usize - 1;
                for (s, rps) in [("b-identity", identity[i]), ("b-gzip", gzip[i])] {
                    input += &format!("{}\n", line(s, "throughput", "switchyard", rep, 900.0, rps));
                }
            }
            let r = parse(&input);
            let g = r.goals("switchyard");
            let gzip = g.iter().find(|g| g.goal.contains("gzip")).unwrap().clone();
            (gzip.measured, gzip.status)
        };
        // Costs 2%, 2% and 28%: the median is 2%. The medians' ratio (19,600 / 25,000) would
        // have said 21.6%.
        let (measured, status) = report([30000.0, 20000.0, 25000.0], [29400.0, 19600.0, 18000.0]);
        assert_eq!(status, "met", "{measured}");
        assert_eq!(measured, "2.0% (2.0%–28.0%)");
        // Costs 33.3%, 30% and 3.3%: not met.
        let (measured, status) = report([30000.0; 3], [20000.0, 21000.0, 29000.0]);
        assert_eq!(status, "**not met**", "{measured}");
        assert!(measured.starts_with("30.0% "), "{measured}");
    }

    #[test]
    fn log_line_cost() {
        let mut input = String::new();
        for rep in 1..=3 {
            input += &format!("{}\n", line("a", "latency", "direct", rep, 40.0, 9000.0));
            input += &format!(
                "{}\n",
                line("a", "latency", "switchyard", rep, 90.0, 8000.0)
            );
            input += &format!(
                "{}\n",
                line("a", "latency", "switchyard-log", rep, 100.0, 7000.0)
            );
            input += &format!(
                "{}\n",
                line(
                    "b-identity",
                    "throughput",
                    "switchyard",
                    rep,
                    900.0,
                    20000.0
                )
            );
            input += &format!(
                "{}\n",
                line(
                    "b-identity",
                    "throughput",
                    "switchyard-log",
                    rep,
                    900.0,
                    15000.0
                )
            );
        }
        let r = parse(&input);
        let rows = r.log_cost();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0][3], "+10.0 µs");
        assert_eq!(rows[1][3], "-25.0%");
        let md = r.to_markdown();
        assert!(md.contains("## Cost of the per-request log line"), "{md}");
        assert!(parse("").log_cost().is_empty());
    }

    fn with_cpu(scenario: &str, kind: &str, target: &str, rep: u64, cpu: f64, rps: f64) -> String {
        let mut v: Value =
            serde_json::from_str(&line(scenario, kind, target, rep, 100.0, rps)).unwrap();
        v["result"]["procs"]["target"]["cpu_us_per_req"] = serde_json::json!(cpu);
        v.to_string()
    }

    #[test]
    fn keys_and_translation_against_bare() {
        let mut input = String::new();
        for rep in 1..=3 {
            let jitter = rep as f64;
            for (sc, kind) in [
                ("a", "latency"),
                ("b-identity", "throughput"),
                ("c", "stream"),
            ] {
                input += &format!(
                    "{}\n",
                    with_cpu(sc, kind, "switchyard", rep, 40.0 + jitter, 10000.0)
                );
                input += &format!("{}\n", with_cpu(sc, kind, FULL, rep, 48.0 + jitter, 9000.0));
                if sc != "a" {
                    input += &format!(
                        "{}\n",
                        with_cpu(sc, kind, TRANSLATE, rep, 130.0 + jitter, 5000.0)
                    );
                }
            }
        }
        let r = parse(&input);
        let rows = r.variant_vs_bare("switchyard", FULL, &E_SCENARIOS);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0][1], "42.0 µs (41.0 µs–43.0 µs)");
        assert_eq!(rows[0][3], "1.19×");
        assert_eq!(rows[1][6], "0.90×");
        let rows = r.variant_vs_bare("switchyard", TRANSLATE, &F_SCENARIOS);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0][3], "3.14×");
        let goals = r.goals("switchyard");
        let e = goals.iter().find(|g| g.goal.starts_with("(e)")).unwrap();
        assert_eq!(e.status, "met", "{e:?}");
        assert_eq!(e.measured, "a 1.19×, b 1.19×, c 1.19× (worst 1.19×)");
        let f = goals.iter().find(|g| g.goal.starts_with("(f)")).unwrap();
        assert_eq!(f.status, "**not met**", "{f:?}");
        let md = r.to_markdown();
        assert!(
            md.contains("## (e) keys, limits and usage writer vs bare"),
            "{md}"
        );
        assert!(
            md.contains("## (f) translation path vs pass-through"),
            "{md}"
        );
        assert!(md.contains("| CPU pass-through |"), "{md}");

        // Not run at all: no section, goal n/a; failed to start: n/a with the reason.
        let bare_only: String = input
            .lines()
            .filter(|l| !l.contains(FULL) && !l.contains(TRANSLATE))
            .map(|l| format!("{l}\n"))
            .collect();
        let r = parse(&bare_only);
        let e = r
            .goals("switchyard")
            .into_iter()
            .find(|g| g.goal.starts_with("(e)"))
            .unwrap();
        assert_eq!(
            (e.status, e.measured.as_str()),
            ("n/a", "not run (no `switchyard-full` target)")
        );
        assert!(!r.to_markdown().contains("## (e)"));
        let failed = format!(
            "{bare_only}{}\n",
            r#"{"scenario":"a","kind":"latency","title":"a","target":"switchyard-full","rep":1,"error":"did not start"}"#
        );
        let r = parse(&failed);
        let e = r
            .goals("switchyard")
            .into_iter()
            .find(|g| g.goal.starts_with("(e)"))
            .unwrap();
        assert_eq!(e.status, "n/a");
        assert!(e.measured.contains("did not start"), "{e:?}");
        assert!(r.to_markdown().contains("**FAILED**: did not start"));
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_us(48.25), "48.2 µs");
        assert_eq!(fmt_us(1530.0), "1.53 ms");
        assert_eq!(fmt_signed_us(-3.0), "-3.0 µs");
        assert_eq!(
            fmt_spread(spread(&[1.0, 2.0, 3.0]), |x| format!("{x:.0}")),
            "2 (1–3)"
        );
        assert_eq!(fmt_spread(None, |x| format!("{x}")), "—");
    }
}
