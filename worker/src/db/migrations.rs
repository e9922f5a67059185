//! The schema's migrations, embedded in the binary: each file of `worker/migrations/` by name and
//! text. Built at run time through sqlx's public `MigrationSource` rather than its `migrate!`
//! macro: the macro is the only user of sqlx's `macros` feature here, and that feature compiles
//! a second sqlx (core and PostgreSQL driver) for the build host into every build. The
//! version, description and checksum (SHA-384 of the text) are what `migrate!` gave, so a
//! database it migrated is recognised as up to date.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// Every migration, in order: `<version>_<description>.sql` and its text. A test keeps it equal
/// to the directory.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "20261123000001_init.sql",
        include_str!("../../migrations/20261123000001_init.sql"),
    ),
    (
        "20261123000002_process_metadata.sql",
        include_str!("../../migrations/20261123000002_process_metadata.sql"),
    ),
    (
        "20261123000003_documents_by_content.sql",
        include_str!("../../migrations/20261123000003_documents_by_content.sql"),
    ),
    (
        "20261129000001_process_time_index.sql",
        include_str!("../../migrations/20261129000001_process_time_index.sql"),
    ),
    (
        "20261129000002_projection_without_process_keys.sql",
        include_str!("../../migrations/20261129000002_projection_without_process_keys.sql"),
    ),
    (
        "20261207000001_api_confirmed.sql",
        include_str!("../../migrations/20261207000001_api_confirmed.sql"),
    ),
    (
        "20261207000002_document_provenance.sql",
        include_str!("../../migrations/20261207000002_document_provenance.sql"),
    ),
    (
        "20261208000001_leaner_rows.sql",
        include_str!("../../migrations/20261208000001_leaner_rows.sql"),
    ),
    (
        "20261208000002_keys_in_byte_order.sql",
        include_str!("../../migrations/20261208000002_keys_in_byte_order.sql"),
    ),
];

/// The migrations as sqlx runs them.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async {
            MIGRATIONS
                .iter()
                .map(|(file, sql)| migration(file, sql))
                .collect()
        })
    }
}

/// One file as `migrate!` reads it: the version before the first `_`, the rest (without `.sql`)
/// with `_` as spaces as its description, run in a transaction unless it starts
/// `-- no-transaction`.
fn migration(file: &str, sql: &'static str) -> Result<Migration, BoxDynError> {
    let stem = file
        .strip_suffix(".sql")
        .ok_or_else(|| format!("{file}: not a .sql file"))?;
    let (version, description) = stem
        .split_once('_')
        .ok_or_else(|| format!("{file}: no <version>_<description>"))?;
    Ok(Migration::new(
        version.parse()?,
        Cow::Owned(description.replace('_', " ")),
        MigrationType::Simple,
        Cow::Borrowed(sql),
        sql.starts_with("-- no-transaction"),
    ))
}

/// The migrator of the embedded migrations.
pub async fn migrator() -> Result<Migrator, MigrateError> {
    Migrator::new(Embedded).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_migrations_directory_is_embedded_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|(file, _)| *file).collect();
        assert_eq!(embedded, files);
        for (file, sql) in MIGRATIONS {
            assert_eq!(*sql, std::fs::read_to_string(dir.join(file)).unwrap());
        }
    }

    #[tokio::test]
    async fn versions_descriptions_and_checksums_are_what_migrate_gave() {
        let migrator = migrator().await.unwrap();
        let first = migrator.iter().next().unwrap();
        assert_eq!(first.version, 20261123000001);
        assert_eq!(first.description, "init");
        let second = migrator.iter().nth(1).unwrap();
        assert_eq!(second.description, "process metadata");
        // SHA-384 of the file's text, as sqlx's macro computed it.
        use sha2::Digest as _;
        assert_eq!(
            &*first.checksum,
            sha2::Sha384::digest(MIGRATIONS[0].1.as_bytes()).as_slice()
        );
        assert_eq!(migrator.iter().count(), MIGRATIONS.len());
    }
}
