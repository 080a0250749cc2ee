//! Virtual API keys: created from a secret's hash (the secret itself never reaches the store),
//! listed, changed with PATCH semantics, revoked (never deleted), and polled by replicas.
//!
//! `get_by_hash` returns the row whatever its state; [`Key::is_active`] says whether it may be
//! used, so the caller can tell "revoked" from "expired" from "unknown" in its logs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::types::Json;

use crate::limits::{self, present, set, Limits};
use crate::sql::new_id;
use crate::{now_ms, Error, Result, Store};

/// Refuses, inside transaction `$tx`, a reference to an unknown or deleted team.
macro_rules! check_team {
    ($tx:expr, $team:expr) => {{
        let deleted =
            sqlx::query_scalar::<_, Option<i64>>("SELECT deleted_at FROM teams WHERE id = $1")
                .bind($team)
                .fetch_optional(&mut *$tx)
                .await?;
        team_check($team, deleted)?;
    }};
}

/// Where a key was declared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Created at run time (admin API, CLI).
    #[default]
    Api,
    /// Declared under `keys:` in the config file; kept in step by [`Keys::sync_config`].
    Config,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Config => "config",
        }
    }
}

/// A key as stored. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub id: String,
    pub name: String,
    /// Lowercase hex SHA-256 of the secret. Not a secret, but never shown: not serialized.
    #[serde(skip_serializing, default)]
    pub hash: String,
    /// The first characters of the secret (`sk-sy-AbCd`), for people to recognise a key.
    pub prefix: String,
    pub team_id: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
    pub expires_at: Option<i64>,
    pub metadata: Map<String, Value>,
    pub source: Source,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
    /// The change counter value of this key's latest write; see [`Keys::changed_since`].
    pub rev: i64,
}

impl Key {
    /// Not revoked and not expired at `now_ms`. Says nothing about the key's team.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now_ms < t)
    }
}

/// What [`Keys::create`] needs. The id and times are the store's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct New {
    pub name: String,
    /// Lowercase hex SHA-256 of the secret (64 characters).
    pub hash: String,
    pub prefix: String,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub source: Source,
}

/// A partial change with PATCH semantics: absent leaves a field, `null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub team_id: Option<Option<String>>,
    #[serde(flatten)]
    pub limits: limits::Patch,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<Option<i64>>,
    /// Replaces the whole metadata object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// Which keys [`Keys::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub team_id: Option<String>,
    pub include_revoked: bool,
}

/// What [`Keys::sync_config`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub revoked: usize,
}

/// Key operations; get one with [`Store::keys`].
pub struct Keys<'a> {
    pub(crate) store: &'a Store,
}

const COLUMNS: &str = "id, name, hash, prefix, team_id, models, rpm, tpm, max_concurrency, \
    budget_usd, budget_period, expires_at, metadata, source, created_at, updated_at, revoked_at, rev";

impl Keys<'_> {
    /// Stores a new key. [`Error::Conflict`] if the hash is already stored,
    /// [`Error::MissingReference`] if `team_id` names no live team.
    pub async fn create(&self, new: &New) -> Result<Key> {
        check_hash(&new.hash)?;
        let id = new_id("key_");
        let now = now_ms();
        let limits = new.limits.bound()?;
        let sql = format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, NULL, $16) \
             RETURNING {COLUMNS}"
        );
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump!(tx, "keys").await?;
            if let Some(team) = &new.team_id {
                check_team!(tx, team);
            }
            let q = sqlx::query_as::<_, Row>(&sql)
                .bind(&id)
                .bind(&new.name)
                .bind(&new.hash)
                .bind(&new.prefix)
                .bind(&new.team_id);
            let row = bind_limits!(q, limits)
                .bind(new.expires_at)
                .bind(Json(&new.metadata))
                .bind(new.source.as_str())
                .bind(now)
                .bind(rev)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row.into_key()
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<Key>> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
        with_pool!(self.store, pool => {
            let row = sqlx::query_as::<_, Row>(&sql).bind(id).fetch_optional(pool).await?;
            row.map(Row::into_key).transpose()
        })
    }

    /// The key whose secret hashes to `hash`, revoked and expired ones included.
    pub async fn get_by_hash(&self, hash: &str) -> Result<Option<Key>> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE hash = $1");
        with_pool!(self.store, pool => {
            let row = sqlx::query_as::<_, Row>(&sql).bind(hash).fetch_optional(pool).await?;
            row.map(Row::into_key).transpose()
        })
    }

    /// Keys in creation order.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<Key>> {
        let mut w = crate::sql::Where::default();
        if let Some(team) = &filter.team_id {
            w.and("team_id =", crate::sql::Arg::Text(team.clone()));
        }
        if !filter.include_revoked {
            w.and_raw("revoked_at IS NULL");
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys{} ORDER BY created_at, id",
            w.sql
        );
        with_pool!(self.store, pool => {
            let rows = bind_args!(sqlx::query_as::<_, Row>(&sql), &w.args)
                .fetch_all(pool)
                .await?;
            rows.into_iter().map(Row::into_key).collect()
        })
    }

    /// Applies `patch`. [`Error::NotFound`] for an unknown id. A revoked key can be changed but
    /// not brought back.
    pub async fn update(&self, id: &str, patch: &Patch) -> Result<Key> {
        let select = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
        let update = format!(
            "UPDATE api_keys SET name = $2, team_id = $3, models = $4, rpm = $5, tpm = $6, \
             max_concurrency = $7, budget_usd = $8, budget_period = $9, expires_at = $10, \
             metadata = $11, updated_at = $12, rev = $13 WHERE id = $1 RETURNING {COLUMNS}"
        );
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump!(tx, "keys").await?;
            let row = sqlx::query_as::<_, Row>(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::NotFound)?;
            let mut key = row.into_key()?;
            if let Some(name) = &patch.name {
                key.name.clone_from(name);
            }
            set(&mut key.team_id, &patch.team_id);
            patch.limits.apply(&mut key.limits);
            set(&mut key.expires_at, &patch.expires_at);
            if let Some(m) = &patch.metadata {
                key.metadata.clone_from(m);
            }
            if let Some(Some(team)) = &patch.team_id {
                check_team!(tx, team);
            }
            let limits = key.limits.bound()?;
            let q = sqlx::query_as::<_, Row>(&update)
                .bind(id)
                .bind(&key.name)
                .bind(&key.team_id);
            let row = bind_limits!(q, limits)
                .bind(key.expires_at)
                .bind(Json(&key.metadata))
                .bind(now_ms())
                .bind(rev)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row.into_key()
        })
    }

    /// Marks the key revoked (idempotent: the first revocation time is kept).
    /// [`Error::NotFound`] for an unknown id.
    pub async fn revoke(&self, id: &str) -> Result<Key> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2), updated_at = $2, \
             rev = $3 WHERE id = $1 RETURNING {COLUMNS}"
        );
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump!(tx, "keys").await?;
            let row = sqlx::query_as::<_, Row>(&sql)
                .bind(id)
                .bind(now_ms())
                .bind(rev)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::NotFound)?;
            tx.commit().await?;
            row.into_key()
        })
    }

    /// Every key written after revision `rev` (revoked ones included), in revision order.
    /// A replica keeps the highest `rev` it has seen and polls with it.
    pub async fn changed_since(&self, rev: i64) -> Result<Vec<Key>> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE rev > $1 ORDER BY rev");
        with_pool!(self.store, pool => {
            let rows = sqlx::query_as::<_, Row>(&sql).bind(rev).fetch_all(pool).await?;
            rows.into_iter().map(Row::into_key).collect()
        })
    }

    /// The revision of the latest key write: one indexed row, cheap to poll.
    pub async fn version(&self) -> Result<i64> {
        with_pool!(self.store, pool => Ok(counter!(pool, "keys").await?))
    }

    /// Makes the stored config keys match `keys` (the config file's `keys:`), in one transaction:
    /// a hash not stored is created, a stored one is updated where it differs, and a config key
    /// no longer listed is revoked. A key revoked by an admin stays revoked even if the config
    /// still lists it: rotate its secret instead.
    pub async fn sync_config(&self, keys: &[New]) -> Result<SyncReport> {
        for k in keys {
            check_hash(&k.hash)?;
        }
        let by_hash = format!("SELECT {COLUMNS} FROM api_keys WHERE hash = $1");
        let config_rows = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE source = 'config' AND revoked_at IS NULL"
        );
        let insert = format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'config', $14, $14, NULL, $15) \
             RETURNING {COLUMNS}"
        );
        let update = format!(
            "UPDATE api_keys SET name = $2, team_id = $3, models = $4, rpm = $5, tpm = $6, \
             max_concurrency = $7, budget_usd = $8, budget_period = $9, expires_at = $10, \
             metadata = $11, source = 'config', updated_at = $12, rev = $13 WHERE hash = $1 \
             RETURNING {COLUMNS}"
        );
        let revoke = "UPDATE api_keys SET revoked_at = $2, updated_at = $2, rev = $3 WHERE id = $1";
        let now = now_ms();
        let mut report = SyncReport::default();
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump!(tx, "keys").await?;
            for k in keys {
                let limits = k.limits.bound()?;
                let existing = sqlx::query_as::<_, Row>(&by_hash)
                    .bind(&k.hash)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(Row::into_key)
                    .transpose()?;
                match existing {
                    None => {
                        let q = sqlx::query_as::<_, Row>(&insert)
                            .bind(new_id("key_"))
                            .bind(&k.name)
                            .bind(&k.hash)
                            .bind(&k.prefix)
                            .bind(&k.team_id);
                        bind_limits!(q, limits)
                            .bind(k.expires_at)
                            .bind(Json(&k.metadata))
                            .bind(now)
                            .bind(rev)
                            .fetch_one(&mut *tx)
                            .await?;
                        report.created += 1;
                    }
                    Some(old) if same_as_config(&old, k) => report.unchanged += 1,
                    Some(_) => {
                        let q = sqlx::query_as::<_, Row>(&update)
                            .bind(&k.hash)
                            .bind(&k.name)
                            .bind(&k.team_id);
                        bind_limits!(q, limits)
                            .bind(k.expires_at)
                            .bind(Json(&k.metadata))
                            .bind(now)
                            .bind(rev)
                            .fetch_one(&mut *tx)
                            .await?;
                        report.updated += 1;
                    }
                }
            }
            let stored = sqlx::query_as::<_, Row>(&config_rows).fetch_all(&mut *tx).await?;
            for row in stored {
                if !keys.iter().any(|k| k.hash == row.hash) {
                    sqlx::query(revoke)
                        .bind(&row.id)
                        .bind(now)
                        .bind(rev)
                        .execute(&mut *tx)
                        .await?;
                    report.revoked += 1;
                }
            }
            tx.commit().await?;
        });
        Ok(report)
    }
}

fn same_as_config(old: &Key, new: &New) -> bool {
    old.source == Source::Config
        && old.name == new.name
        && old.team_id == new.team_id
        && old.limits == new.limits
        && old.expires_at == new.expires_at
        && old.metadata == new.metadata
}

fn check_hash(hash: &str) -> Result<()> {
    let ok = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "hash: expected the lowercase hex SHA-256 of the secret (64 characters)".into(),
        ))
    }
}

fn team_check(team_id: &str, deleted: Option<Option<i64>>) -> Result<()> {
    match deleted {
        Some(None) => Ok(()),
        Some(Some(_)) => Err(Error::MissingReference(format!(
            "team {team_id} is deleted"
        ))),
        None => Err(Error::MissingReference(format!("no team {team_id}"))),
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    hash: String,
    prefix: String,
    team_id: Option<String>,
    #[sqlx(flatten)]
    limits: limits::Columns,
    expires_at: Option<i64>,
    metadata: Json<Map<String, Value>>,
    source: String,
    created_at: i64,
    updated_at: i64,
    revoked_at: Option<i64>,
    rev: i64,
}

impl Row {
    fn into_key(self) -> Result<Key> {
        Ok(Key {
            id: self.id,
            name: self.name,
            hash: self.hash,
            prefix: self.prefix,
            team_id: self.team_id,
            limits: self.limits.into_limits()?,
            expires_at: self.expires_at,
            metadata: self.metadata.0,
            source: if self.source == "config" {
                Source::Config
            } else {
                Source::Api
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
            revoked_at: self.revoked_at,
            rev: self.rev,
        })
    }
}
