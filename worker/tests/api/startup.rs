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
    assert_eq!(applied, countersign_worker::db::MIGRATIONS.len() as i64);
    pool.close().await;
    for db in workers {
        db.pool().close().await;
    }
}

#[test]
fn a_setting_the_provider_does_not_read_stops_the_worker_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    std::fs::write(
        &path,
        "[[sources]]\nname = \"signing\"\nprovider = \"standard_webhooks\"\n\
         [sources.api]\nbase_url = \"https://api.example\"\ncredentials = \"env:SW_API\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
        .env("COUNTERSIGN_CONFIG", &path)
        .env("SW_API", "an-api-key")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "sources[signing].api: standard_webhooks does not use api (Countersign has no API client for it)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_bad_configuration_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    std::fs::write(&path, "[worker]\ndocuments = \"gs://bucket\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
        .env("COUNTERSIGN_CONFIG", &path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("worker.documents: must be file:<directory>")
            && stderr.contains("s3://<bucket>"),
        "{stderr}"
    );
}

#[test]
fn a_missing_database_url_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    std::fs::write(&path, "[worker]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    for args in [
        &[][..],
        &["run"],
        &["replay", "archive", "--source", "acme"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
            .args(args)
            .env("COUNTERSIGN_CONFIG", &path)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        // The file is named, as in every other configuration error (issue 31, 9).
        assert!(
            stderr.contains(&format!(
                "invalid configuration: {}: DATABASE_URL: not set",
                path.display()
            )),
            "{stderr}"
        );
    }
}

#[test]
fn help_and_version_need_no_configuration() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
            .args(args)
            .env("COUNTERSIGN_CONFIG", "/nonexistent/countersign.toml")
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for word in [
        "Usage: countersign-worker",
        "run",
        "replay",
        "healthcheck",
        "--config",
    ] {
        assert!(text.contains(word), "{word} in {text}");
    }
    let replay = run(&["replay", "--help"]);
    assert!(replay.status.success());
    let text = String::from_utf8(replay.stdout).unwrap();
    assert!(text.contains("dead") && text.contains("archive"), "{text}");
    let version = run(&["--version"]);
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("countersign-worker {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A worker restarted on a migrated database logs no PostgreSQL notice such as
/// `relation "_sqlx_migrations" already exists, skipping`.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_a_migrated_database_logs_no_notice() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    let prefix = countersign_testkit::unique_prefix();
    std::fs::write(
        &path,
        format!(
            "[amqp]\nprefix = \"{prefix}\"\n[worker]\nlisten = \"127.0.0.1:0\"\ndocuments = \"file:{}\"\n",
            dir.path().join("documents").display()
        ),
    )
    .unwrap();
    let mut logs = Vec::new();
    for run in 0..2 {
        let log = dir.path().join(format!("worker-{run}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
            .env("COUNTERSIGN_CONFIG", &path)
            .env("DATABASE_URL", &database.url)
            .env("AMQP_URL", countersign_testkit::amqp_url())
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .map(countersign_testkit::KillOnDrop)
            .unwrap();
        crate::helpers::wait_until(
            "the worker consumes",
            std::time::Duration::from_secs(30),
            || async { std::fs::read_to_string(&log).unwrap().contains("consuming") },
        )
        .await;
        child.terminate();
        assert!(child.wait().await.success());
        logs.push(std::fs::read_to_string(&log).unwrap());
    }
    let topology = countersign::topology::Topology::from_config(
        &countersign::config::Config::from_toml(
            &format!("[amqp]\nprefix = \"{prefix}\"\n"),
            countersign::config::Role::Worker,
            &|_| None,
        )
        .unwrap()
        .amqp,
    );
    countersign_testkit::delete_topology(topology);
    assert!(logs[1].contains("database migrated"), "{}", logs[1]);
    for log in &logs {
        assert!(!log.contains("already exists"), "{log}");
        assert!(!log.to_lowercase().contains("notice"), "{log}");
    }
}

/// Issue 31 (4): a database that does not exist stops the worker with one line that says so once
/// and what to do.
#[test]
fn a_missing_database_stops_the_worker_with_one_line_saying_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    std::fs::write(
        &path,
        "[worker]\nlisten = \"127.0.0.1:0\"\n\
         [[sources]]\nname = \"acme\"\nprovider = \"taktikal\"\nsecrets = [\"env:ACME_KEY\"]\n",
    )
    .unwrap();
    let database = format!("cs_missing_{}", uuid::Uuid::new_v4().simple());
    let url = countersign_testkit::database_url();
    let (server, _) = url.rsplit_once('/').unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
        .env("COUNTERSIGN_CONFIG", &path)
        .env("ACME_KEY", "k")
        .env("DATABASE_URL", format!("{server}/{database}"))
        .env("AMQP_URL", countersign_testkit::amqp_url())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("countersign-worker: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(line.matches("does not exist").count(), 1, "{line}");
    assert!(
        line.contains(&database) && line.contains("create it first"),
        "{line}"
    );
}

/// Issue 31 (9): replaying the archive of a source the configuration does not have is an error
/// naming the sources it has, not "would replay 0".
#[test]
fn replaying_an_unknown_sources_archive_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign.toml");
    std::fs::write(
        &path,
        "[[sources]]\nname = \"acme\"\nprovider = \"taktikal\"\nsecrets = [\"env:ACME_KEY\"]\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-worker"))
        .args(["replay", "archive", "--source", "nosuch", "--dry-run"])
        .env("COUNTERSIGN_CONFIG", &path)
        .env("ACME_KEY", "k")
        .env("DATABASE_URL", countersign_testkit::database_url())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing claims a replay");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("--source nosuch: no such source in the configuration (sources: acme)"),
        "{stderr}"
    );
}

/// Issue 32's migrations on a database the previous release populated: its rows keep their
/// order, its statements (which name `id` in ORDER BY and write no `position`) still run beside
/// the new worker during a rolling upgrade, and the key columns compare bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_populated_database_upgrades_in_place_and_the_previous_release_keeps_working() {
    let database = TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let mut previous = countersign_worker::db::migrator().await.unwrap();
    let first_new = previous
        .migrations
        .iter()
        .position(|m| m.version == 20261208000001)
        .expect("the issue 32 migration");
    previous.migrations = std::borrow::Cow::Owned(previous.migrations[..first_new].to_vec());
    previous.run(&pool).await.unwrap();
    // Two entries with one time, written in the order the provider listed them.
    sqlx::raw_sql(
        "INSERT INTO signing_processes (source, process_key, provider, status, status_rank,
                                        created_at, updated_at, status_changed_at)
         VALUES ('uk', 'doc-1', 'legalesign', 'completed', 5, now(), now(), now());
         INSERT INTO activity (source, process_key, entry_key, status, description, created_at,
                               created_by, event_id)
         VALUES ('uk', 'doc-1', 'signed:sig-1', 'SigneeSigned', 's', '2018-03-20T07:09:52Z',
                 'Legalesign', 'b1'),
                ('uk', 'doc-1', 'completed:30', 'Completed', 'c', '2018-03-20T07:09:52Z',
                 'Legalesign', 'b1');",
    )
    .execute(&pool)
    .await
    .unwrap();

    countersign_worker::db::migrator()
        .await
        .unwrap()
        .run(&pool)
        .await
        .expect("the new migrations apply to a populated database");

    // The previous release's write (no `position`, no `id`) and its read (ORDER BY id).
    sqlx::query(
        "INSERT INTO activity (source, process_key, entry_key, status, description, created_at,
                               created_by, event_id)
         VALUES ('uk', 'doc-1', 'expired:50', 'Expired', 'e', '2018-03-21T00:00:00Z',
                 'Legalesign', 'b2')
         ON CONFLICT (source, process_key, entry_key) DO NOTHING",
    )
    .execute(&pool)
    .await
    .expect("the previous release's insert");
    let old_order: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM activity WHERE source = 'uk' AND process_key = 'doc-1'
         ORDER BY created_at, id",
    )
    .fetch_all(&pool)
    .await
    .expect("the previous release's read");
    assert_eq!(old_order, ["SigneeSigned", "Completed", "Expired"]);
    let new_order: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM activity WHERE source = 'uk' AND process_key = 'doc-1'
         ORDER BY created_at, position, id, entry_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        new_order,
        ["SigneeSigned", "Completed", "Expired"],
        "rows written before keep their order (by `id`), not the keys' (`completed` < `signed`)"
    );
    let collations: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, coalesce(collation_name::text, '')
         FROM information_schema.columns
         WHERE table_schema = 'public'
           AND (column_name IN ('source', 'process_key')
                OR (table_name, column_name) = ('webhook_events', 'event_id'))",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(collations.len(), 11, "{collations:?}");
    assert!(
        collations.iter().all(|(_, c)| c == "C"),
        "every key column compares bytes: {collations:?}"
    );
    pool.close().await;
}
