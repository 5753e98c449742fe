//! PostgreSQL errors become typed job errors by SQLSTATE: a retry can fix an unavailable database, never a
//! broken statement or a constraint violation.

use clerk_audit::error::JobError;

use crate::harness::admin_database_url;

async fn client() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn syntax_and_constraint_errors_are_permanent() {
    let client = client().await;
    let syntax = client.batch_execute("SELEC 1").await.unwrap_err();
    assert_eq!(syntax.code().map(|c| c.code()), Some("42601"));
    assert!(!JobError::from(syntax).is_transient());

    let undefined = client.batch_execute("SELECT * FROM no_such_table_for_this_test").await.unwrap_err();
    assert!(!JobError::from(undefined).is_transient());

    client.batch_execute("CREATE TEMP TABLE t (id int PRIMARY KEY)").await.unwrap();
    client.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    let unique = client.batch_execute("INSERT INTO t VALUES (1)").await.unwrap_err();
    assert_eq!(unique.code().map(|c| c.code()), Some("23505"));
    assert!(!JobError::from(unique).is_transient());
}

#[tokio::test]
async fn lock_timeouts_and_lost_connections_are_transient() {
    let holder = client().await;
    let client = client().await;
    let key: i64 = rand_key();
    holder.execute("SELECT pg_advisory_lock($1)", &[&key]).await.unwrap();
    let lock =
        client.batch_execute(&format!("SET lock_timeout = '10ms'; SELECT pg_advisory_lock({key})")).await.unwrap_err();
    assert_eq!(lock.code().map(|c| c.code()), Some("55P03"));
    assert!(JobError::from(lock).is_transient());
    holder.execute("SELECT pg_advisory_unlock($1)", &[&key]).await.unwrap();
    client.batch_execute("SET lock_timeout = 0").await.unwrap();

    // A statement canceled by the server (57014, query_canceled) is transient.
    let canceled = client.batch_execute("SET statement_timeout = '1ms'; SELECT pg_sleep(1)").await.unwrap_err();
    assert_eq!(canceled.code().map(|c| c.code()), Some("57014"));
    assert!(JobError::from(canceled).is_transient());

    // No SQLSTATE at all: the connection could not be made.
    let refused = tokio_postgres::connect("postgres://postgres@127.0.0.1:1/postgres", tokio_postgres::NoTls)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(refused.code().is_none());
    assert!(JobError::from(refused).is_transient());
}

fn rand_key() -> i64 {
    i64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap())
}
