//! A target database shaped like a hosted Supabase project: GoTrue's real
//! `auth` schema, Supabase's roles and default privileges, and one
//! runbook's application tables (`tests/fixtures/supabase/`). The bot
//! connects as the project owner, which, as on hosted Supabase, is not a
//! superuser (BYPASSRLS, pg_monitor, pg_read_all_data, pg_signal_backend),
//! or, to see what row-level security does to it, as the reader (the same
//! reading rights without BYPASSRLS).
//!
//! Roles are cluster-wide and tests run in parallel, so every test gets its
//! own role names (a unique prefix) and removes them, with its database,
//! when it ends — also when it panics.

use sqlx::{Connection, Executor, PgConnection};

use super::{create_database, drop_database, pg_admin_url};

/// Which runbook's application schema the database carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSchema {
    /// Runbook 000, Auth B2B: accounts, users, subscriptions, the JWT hook.
    B2b,
    /// Runbook 001, Hotel Management: tenants, feature_flags, …
    Hotel,
    /// Runbook 003, Care Collective: profiles, help requests, …
    Care,
    /// Runbook 004, operational runbooks: users, user_roles, audit_logs, …
    Ops,
}

impl AppSchema {
    fn files(self) -> (&'static str, &'static str) {
        match self {
            AppSchema::B2b => (
                include_str!("../../fixtures/supabase/b2b.sql"),
                include_str!("../../fixtures/supabase/b2b_seed.sql"),
            ),
            AppSchema::Hotel => (
                include_str!("../../fixtures/supabase/hotel.sql"),
                include_str!("../../fixtures/supabase/hotel_seed.sql"),
            ),
            AppSchema::Care => (
                include_str!("../../fixtures/supabase/care.sql"),
                include_str!("../../fixtures/supabase/care_seed.sql"),
            ),
            AppSchema::Ops => (
                include_str!("../../fixtures/supabase/ops.sql"),
                include_str!("../../fixtures/supabase/ops_seed.sql"),
            ),
        }
    }
}

/// The six roles of one test's project.
#[derive(Debug, Clone)]
pub struct Roles {
    pub owner: String,
    pub anon: String,
    pub authenticated: String,
    pub service_role: String,
    pub auth_admin: String,
    /// Reads everything but does not bypass row-level security.
    pub reader: String,
}

impl Roles {
    fn new(prefix: &str) -> Roles {
        Roles {
            owner: format!("{prefix}_owner"),
            anon: format!("{prefix}_anon"),
            authenticated: format!("{prefix}_authenticated"),
            service_role: format!("{prefix}_service_role"),
            auth_admin: format!("{prefix}_auth_admin"),
            reader: format!("{prefix}_reader"),
        }
    }

    /// A fixture file with this test's role names in place of the placeholders.
    pub fn fill(&self, sql: &str) -> String {
        sql.replace("{{owner}}", &self.owner)
            .replace("{{anon}}", &self.anon)
            .replace("{{authenticated}}", &self.authenticated)
            .replace("{{service_role}}", &self.service_role)
            .replace("{{auth_admin}}", &self.auth_admin)
            .replace("{{reader}}", &self.reader)
    }
}

/// Drops the database, then the roles, when the test ends or panics.
struct Guard(Option<(String, Roles)>);

impl Drop for Guard {
    fn drop(&mut self) {
        let Some((name, roles)) = self.0.take() else { return };
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(teardown(&name, &roles));
            }
        })
        .join();
    }
}

async fn teardown(name: &str, roles: &Roles) {
    drop_database(name).await;
    if let Ok(mut c) = PgConnection::connect(&pg_admin_url()).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(
            roles.fill(include_str!("../../fixtures/supabase/drop_roles.sql")),
        ))
        .execute(&mut c)
        .await;
    }
}

pub struct SupabaseDb {
    pub name: String,
    pub roles: Roles,
    /// The database as its superuser (only the harness uses this).
    pub admin_url: String,
    /// The database as the project owner: what the bot is given.
    pub owner_url: String,
    guard: Guard,
}

impl SupabaseDb {
    pub async fn new(app: AppSchema) -> SupabaseDb {
        let prefix = format!("rbt_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let roles = Roles::new(&prefix);
        let mut admin = PgConnection::connect(&pg_admin_url())
            .await
            .expect("PostgreSQL is required for the tests");
        exec(
            &mut admin,
            &roles.fill(include_str!("../../fixtures/supabase/roles.sql")),
        )
        .await;
        let (name, admin_url) = create_database("rb_supa").await;
        let mut db = SupabaseDb {
            guard: Guard(Some((name.clone(), roles.clone()))),
            name,
            roles,
            admin_url,
            owner_url: String::new(),
        };
        db.owner_url = db.url_as(&db.roles.owner);
        let (schema, seed) = app.files();
        for file in [
            include_str!("../../fixtures/supabase/base.sql"),
            include_str!("../../fixtures/supabase/auth.sql"),
            schema,
            seed,
        ] {
            db.as_superuser(file).await;
        }
        db
    }

    /// Run a script (roles filled in) as the superuser, e.g. to plant an anomaly.
    pub async fn as_superuser(&self, sql: &str) {
        let mut c = PgConnection::connect(&self.admin_url).await.unwrap();
        exec(&mut c, &self.roles.fill(sql)).await;
        c.close().await.unwrap();
    }

    /// Run a script (roles filled in) as the project owner.
    pub async fn as_owner(&self, sql: &str) {
        let mut c = self.owner().await;
        exec(&mut c, &self.roles.fill(sql)).await;
        c.close().await.unwrap();
    }

    /// A session as the project owner.
    pub async fn owner(&self) -> PgConnection {
        PgConnection::connect(&self.owner_url).await.unwrap()
    }

    /// One text value, read as the superuser.
    pub async fn scalar(&self, sql: &str) -> String {
        let mut c = PgConnection::connect(&self.admin_url).await.unwrap();
        let v: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(self.roles.fill(sql)))
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.close().await.unwrap();
        v.unwrap_or_else(|| "NULL".into())
    }

    /// The target the bot is given: this database, as the project owner.
    pub fn target_config(&self) -> runbook_bot::config::TargetConfig {
        target_config(self.owner_url.clone())
    }

    /// The bot's `production` target (and default), as the project owner.
    pub fn attach(&self, cfg: &mut runbook_bot::config::Config) {
        self.attach_as(cfg, &self.roles.owner);
    }

    /// The bot's `production` target (and default), as `role`; e.g. the
    /// reader, which row-level security blinds.
    pub fn attach_as(&self, cfg: &mut runbook_bot::config::Config, role: &str) {
        cfg.targets.insert("production".into(), self.target_as(role));
        cfg.default_target = Some("production".into());
    }

    /// The database as one of this project's login roles.
    pub fn url_as(&self, role: &str) -> String {
        let url = self.admin_url.replacen("://postgres@", &format!("://{role}@"), 1);
        assert_ne!(url, self.admin_url, "TEST_POSTGRES_URL must connect as user postgres");
        url
    }

    /// A target that connects as `role`.
    pub fn target_as(&self, role: &str) -> runbook_bot::config::TargetConfig {
        target_config(self.url_as(role))
    }

    /// The b2b seed with runbook 000's anomalies planted (see b2b_anomalies.sql).
    pub async fn b2b_planted() -> SupabaseDb {
        let db = SupabaseDb::new(AppSchema::B2b).await;
        db.as_superuser(include_str!("../../fixtures/supabase/b2b_anomalies.sql"))
            .await;
        db
    }

    pub async fn cleanup(mut self) {
        if let Some((name, roles)) = self.guard.0.take() {
            teardown(&name, &roles).await;
        }
    }
}

/// How the tests connect to a target: a short connect timeout, three attempts.
pub fn target_config(url: String) -> runbook_bot::config::TargetConfig {
    runbook_bot::config::TargetConfig {
        url: secrecy::SecretString::from(url),
        connect_timeout: std::time::Duration::from_millis(1500),
        attempts: 3,
    }
}

async fn exec(c: &mut PgConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *c)
        .await
    {
        panic!("fixture SQL failed: {e}\n{}", &sql[..sql.len().min(300)]);
    }
}

/// Every role name starts with this test's prefix; for asserting cleanup.
pub async fn roles_exist(prefix: &str) -> i64 {
    let mut c = PgConnection::connect(&pg_admin_url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%'")
        .bind(prefix)
        .fetch_one(&mut c)
        .await
        .unwrap();
    let _ = c.execute("SELECT 1").await;
    n
}
