//! Small named values the gateway keeps across restarts, such as the hash of the admin key
//! generated on first start.

use crate::{now_ms, Result, Store};

/// Settings operations; get one with [`Store::settings`].
pub struct Settings<'a> {
    pub(crate) store: &'a Store,
}

impl Settings<'_> {
    pub async fn get(&self, name: &str) -> Result<Option<String>> {
        with_pool!(self.store, pool => Ok(
            sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        ))
    }

    /// Stores `value` unless `name` already has one, and returns the value now stored: the
    /// caller's if it won, the earlier one otherwise. Safe when replicas race on first start.
    pub async fn set_if_absent(&self, name: &str, value: &str) -> Result<String> {
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(value)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            let stored = sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(stored)
        })
    }

    /// Stores `value`, replacing any earlier one.
    pub async fn set(&self, name: &str, value: &str) -> Result<()> {
        with_pool!(self.store, pool => {
            sqlx::query(
                "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(value)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Removes `name`; returns whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        with_pool!(self.store, pool => {
            let done = sqlx::query("DELETE FROM settings WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
