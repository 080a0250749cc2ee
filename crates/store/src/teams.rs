//! Teams: a name, limits that bind all the team's keys together, and metadata. Deleting a team
//! marks it deleted (its name becomes free) and revokes its keys in the same transaction.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::types::Json;

use crate::limits::{self, Limits};
use crate::sql::new_id;
use crate::{now_ms, Error, Result, Store};

/// A team as stored. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub limits: Limits,
    pub metadata: Map<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    /// The change counter value of this team's latest write; see [`Teams::changed_since`].
    pub rev: i64,
}

/// What [`Teams::create`] needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct New {
    pub name: String,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// A partial change with PATCH semantics: absent leaves a field, `null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub limits: limits::Patch,
    /// Replaces the whole metadata object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// Team operations; get one with [`Store::teams`].
pub struct Teams<'a> {
    pub(crate) store: &'a Store,
}

const COLUMNS: &str = "id, name, models, rpm, tpm, max_concurrency, budget_usd, budget_period, \
    metadata, created_at, updated_at, deleted_at, rev";

impl Teams<'_> {
    /// Stores a new team. [`Error::Conflict`] if a live team has the same name.
    pub async fn create(&self, new: &New) -> Result<Team> {
        let limits = new.limits.bound()?;
        let sql = format!(
            "INSERT INTO teams ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, NULL, $11) RETURNING {COLUMNS}"
        );
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump!(tx, "teams").await?;
            let q = sqlx::query_as::<_, Row>(&sql).bind(new_id("team_")).bind(&new.name);
            let row = bind_limits!(q, limits)
                .bind(Json(&new.metadata))
                .bind(now_ms())
                .bind(rev)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row.into_team()
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<Team>> {
        let sql = format!("SELECT {COLUMNS} FROM teams WHERE id = $1");
        with_pool!(self.store, pool => {
            let row = sqlx::query_as::<_, Row>(&sql).bind(id).fetch_optional(pool).await?;
            row.map(Row::into_team).transpose()
        })
    }

    /// The live (not deleted) team with this name.
    pub async fn get_by_name(&self, name: &str) -> Result<Option<Team>> {
        let sql = format!("SELECT {COLUMNS} FROM teams WHERE name = $1 AND deleted_at IS NULL");
        with_pool!(self.store, pool => {
            let row = sqlx::query_as::<_, Row>(&sql).bind(name).fetch_optional(pool).await?;
            row.map(Row::into_team).transpose()
        })
    }

    /// Teams in creation order.
    pub async fn list(&self, include_deleted: bool) -> Result<Vec<Team>> {
        let filter = if include_deleted {
            ""
        } else {
            " WHERE deleted_at IS NULL"
        };
        let sql = format!("SELECT {COLUMNS} FROM teams{filter} ORDER BY created_at, id");
        with_pool!(self.store, pool => {
            let rows = sqlx::query_as::<_, Row>(&sql).fetch_all(pool).await?;
            rows.into_iter().map(Row::into_team).collect()
        })
    }

    /// Applies `patch`. [`Error::NotFound`] for an unknown id, [`Error::Conflict`] for a name
    /// another live team has.
    pub async fn update(&self, id: &str, patch: &Patch) -> Result<Team> {
        let select = format!("SELECT {COLUMNS} FROM teams WHERE id = $1");
        let update = format!(
            "UPDATE teams SET name = $2, models = $3, rpm = $4, tpm = $5, max_concurrency = $6, \
             budget_usd = $7, budget_period = $8, metadata = $9, updated_at = $10, rev = $11 \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump!(tx, "teams").await?;
            let row = sqlx::query_as::<_, Row>(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::NotFound)?;
            let mut team = row.into_team()?;
            if let Some(name) = &patch.name {
                team.name.clone_from(name);
            }
            patch.limits.apply(&mut team.limits);
            if let Some(m) = &patch.metadata {
                team.metadata.clone_from(m);
            }
            let limits = team.limits.bound()?;
            let q = sqlx::query_as::<_, Row>(&update).bind(id).bind(&team.name);
            let row = bind_limits!(q, limits)
                .bind(Json(&team.metadata))
                .bind(now_ms())
                .bind(rev)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row.into_team()
        })
    }

    /// Marks the team deleted (idempotent: the first time is kept) and revokes its live keys,
    /// in one transaction. [`Error::NotFound`] for an unknown id.
    pub async fn delete(&self, id: &str) -> Result<Team> {
        let delete = format!(
            "UPDATE teams SET deleted_at = COALESCE(deleted_at, $2), updated_at = $2, rev = $3 \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let revoke = "UPDATE api_keys SET revoked_at = $2, updated_at = $2, rev = $3 \
                      WHERE team_id = $1 AND revoked_at IS NULL";
        let now = now_ms();
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            // Always the keys counter before the teams counter, so two writers never wait on
            // each other in opposite orders.
            let key_rev = bump!(tx, "keys").await?;
            let rev = bump!(tx, "teams").await?;
            let row = sqlx::query_as::<_, Row>(&delete)
                .bind(id)
                .bind(now)
                .bind(rev)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::NotFound)?;
            sqlx::query(revoke).bind(id).bind(now).bind(key_rev).execute(&mut *tx).await?;
            tx.commit().await?;
            row.into_team()
        })
    }

    /// Every team written after revision `rev` (deleted ones included), in revision order.
    pub async fn changed_since(&self, rev: i64) -> Result<Vec<Team>> {
        let sql = format!("SELECT {COLUMNS} FROM teams WHERE rev > $1 ORDER BY rev");
        with_pool!(self.store, pool => {
            let rows = sqlx::query_as::<_, Row>(&sql).bind(rev).fetch_all(pool).await?;
            rows.into_iter().map(Row::into_team).collect()
        })
    }

    /// The revision of the latest team write.
    pub async fn version(&self) -> Result<i64> {
        with_pool!(self.store, pool => Ok(counter!(pool, "teams").await?))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    #[sqlx(flatten)]
    limits: limits::Columns,
    metadata: Json<Map<String, Value>>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    rev: i64,
}

impl Row {
    fn into_team(self) -> Result<Team> {
        Ok(Team {
            id: self.id,
            name: self.name,
            limits: self.limits.into_limits()?,
            metadata: self.metadata.0,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
            rev: self.rev,
        })
    }
}
