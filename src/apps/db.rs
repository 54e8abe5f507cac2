//! Apps from a database: the `resonance_apps` table on PostgreSQL or
//! MySQL/MariaDB (sqlx).
//!
//! The table has a column each for `id`, `key`, `secret` and `enabled`, and
//! one JSON column, `options`, for every other `[[apps]]` setting (names as
//! in the config file, e.g. `{"max_connections": 500, "client_events":
//! false}`; unset ones keep their defaults). `resonance apps migrate`
//! creates it ([`AppsDb::migrate`]); on PostgreSQL it also installs a
//! trigger that `NOTIFY`s channel `resonance_apps` on every change, so the
//! server applies changes at once instead of at the next poll.
//!
//! The server reads the whole table every `apps_database_poll` seconds (and
//! on each notification) off the hot path: connecting and API calls only
//! ever read the in-memory registry. A row that does not make a valid app
//! is logged with its id and skipped; when the database cannot be reached
//! the last apps read keep serving and `/ready` and `/metrics` say so.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use crate::core::app::AppConfig;

/// The dependency name in `/ready` and `/metrics`.
pub const DEPENDENCY: &str = "apps_database";

/// The PostgreSQL channel the trigger notifies.
pub const CHANNEL: &str = "resonance_apps";

/// How long one query may take before the database counts as down.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `url` names a database this module can read apps from.
pub fn is_database_url(url: &str) -> bool {
    ["postgres://", "postgresql://", "mysql://", "mariadb://"]
        .iter()
        .any(|p| url.starts_with(p))
}

/// The table, as `resonance apps migrate` creates it on PostgreSQL.
pub const POSTGRES_SCHEMA: &str = r#"CREATE TABLE IF NOT EXISTS resonance_apps (
    id         VARCHAR(64)  PRIMARY KEY,
    key        VARCHAR(255) NOT NULL UNIQUE,
    secret     VARCHAR(255) NOT NULL,
    enabled    BOOLEAN      NOT NULL DEFAULT TRUE,
    options    JSONB        NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ  NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION resonance_apps_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('resonance_apps', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS resonance_apps_notify ON resonance_apps;
CREATE TRIGGER resonance_apps_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON resonance_apps
    FOR EACH STATEMENT EXECUTE FUNCTION resonance_apps_notify();"#;

/// The table, as `resonance apps migrate` creates it on MySQL / MariaDB.
pub const MYSQL_SCHEMA: &str = r#"CREATE TABLE IF NOT EXISTS resonance_apps (
    id         VARCHAR(64)  NOT NULL PRIMARY KEY,
    `key`      VARCHAR(255) NOT NULL UNIQUE,
    secret     VARCHAR(255) NOT NULL,
    enabled    BOOLEAN      NOT NULL DEFAULT TRUE,
    options    JSON         NULL,
    created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
)"#;

/// One row as read, before it is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: bool,
    /// The `options` JSON text (`None` for SQL NULL).
    pub options: Option<String>,
}

/// A connection pool to the apps database.
#[derive(Clone)]
pub enum AppsDb {
    Postgres(PgPool, String),
    MySql(MySqlPool),
}

fn db_error(e: impl std::fmt::Display) -> String {
    format!("apps database: {e}")
}

async fn timed<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, f).await {
        Ok(r) => r.map_err(db_error),
        Err(_) => Err(db_error(format!(
            "no answer within {}s",
            QUERY_TIMEOUT.as_secs()
        ))),
    }
}

impl AppsDb {
    /// A lazy pool (no connection is made until the first query, so a
    /// database that is down does not stop the server from starting).
    pub fn open(url: &str) -> Result<AppsDb, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(QUERY_TIMEOUT)
                .connect_lazy(url)
                .map_err(|e| format!("apps_database: {e}"))?;
            Ok(AppsDb::Postgres(pool, url.to_string()))
        } else if let Some(rest) = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
        {
            let pool = MySqlPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(QUERY_TIMEOUT)
                .connect_lazy(&format!("mysql://{rest}"))
                .map_err(|e| format!("apps_database: {e}"))?;
            Ok(AppsDb::MySql(pool))
        } else {
            Err(
                "apps_database: must be a postgres://, postgresql://, mysql:// or mariadb:// URL"
                    .into(),
            )
        }
    }

    /// Creates the table (and on PostgreSQL the NOTIFY trigger); safe to
    /// run again.
    pub async fn migrate(&self) -> Result<(), String> {
        match self {
            AppsDb::Postgres(pool, _) => {
                timed(sqlx::raw_sql(POSTGRES_SCHEMA).execute(pool)).await?;
            }
            AppsDb::MySql(pool) => {
                timed(sqlx::raw_sql(MYSQL_SCHEMA).execute(pool)).await?;
            }
        }
        Ok(())
    }

    /// Every row of the table, ordered by id.
    pub async fn rows(&self) -> Result<Vec<Row>, String> {
        match self {
            AppsDb::Postgres(pool, _) => {
                let rows: Vec<(String, String, String, bool, Option<String>)> = timed(
                    sqlx::query_as(
                        "SELECT id, key, secret, enabled, options::text FROM resonance_apps ORDER BY id",
                    )
                    .fetch_all(pool),
                )
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, key, secret, enabled, options)| Row {
                        id,
                        key,
                        secret,
                        enabled,
                        options,
                    })
                    .collect())
            }
            AppsDb::MySql(pool) => {
                let rows: Vec<(String, String, String, i64, Option<String>)> = timed(
                    sqlx::query_as(
                        "SELECT id, `key`, secret, CAST(enabled AS SIGNED), CAST(options AS CHAR) FROM resonance_apps ORDER BY id",
                    )
                    .fetch_all(pool),
                )
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, key, secret, enabled, options)| Row {
                        id,
                        key,
                        secret,
                        enabled: enabled != 0,
                        options,
                    })
                    .collect())
            }
        }
    }

    /// Inserts a row (`options` a JSON object of the other settings).
    pub async fn insert(&self, row: &Row) -> Result<(), String> {
        let options = row.options.clone().unwrap_or_else(|| "{}".into());
        match self {
            AppsDb::Postgres(pool, _) => {
                timed(
                    sqlx::query("INSERT INTO resonance_apps (id, key, secret, enabled, options) VALUES ($1, $2, $3, $4, $5::jsonb)")
                        .bind(&row.id)
                        .bind(&row.key)
                        .bind(&row.secret)
                        .bind(row.enabled)
                        .bind(options)
                        .execute(pool),
                )
                .await?;
            }
            AppsDb::MySql(pool) => {
                timed(
                    sqlx::query("INSERT INTO resonance_apps (id, `key`, secret, enabled, options) VALUES (?, ?, ?, ?, ?)")
                        .bind(&row.id)
                        .bind(&row.key)
                        .bind(&row.secret)
                        .bind(row.enabled)
                        .bind(options)
                        .execute(pool),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Deletes app `id`; whether a row was there.
    pub async fn remove(&self, id: &str) -> Result<bool, String> {
        let affected = match self {
            AppsDb::Postgres(pool, _) => timed(
                sqlx::query("DELETE FROM resonance_apps WHERE id = $1")
                    .bind(id)
                    .execute(pool),
            )
            .await?
            .rows_affected(),
            AppsDb::MySql(pool) => timed(
                sqlx::query("DELETE FROM resonance_apps WHERE id = ?")
                    .bind(id)
                    .execute(pool),
            )
            .await?
            .rows_affected(),
        };
        Ok(affected > 0)
    }

    /// Sets app `id`'s secret; whether a row was there.
    pub async fn set_secret(&self, id: &str, secret: &str) -> Result<bool, String> {
        let affected = match self {
            AppsDb::Postgres(pool, _) => timed(
                sqlx::query(
                    "UPDATE resonance_apps SET secret = $1, updated_at = now() WHERE id = $2",
                )
                .bind(secret)
                .bind(id)
                .execute(pool),
            )
            .await?
            .rows_affected(),
            AppsDb::MySql(pool) => timed(
                sqlx::query("UPDATE resonance_apps SET secret = ? WHERE id = ?")
                    .bind(secret)
                    .bind(id)
                    .execute(pool),
            )
            .await?
            .rows_affected(),
        };
        Ok(affected > 0)
    }
}

/// Turns one row into an app, or says why it is not one.
pub fn app_from_row(row: &Row) -> Result<AppConfig, String> {
    let mut object = match row.options.as_deref().map(serde_json::from_str) {
        None => serde_json::Map::new(),
        Some(Ok(serde_json::Value::Object(map))) => map,
        Some(Ok(serde_json::Value::Null)) => serde_json::Map::new(),
        Some(Ok(_)) => return Err("options: must be a JSON object".into()),
        Some(Err(e)) => return Err(format!("options: not JSON: {e}")),
    };
    for name in ["id", "key", "secret", "enabled"] {
        if object.contains_key(name) {
            return Err(format!(
                "options: {name:?} is a column of its own, not an option"
            ));
        }
    }
    object.insert("id".into(), row.id.clone().into());
    object.insert("key".into(), row.key.clone().into());
    object.insert("secret".into(), row.secret.clone().into());
    object.insert("enabled".into(), row.enabled.into());
    let app: AppConfig = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| format!("options: {e}"))?;
    app.validate("row").map_err(|e| {
        e.strip_prefix("row.")
            .map_or_else(|| e.clone(), str::to_string)
    })?;
    Ok(app)
}

/// The apps of `rows`; a bad row (or a second row with a key already
/// used) is logged with its id and skipped. An app that was served
/// (`previous`) keeps its last good settings while its row is bad: a
/// mistyped edit does not disconnect its clients.
pub fn apps_from_rows(rows: &[Row], previous: &[AppConfig]) -> Vec<AppConfig> {
    let mut keys = HashSet::new();
    let mut apps = Vec::with_capacity(rows.len());
    for row in rows {
        let app = match app_from_row(row) {
            Ok(app) => app,
            Err(e) => match previous.iter().find(|a| a.id == row.id) {
                Some(last) => {
                    tracing::warn!(app_id = %row.id, "apps database: bad row, its last good settings stay: {e}");
                    last.clone()
                }
                None => {
                    tracing::warn!(app_id = %row.id, "apps database: row skipped: {e}");
                    continue;
                }
            },
        };
        if keys.insert(app.key.clone()) {
            apps.push(app);
        } else {
            tracing::warn!(app_id = %app.id, "apps database: row skipped: key {:?} is used by another row", app.key);
        }
    }
    apps
}

/// Keeps the server's app set in step with the table until the server
/// stops: reads it now, then every `poll` and, on PostgreSQL, whenever the
/// trigger notifies.
pub async fn run(control: Arc<super::Control>, db: AppsDb, poll: Duration) {
    let node = control.node().clone();
    let mut healthy: Option<bool> = None;
    let mut listener: Option<PgListener> = None;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // (Re)listen first, so that no change between the read and the
        // LISTEN is missed.
        if let (AppsDb::Postgres(_, url), None) = (&db, &listener) {
            listener = listen(url).await;
        }
        let ok = match db.rows().await {
            Ok(rows) => {
                let apps = apps_from_rows(&rows, &control.db_apps());
                control.set_db_apps(apps).await;
                true
            }
            Err(e) => {
                if healthy != Some(false) {
                    tracing::error!("{e}; the last apps read keep serving");
                }
                false
            }
        };
        if healthy != Some(ok) {
            if ok && healthy.is_some() {
                tracing::info!("apps database reachable again");
            }
            node.set_dependency(DEPENDENCY, ok);
            healthy = Some(ok);
        }
        if !ok {
            listener = None;
        }
        match listener.as_mut() {
            Some(l) => tokio::select! {
                _ = tick.tick() => {}
                note = l.recv() => if note.is_err() { listener = None },
            },
            None => {
                tick.tick().await;
            }
        }
    }
}

async fn listen(url: &str) -> Option<PgListener> {
    let attempt = async {
        let mut l = PgListener::connect(url).await?;
        l.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(l)
    };
    match tokio::time::timeout(QUERY_TIMEOUT, attempt).await {
        Ok(Ok(l)) => Some(l),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "apps database: LISTEN failed; polling");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, key: &str, options: Option<&str>) -> Row {
        Row {
            id: id.into(),
            key: key.into(),
            secret: "a-long-secret".into(),
            enabled: true,
            options: options.map(Into::into),
        }
    }

    #[test]
    fn rows_become_apps_and_bad_rows_are_skipped() {
        let app = app_from_row(&row("1", "k1", Some(r#"{"max_connections": 5}"#))).unwrap();
        assert_eq!(app.max_connections, 5);
        assert_eq!(
            app.max_event_bytes,
            10 * 1024,
            "unset options keep defaults"
        );
        let err = app_from_row(&row("2", "k2", Some(r#"{"max_conections": 5}"#))).unwrap_err();
        assert!(err.contains("max_conections"), "{err}");
        let err = app_from_row(&row("3", "k3", Some("[]"))).unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
        let err = app_from_row(&row("4", "k 4", None)).unwrap_err();
        assert!(err.starts_with("key:"), "{err}");
        let err = app_from_row(&row("5", "k5", Some(r#"{"secret":"x"}"#))).unwrap_err();
        assert!(err.contains("column of its own"), "{err}");
        let rows = [
            row("1", "k1", None),
            row("2", "k2", Some("{bad")),
            row("3", "k1", None),
            row("4", "k4", Some("null")),
        ];
        let apps = apps_from_rows(&rows, &[]);
        let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["1", "4"]);
        // A served app whose row goes bad keeps its last good settings.
        let served = app_from_row(&row("2", "k2", Some(r#"{"max_connections": 9}"#))).unwrap();
        let apps = apps_from_rows(&rows, &[served]);
        let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "4"]);
        assert_eq!(apps[1].max_connections, 9);
    }

    #[test]
    fn urls() {
        assert!(is_database_url("postgres://u@h/db"));
        assert!(is_database_url("mariadb://root@h/db"));
        assert!(!is_database_url("sqlite://x"));
        assert!(AppsDb::open("sqlite://x").is_err());
    }
}
