//! Schema migrations of the SQL stores: the `.sql` files under `src/store/migrations/`,
//! embedded and run by sqlx's [`Migrator`], and the baseline of databases that tower-pat's
//! earlier, hand-run migrations made (a `pat_schema` table holding the version).

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// One engine's migrations, in order: version, description, SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded(&'static [(i64, &'static str, &'static str)]);

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Embedded = Embedded(&[
    (
        1,
        "tokens",
        include_str!("../migrations/sqlite/0001_tokens.sql"),
    ),
    (
        2,
        "version",
        include_str!("../migrations/sqlite/0002_version.sql"),
    ),
    (
        3,
        "signals",
        include_str!("../migrations/sqlite/0003_signals.sql"),
    ),
]);

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Embedded = Embedded(&[
    (
        1,
        "tokens",
        include_str!("../migrations/postgres/0001_tokens.sql"),
    ),
    (
        2,
        "version",
        include_str!("../migrations/postgres/0002_version.sql"),
    ),
    (
        3,
        "signals",
        include_str!("../migrations/postgres/0003_signals.sql"),
    ),
]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The migrator of one engine's `files`. It takes no lock of its own: the stores run it inside a
/// transaction that holds theirs (SQLite's write lock, a PostgreSQL advisory lock on the
/// schema), so each migration runs in a savepoint and replicas starting together wait
/// for each other. Run it with `run_direct` on the transaction's connection: `run` takes
/// an `Acquire`, whose future is not `Send` for a borrowed connection (sqlx's own
/// workaround, launchbadge/sqlx#1075), and `connect` must stay `Send`.
pub(crate) async fn migrator(files: Embedded) -> Result<Migrator, MigrateError> {
    let mut migrator = Migrator::new(files).await?;
    migrator.set_locking(false);
    Ok(migrator)
}

/// Records the migrations up to `legacy`, the `pat_schema` version of a database made
/// before tower-pat used sqlx's migrator, as applied (with their checksums) without
/// running them again, unless the migrator has recorded anything already. `pat_schema`
/// stays, so an older replica starting during a rolling upgrade finds its version and
/// does not migrate again.
pub(crate) async fn baseline<C: Migrate>(
    conn: &mut C,
    migrator: &Migrator,
    legacy: i64,
) -> Result<(), MigrateError> {
    conn.ensure_migrations_table().await?;
    if !conn.list_applied_migrations().await?.is_empty() {
        return Ok(());
    }
    for m in migrator.iter().filter(|m| m.version <= legacy) {
        // The statement stands in for SQL that ran long ago; the checksum is the file's.
        let done = Migration {
            sql: Cow::Borrowed("SELECT 1"),
            ..m.clone()
        };
        conn.apply(&done).await?;
    }
    Ok(())
}
