//! The `switchyard keys` command line: keys created, listed and revoked in the configured store,
//! the same store the gateway replicas read (they see a change within a second or two).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::{config, keys, services};

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key and print its secret (shown this once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        team: Option<String>,
        /// Allowed models, comma separated (glob patterns allowed).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        #[arg(long)]
        rpm: Option<u64>,
        #[arg(long)]
        tpm: Option<u64>,
        #[arg(long = "max-concurrency")]
        max_concurrency: Option<u64>,
        /// USD.
        #[arg(long)]
        budget: Option<f64>,
        /// 1d, 7d, 30d or 1mo; without it the budget is for the key's lifetime.
        #[arg(long = "budget-period")]
        budget_period: Option<String>,
        /// A duration from now (30d) or a date (2027-01-31).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

pub fn keys(path: Option<PathBuf>, action: KeysAction) -> ExitCode {
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
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cannot start the runtime");
        return ExitCode::from(1);
    };
    rt.block_on(async move {
        let store = match services::connect_store(&config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        let result = run(&store, action).await;
        store.close().await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}", e.message);
                ExitCode::from(1)
            }
        }
    })
}

async fn run(store: &store::Store, action: KeysAction) -> Result<(), crate::error::Error> {
    match action {
        KeysAction::Create {
            name,
            team,
            models,
            rpm,
            tpm,
            max_concurrency,
            budget,
            budget_period,
            expires,
        } => {
            let body = keys::Body {
                name: Some(name),
                team,
                models,
                rpm,
                tpm,
                max_concurrency,
                budget,
                budget_period,
                expires_at: expires.map(serde_json::Value::String),
                metadata: None,
            };
            let (key, secret) = keys::create(store, &body).await?;
            println!("id:     {}", key.id);
            println!("name:   {}", key.name);
            println!("secret: {secret}");
            println!("The secret is shown this once; store it now.");
        }
        KeysAction::List { all } => {
            let filter = store::keys::Filter {
                team_id: None,
                include_revoked: all,
            };
            let list = store
                .keys()
                .list(&filter)
                .await
                .map_err(keys::store_error)?;
            println!(
                "{:<26} {:<24} {:<12} {:<8} {:<8} {:<10} status",
                "id", "name", "prefix", "rpm", "tpm", "budget"
            );
            for k in list {
                let dash = || "-".to_string();
                println!(
                    "{:<26} {:<24} {:<12} {:<8} {:<8} {:<10} {}",
                    k.id,
                    k.name,
                    k.prefix,
                    k.limits.rpm.map_or_else(dash, |v| v.to_string()),
                    k.limits.tpm.map_or_else(dash, |v| v.to_string()),
                    k.limits.budget_usd.map_or_else(dash, |v| format!("${v}")),
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        KeysAction::Revoke { id } => {
            let k = store.keys().revoke(&id).await.map_err(keys::store_error)?;
            println!("revoked {} ({})", k.id, k.name);
        }
    }
    Ok(())
}
