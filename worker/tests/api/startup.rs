//! Start-up: migrations with several workers at once, bad configuration.

use std::process::Command;

use countersign_worker::db::Db;

use crate::helpers::TestDatabase;

#[tokio::test(flavor = "multi_thread")]
async fn several_workers_migrating_at_once_apply_each_migration_once() {
    let database = TestDatabase::create().await;
    let workers: Vec<Db> = (0..4)
        .map(|_| Db::connect_lazy(&database.url, 2, std::time::Duration::from_secs(5)).unwrap())
        .collect();
    let results = futures_util::future::join_all(workers.iter().map(Db::migrate)).await;
    for result in results {
        result.expect("every worker starts");
    }
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        applied,
        countersign_worker::db::MIGRATOR.iter().count() as i64
    );
    pool.close().await;
    for db in workers {
        db.pool().close().await;
    }
}

#[test]
fn a_bad_configuration_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    std::fs::write(&path, "[worker]\ndocuments = \"s3://bucket\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
        .env("COUNTERSIGN_CONFIG", &path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("worker.documents: must be file:<directory>"),
        "{stderr}"
    );
}
