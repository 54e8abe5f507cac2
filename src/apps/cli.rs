//! `resonance apps ...`: list, add, remove and rotate the secret of apps in
//! the config file (edited in place, comments kept) or in the apps
//! database; `migrate` creates the database table.
//!
//! The target is the database when `--database` (or
//! `RESONANCE_APPS_DATABASE`) is given, else the config file. A running
//! server picks database changes up by itself; after a file change, run
//! `resonance reload`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::db::{self, AppsDb, Row};
use crate::config::Config;
use crate::core::app::AppConfig;

#[derive(Args, Debug)]
pub struct AppsArgs {
    /// The config file to edit (when no database is given).
    #[arg(
        long,
        env = "RESONANCE_CONFIG",
        default_value = "resonance.toml",
        global = true
    )]
    pub config: PathBuf,
    /// Work on this apps database instead of the file
    /// (`postgres://...` or `mysql://...`).
    #[arg(long, env = "RESONANCE_APPS_DATABASE", global = true)]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: AppsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// List the apps (secrets masked unless --show-secrets).
    List {
        #[arg(long)]
        show_secrets: bool,
    },
    /// Add an app; id, key and secret are generated unless given.
    Add {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        /// Any other [[apps]] option, as name=value (a TOML value:
        /// `max_connections=500`, `client_events=false`,
        /// `allowed_origins=["https://example.com"]`); repeatable.
        #[arg(long = "option", value_name = "NAME=VALUE")]
        options: Vec<String>,
        /// Add it disabled (connections refused with 4003).
        #[arg(long)]
        disabled: bool,
    },
    /// Remove an app (its connections are closed with 4001).
    Remove { id: String },
    /// Give an app a new secret and print it.
    RotateSecret { id: String },
    /// Create the resonance_apps table (and the NOTIFY trigger on
    /// PostgreSQL); safe to run again.
    Migrate,
}

/// Runs `resonance apps ...`.
pub fn run(args: AppsArgs) -> ExitCode {
    let result = match &args.database {
        Some(url) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(on_database(url, args.command)),
            Err(e) => Err(format!("cannot start the runtime: {e}")),
        },
        None => on_file(&args.config, args.command),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("resonance apps: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The options given as `name=value`, as a JSON object.
fn parse_options(options: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut map = serde_json::Map::new();
    for option in options {
        let (name, value) = option
            .split_once('=')
            .ok_or_else(|| format!("--option {option:?}: expected NAME=VALUE"))?;
        let name = name.trim();
        if ["id", "key", "secret", "enabled"].contains(&name) {
            return Err(format!(
                "--option {name}: use --{name} (or --disabled) instead"
            ));
        }
        // A TOML value, or else the text as a string.
        let parsed: serde_json::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or_else(|| value.into());
        map.insert(name.to_string(), parsed);
    }
    Ok(map)
}

/// The app that `add` describes, checked, with generated credentials.
fn new_app(
    id: Option<String>,
    key: Option<String>,
    secret: Option<String>,
    options: &[String],
    disabled: bool,
) -> Result<(AppConfig, serde_json::Map<String, serde_json::Value>), String> {
    let (gen_id, gen_key, gen_secret) = crate::init::generate_credentials();
    let options = parse_options(options)?;
    let row = Row {
        id: id.unwrap_or(gen_id),
        key: key.unwrap_or(gen_key),
        secret: secret.unwrap_or(gen_secret),
        enabled: !disabled,
        options: Some(serde_json::Value::Object(options.clone()).to_string()),
    };
    let app = db::app_from_row(&row)?;
    Ok((app, options))
}

fn describe(app: &AppConfig, show_secret: bool) -> String {
    let secret = if show_secret {
        app.secret.clone()
    } else {
        format!("{}…", &app.secret[..app.secret.len().min(4)])
    };
    format!(
        "{:<12} key={:<24} secret={:<10} {}",
        app.id,
        app.key,
        secret,
        if app.enabled { "enabled" } else { "disabled" }
    )
}

fn added(app: &AppConfig, where_: &str) -> String {
    format!(
        "added app {} to {where_}\nPUSHER_APP_ID={}\nPUSHER_APP_KEY={}\nPUSHER_APP_SECRET={}",
        app.id, app.id, app.key, app.secret
    )
}

async fn on_database(url: &str, command: AppsCommand) -> Result<String, String> {
    let db = AppsDb::open(url)?;
    match command {
        AppsCommand::Migrate => {
            db.migrate().await?;
            Ok("the resonance_apps table is ready".into())
        }
        AppsCommand::List { show_secrets } => {
            let rows = db.rows().await?;
            let mut out = Vec::new();
            for row in &rows {
                match db::app_from_row(row) {
                    Ok(app) => out.push(describe(&app, show_secrets)),
                    Err(e) => out.push(format!(
                        "{:<12} INVALID (skipped by the server): {e}",
                        row.id
                    )),
                }
            }
            if out.is_empty() {
                out.push("no apps".into());
            }
            Ok(out.join("\n"))
        }
        AppsCommand::Add {
            id,
            key,
            secret,
            options,
            disabled,
        } => {
            let (app, options) = new_app(id, key, secret, &options, disabled)?;
            let taken = db
                .rows()
                .await?
                .into_iter()
                .any(|r| r.id == app.id || r.key == app.key);
            if taken {
                return Err(format!(
                    "an app with id {:?} or key {:?} exists",
                    app.id, app.key
                ));
            }
            db.insert(&Row {
                id: app.id.clone(),
                key: app.key.clone(),
                secret: app.secret.clone(),
                enabled: app.enabled,
                options: Some(serde_json::Value::Object(options).to_string()),
            })
            .await?;
            Ok(added(&app, "the database"))
        }
        AppsCommand::Remove { id } => match db.remove(&id).await? {
            true => Ok(format!("removed app {id}")),
            false => Err(format!("no app with id {id:?}")),
        },
        AppsCommand::RotateSecret { id } => {
            let (_, _, secret) = crate::init::generate_credentials();
            match db.set_secret(&id, &secret).await? {
                true => Ok(format!(
                    "new secret of app {id}: {secret}\nPUSHER_APP_SECRET={secret}"
                )),
                false => Err(format!("no app with id {id:?}")),
            }
        }
    }
}

fn on_file(path: &Path, command: AppsCommand) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let apps_of = |doc: &toml_edit::DocumentMut| -> Result<Vec<AppConfig>, String> {
        let config =
            Config::from_toml(&doc.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config.apps)
    };
    let message = match command {
        AppsCommand::Migrate => {
            return Err(
                "migrate works on a database: give --database (or RESONANCE_APPS_DATABASE)".into(),
            );
        }
        AppsCommand::List { show_secrets } => {
            let apps = apps_of(&doc)?;
            if apps.is_empty() {
                return Ok("no apps".into());
            }
            return Ok(apps
                .iter()
                .map(|a| describe(a, show_secrets))
                .collect::<Vec<_>>()
                .join("\n"));
        }
        AppsCommand::Add {
            id,
            key,
            secret,
            options,
            disabled,
        } => {
            let (app, options) = new_app(id, key, secret, &options, disabled)?;
            let mut table = toml_edit::Table::new();
            table["id"] = toml_edit::value(app.id.clone());
            table["key"] = toml_edit::value(app.key.clone());
            table["secret"] = toml_edit::value(app.secret.clone());
            if disabled {
                table["enabled"] = toml_edit::value(false);
            }
            for (name, value) in options {
                let toml_value: toml::Value =
                    serde_json::from_value(value).map_err(|e| format!("--option {name}: {e}"))?;
                let item: toml_edit::Value =
                    toml::to_string(&toml::Table::from_iter([("v".to_string(), toml_value)]))
                        .ok()
                        .and_then(|t| t.parse::<toml_edit::DocumentMut>().ok())
                        .and_then(|d| d.get("v").and_then(|v| v.as_value()).cloned())
                        .ok_or_else(|| format!("--option {name}: cannot write this value"))?;
                table[name.as_str()] = toml_edit::Item::Value(item);
            }
            let apps = doc
                .entry("apps")
                .or_insert(toml_edit::Item::ArrayOfTables(Default::default()))
                .as_array_of_tables_mut()
                .ok_or("apps: is not an array of [[apps]] tables")?;
            apps.push(table);
            added(&app, &path.display().to_string())
        }
        AppsCommand::Remove { id } => {
            let apps = doc
                .get_mut("apps")
                .and_then(|a| a.as_array_of_tables_mut())
                .ok_or("the file has no [[apps]]")?;
            let at = (0..apps.len())
                .find(|&i| {
                    apps.get(i)
                        .and_then(|t| t.get("id"))
                        .and_then(|v| v.as_str())
                        == Some(id.as_str())
                })
                .ok_or_else(|| format!("no app with id {id:?}"))?;
            apps.remove(at);
            format!("removed app {id}")
        }
        AppsCommand::RotateSecret { id } => {
            let apps = doc
                .get_mut("apps")
                .and_then(|a| a.as_array_of_tables_mut())
                .ok_or("the file has no [[apps]]")?;
            let table = apps
                .iter_mut()
                .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(id.as_str()))
                .ok_or_else(|| format!("no app with id {id:?}"))?;
            let (_, _, secret) = crate::init::generate_credentials();
            table["secret"] = toml_edit::value(secret.clone());
            format!("new secret of app {id}: {secret}\nPUSHER_APP_SECRET={secret}")
        }
    };
    // Refuse to write a file the server would refuse.
    let text = doc.to_string();
    let config = Config::from_toml(&text).map_err(|e| format!("not written: {e}"))?;
    config.validate().map_err(|e| format!("not written: {e}"))?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(format!(
        "{message}\n(a running server applies it on `resonance reload`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_rotate_remove_on_a_file_keeps_comments() {
        let dir = std::env::temp_dir().join(format!("resonance-apps-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.toml");
        std::fs::write(
            &path,
            "# my server\n[server]\nport = 6001\n\n[[apps]]\nid = \"1\"\nkey = \"k1\"\nsecret = \"secret-one\"\n",
        )
        .unwrap();
        let out = on_file(
            &path,
            AppsCommand::Add {
                id: Some("2".into()),
                key: None,
                secret: None,
                options: vec![
                    "max_connections=5".into(),
                    "allowed_origins=[\"https://a.example\"]".into(),
                ],
                disabled: false,
            },
        )
        .unwrap();
        assert!(out.contains("added app 2"), "{out}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my server"), "{text}");
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.apps[1].max_connections, 5);
        assert_eq!(c.apps[1].allowed_origins, ["https://a.example"]);
        let before = c.apps[1].secret.clone();
        on_file(&path, AppsCommand::RotateSecret { id: "2".into() }).unwrap();
        let c = Config::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_ne!(c.apps[1].secret, before);
        // A bad option is refused and nothing is written.
        let err = on_file(
            &path,
            AppsCommand::Add {
                id: Some("3".into()),
                key: None,
                secret: None,
                options: vec!["max_conections=5".into()],
                disabled: false,
            },
        )
        .unwrap_err();
        assert!(err.contains("max_conections"), "{err}");
        on_file(&path, AppsCommand::Remove { id: "2".into() }).unwrap();
        let c = Config::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(c.apps.len(), 1);
        assert!(on_file(&path, AppsCommand::Remove { id: "9".into() }).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
