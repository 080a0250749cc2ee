//! The `mock-provider` binary: `mock-provider [--host 127.0.0.1] [--port 0] [--api-key KEY]`.
//!
//! Prints exactly one line, `mock-provider listening on http://HOST:PORT`, then serves until
//! killed. All behaviour lives in the library; this file only parses arguments.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use mock_provider::{MockServer, Options};

const USAGE: &str = "usage: mock-provider [--host 127.0.0.1] [--port 0] [--api-key KEY]";

struct Args {
    host: IpAddr,
    port: u16,
    api_key: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        host: IpAddr::from([127, 0, 0, 1]),
        port: 0,
        api_key: None,
    };
    while let Some(flag) = args.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        if name == "--help" || name == "-h" {
            return Err(USAGE.to_string());
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{name} needs a value\n{USAGE}")),
        };
        match name.as_str() {
            "--host" if value == "localhost" => parsed.host = IpAddr::from([127, 0, 0, 1]),
            "--host" => {
                parsed.host = value
                    .parse()
                    .map_err(|_| format!("--host: not an IP address: {value}"))?
            }
            "--port" => {
                parsed.port = value
                    .parse()
                    .map_err(|_| format!("--port: not a port number: {value}"))?
            }
            "--api-key" => parsed.api_key = Some(value),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        api_key: args.api_key,
    };
    let server = match MockServer::bind(SocketAddr::new(args.host, args.port), opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "mock-provider: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "mock-provider listening on {}", server.url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    // Serve until killed; Ctrl-C ends it cleanly too.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    drop(server);
    ExitCode::SUCCESS
}
