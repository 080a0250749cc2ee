//! `sy-report`: renders the JSON lines written by `bench/run` as a markdown report.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "sy-report",
    about = "Render bench/run results (JSON lines) as markdown"
)]
struct Args {
    /// The JSON lines file written by bench/run.
    results: PathBuf,
    /// Write the markdown here as well as to stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 1 if a target or tool failed, a run had errors or served nothing (for --smoke).
    #[arg(long)]
    check: bool,
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sy-report: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<i32> {
    let args = Args::parse();
    let input = std::fs::read_to_string(&args.results)
        .with_context(|| format!("reading {}", args.results.display()))?;
    let report = sy_bench::report::parse(&input);
    let md = report.to_markdown();
    print!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    if args.check {
        let problems = report.problems();
        if !problems.is_empty() {
            eprintln!("sy-report: check failed:");
            for p in &problems {
                eprintln!("  - {p}");
            }
            return Ok(1);
        }
        if report.scenarios.is_empty() {
            eprintln!("sy-report: check failed: no results");
            return Ok(1);
        }
    }
    Ok(0)
}
