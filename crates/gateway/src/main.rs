//! `switchyard`: command line → configuration → app → serve.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard::{config, server};

// mimalloc replaces `malloc` and `free` for the whole process (its `override` feature), and Rust
// allocates through them with the default (`System`) allocator: `malloc(size)` for every layout
// aligned to 16 bytes or less. (`mimalloc::MiMalloc` as the global allocator would call
// `mi_malloc_aligned` for every allocation, whose slow path is taken for most blocks over 1 KiB
// and every alignment over 16: 75 instructions per allocation instead of ~20.)

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "AI model gateway: one entry point to many AI models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file (default: $SWITCHYARD_CONFIG, else ./switchyard.yaml, else the
        /// zero-config default).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration without starting anything; exit 0 if valid, 1 if not.
    Check {
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Manage virtual keys in the configured store.
    Keys {
        #[arg(short = 'c', long = "config", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: switchyard::cli::KeysAction,
    },
}

fn main() -> ExitCode {
    // Referenced so the linker keeps mimalloc (and with it the `malloc` it provides).
    std::hint::black_box(mimalloc::MiMalloc.version());
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(config),
        Command::Serve { config } => {
            allocator_options();
            serve(config)
        }
        Command::Keys { config, action } => switchyard::cli::keys(config, action),
    }
}

/// mimalloc reads its options from the environment as the process starts, before `main`. On
/// Linux its default commits arena memory eagerly, and memory committed that way stays resident
/// once touched: holding 4,000 streams, the gateway's peak RSS grows by 55 KiB per stream with
/// the default and by 34 KiB with `MIMALLOC_ARENA_EAGER_COMMIT=0`, at no measurable CPU cost
/// (`bench/run`, scenario d). So `serve` starts itself again, once, with that setting, unless
/// the variable is already set (set it to `2` to keep mimalloc's default). The process id,
/// arguments and descriptors stay the same; if the re-exec fails, it runs as it is.
fn allocator_options() {
    use std::os::unix::process::CommandExt as _;
    const VAR: &str = "MIMALLOC_ARENA_EAGER_COMMIT";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    // Only returns if the exec failed.
    let _ = cmd.args(args).env(VAR, "0").exec();
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = config::locate(path.as_deref()) else {
        println!("no configuration file (-c FILE, SWITCHYARD_CONFIG or ./switchyard.yaml): the zero-config default is valid");
        return ExitCode::SUCCESS;
    };
    match config::load(&path) {
        Ok(c) => {
            let traces = c.telemetry.otlp.as_ref().map_or(String::new(), |o| {
                format!(
                    ", traces to {}",
                    switchyard::services::redact(&o.traces_url.to_string())
                )
            });
            println!(
                "{}: valid ({} providers, {} models, {} keys{traces})",
                path.display(),
                c.providers.len(),
                c.models.len(),
                c.keys.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: {} problem(s)", path.display(), e.problems.len());
            ExitCode::from(1)
        }
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match config::locate(path.as_deref()) {
        Some(p) => match config::load(&p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        },
        None => config::zero_config(),
    };
    let _log_guard = init_logging(&config.telemetry);
    // Connections are served by one single-threaded runtime per CPU (`server::worker`); this
    // one accepts them and runs the gateway's background tasks.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = match server::worker::Workers::start(cpus) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("cannot start the serving threads: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        let listen = config.listen.clone();
        if config.auth == config::Auth::None {
            tracing::warn!("auth: none — the data plane is open to anyone who can reach {listen}");
        }
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                return ExitCode::from(1);
            }
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(listen);
        let app = match switchyard::services::start(config).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        // Scripts and tests read this line to find the port.
        println!("switchyard listening on http://{addr}");
        let _ = std::io::stdout().flush();
        server::serve_on(
            app.clone(),
            listener,
            server::signals(app.clone()),
            workers.handles(),
        )
        .await;
        switchyard::services::stop(&app).await;
        ExitCode::SUCCESS
    });
    workers.stop();
    code
}

/// Logs go to stderr through a non-blocking, bounded writer: a slow terminal never stalls a
/// request. The guard flushes what is queued on exit.
fn init_logging(t: &config::Telemetry) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .or_else(|_| EnvFilter::try_new(t.log_level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    if t.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}
