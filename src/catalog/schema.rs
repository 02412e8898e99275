//! The on-disk format of a catalog command (`commands/**/*.toml`).
//! Deserialized with `deny_unknown_fields`, then checked by `validate`.

use serde::{Deserialize, Serialize};

use crate::config::Level;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFile {
    /// `diagnostic` (read-only, runs at once) or `action` (changes things,
    /// only after approval).
    pub kind: Kind,
    /// The slash command, e.g. `/diagnose`.
    pub command: String,
    /// The subcommand, e.g. `orphans`.
    pub name: String,
    /// The slash command has no subcommand word: `/restore-account <who>`.
    #[serde(default)]
    pub standalone: bool,
    pub summary: String,
    /// Shown by `help` and on bad input, e.g. `/diagnose email <email>`.
    pub usage: String,
    /// Where in the runbooks this comes from.
    #[serde(default)]
    pub runbook: Option<String>,
    /// Which database shape the command's SQL expects. Runbooks disagree
    /// (runbook 000's `public.users` is not runbook 004's), so every file
    /// says which one it was written and tested for.
    pub schema: AppSchema,
    /// Minimum level to run it.
    pub level: Level,
    /// Target to run against when the person names none; default: config's.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub args: Vec<ArgDef>,
    /// Diagnostic steps.
    #[serde(default)]
    pub steps: Vec<StepDef>,
    /// Action: who approves, how many, for how long.
    #[serde(default)]
    pub approval: Option<ApprovalDef>,
    /// Action: refuse a plan that would touch more rows than this.
    #[serde(default)]
    pub max_rows: Option<i64>,
    /// Action: queries listing exactly the rows that will change.
    #[serde(default)]
    pub plan: Vec<PlanDef>,
    /// Action: statements run in one transaction.
    #[serde(default)]
    pub apply: Vec<ApplyDef>,
    /// Action: steps a rollback cannot undo (terminating sessions), run one
    /// approved key at a time after the transaction commits.
    #[serde(default)]
    pub effects: Vec<EffectDef>,
    /// Action: a keyed statement the bot runs on its own later (the GDPR
    /// hard delete on day 30), scheduled when the action is applied; listed
    /// and cancelled with `/scheduled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followup: Option<FollowupDef>,
    /// Action: calls to the target's Supabase Auth admin API (a
    /// password-recovery link) for each approved key of a plan step, after
    /// the transaction commits. Left out of the stored snapshot when empty,
    /// so requests stored before it existed keep their hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_admin: Vec<super::auth_admin::AuthAdminDef>,
    /// Action: checks run inside that transaction before it commits; any
    /// failure rolls everything back.
    #[serde(default)]
    pub verify: Vec<VerifyDef>,
    /// Action: how to reverse it, shown with the result.
    #[serde(default)]
    pub undo: Option<String>,
    /// Action: folder (relative to this file) of `<version>.sql` rollback
    /// scripts, chosen by the argument named in `script_arg`.
    #[serde(default)]
    pub rollback_scripts: Option<String>,
    #[serde(default)]
    pub script_arg: Option<String>,
    /// Action: call the deploy hook of the service named by this argument
    /// instead of running SQL.
    #[serde(default)]
    pub deploy_hook_arg: Option<String>,
    /// Action: `statement_timeout` for each statement of the apply
    /// transaction (at most 5 minutes, so a stalled apply is reported as
    /// interrupted only after it can no longer be running).
    #[serde(default = "default_apply_timeout_ms")]
    pub apply_timeout_ms: u64,
}

/// The database shapes the catalog is written for, each tested against a
/// fixture of its own (`tests/fixtures/supabase/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppSchema {
    /// Any PostgreSQL: only catalog and statistics views.
    Postgres,
    /// Any Supabase project: GoTrue's `auth` schema, `supabase_migrations`.
    Supabase,
    /// Runbook 000, Auth B2B: accounts, users (user_uuid), subscriptions.
    B2b,
    /// Runbook 001, Hotel Management: tenants, feature_flags (flag_name, is_enabled).
    Hotel,
    /// Runbook 003, Care Collective: profiles, help requests.
    Care,
    /// Runbook 004, operational runbooks: users (id), user_roles, audit_logs, security_incidents.
    Ops,
}

impl AppSchema {
    pub const ALL: [AppSchema; 6] = [
        AppSchema::Postgres,
        AppSchema::Supabase,
        AppSchema::B2b,
        AppSchema::Hotel,
        AppSchema::Care,
        AppSchema::Ops,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppSchema::Postgres => "postgres",
            AppSchema::Supabase => "supabase",
            AppSchema::B2b => "b2b",
            AppSchema::Hotel => "hotel",
            AppSchema::Care => "care",
            AppSchema::Ops => "ops",
        }
    }
}

fn default_apply_timeout_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDef {
    #[serde(default = "default_approver_level")]
    pub level: Level,
    #[serde(default = "default_approvals")]
    pub approvals: u32,
    #[serde(default = "default_expires_minutes")]
    pub expires_minutes: u32,
}

impl Default for ApprovalDef {
    fn default() -> Self {
        ApprovalDef {
            level: default_approver_level(),
            approvals: default_approvals(),
            expires_minutes: default_expires_minutes(),
        }
    }
}

fn default_approver_level() -> Level {
    Level::L3
}
fn default_approvals() -> u32 {
    1
}
fn default_expires_minutes() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDef {
    /// How apply statements, verifications and effects name this step's
    /// approved keys: `plan.<id>`.
    pub id: String,
    pub title: String,
    /// The column that identifies each row the action will change; its
    /// approved values are all the action may touch. Required for rows that
    /// count; context rows (`counts = false`) may have none.
    #[serde(default)]
    pub key: Option<String>,
    pub sql: String,
    #[serde(default)]
    pub params: Vec<String>,
    /// Whether these rows count toward `max_rows` (context rows do not).
    #[serde(default = "yes")]
    pub counts: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyDef {
    pub sql: String,
    #[serde(default)]
    pub params: Vec<String>,
    /// The plan step whose rows this statement changes: it is restricted by
    /// `<key> = ANY($n)` with `$n` bound to `plan.<id>`, returns the key with
    /// `RETURNING`, and must change exactly the approved keys, or the whole
    /// action rolls back.
    #[serde(default)]
    pub plan: Option<String>,
    /// The escape hatch: why this statement cannot be limited to a plan's
    /// keys (DDL that prepares a table, say). Shown on the approval card.
    #[serde(default)]
    pub unrestricted: Option<String>,
}

/// A statement scheduled by an applied action, run `after_days` later on the
/// approved keys of `plan` (the same rules as an apply statement: restricted
/// to the keys, `RETURNING` the key; keys already gone are reported).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FollowupDef {
    pub title: String,
    pub after_days: u32,
    pub plan: String,
    pub sql: String,
    #[serde(default)]
    pub params: Vec<String>,
}

/// A step a rollback cannot undo. For each approved key of `plan`, the
/// engine runs `recheck` and, only when it still returns a row, `run`; the
/// result lists every key as done, skipped or failed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EffectDef {
    pub title: String,
    pub plan: String,
    /// Read-only: returns a row when the key still qualifies.
    pub recheck: String,
    #[serde(default)]
    pub recheck_params: Vec<String>,
    /// Does it; returns one row whose first column is true when it worked.
    pub run: String,
    #[serde(default)]
    pub run_params: Vec<String>,
    /// What cannot be undone, in words for the approval card.
    pub cannot_undo: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyDef {
    pub title: String,
    pub sql: String,
    #[serde(default)]
    pub params: Vec<String>,
    pub expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// No rows (nothing left in the bad state).
    Empty,
    /// At least one row.
    Rows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Diagnostic,
    Action,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArgDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ArgType,
    #[serde(default)]
    pub help: Option<String>,
    #[serde(default)]
    pub optional: bool,
    /// Used when the argument is omitted (implies optional).
    #[serde(default)]
    pub default: Option<String>,
    /// For `enum`: the accepted values.
    #[serde(default)]
    pub values: Vec<String>,
    /// For `int`: inclusive bounds.
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgType {
    Uuid,
    Email,
    /// An SQL-style name: letters, digits, `_`, `-`, `.`; at most 63 characters.
    Identifier,
    Int,
    Enum,
    /// An email or a UUID; steps bind `name.email` and `name.uuid` (one is NULL).
    EmailOrUuid,
    /// Comma-separated identifiers, bound as `text[]` (`= ANY($1)`).
    IdentifierList,
    /// Free text to the end of the line (a reason); must be the last argument.
    Text,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub title: String,
    /// What the runbook expects, shown beside the verdict ("expected < 50 ms").
    #[serde(default)]
    pub expect: Option<String>,
    #[serde(default)]
    pub check: Check,
    /// SQL with `$1..$n` placeholders bound, in order, from `params`.
    #[serde(default)]
    pub sql: Option<String>,
    /// Argument names (or `name.email` / `name.uuid`) bound to `$1..$n`.
    #[serde(default)]
    pub params: Vec<String>,
    /// Run this step only when the argument was given.
    #[serde(default)]
    pub when_arg: Option<String>,
    /// Run this step only when the argument was not given.
    #[serde(default)]
    pub unless_arg: Option<String>,
    /// Per-attempt statement timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts before the step fails (with jittered backoff between them);
    /// default: the target's `attempts`.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// The extension the step reads: it runs with the extension's schema on
    /// its search path, and could not check (saying why) when it is missing.
    #[serde(default)]
    pub requires_extension: Option<String>,
    #[serde(default)]
    pub judge: Judge,
    #[serde(default)]
    pub render: Render,
}

fn default_timeout_ms() -> u64 {
    5000
}

/// What a step does: run its SQL, ping the target, probe the configured
/// HTTP health endpoints, or ask every target whether row-level security
/// hides rows of the catalog's tables from its role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    #[default]
    Sql,
    Ping,
    HttpHealth,
    RlsVisibility,
}

/// How a step's result becomes ok / warning / critical. Everything unset
/// means the step is informational (always ok).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Judge {
    /// Verdict when the step returns more than `rows_over` rows (findings).
    #[serde(default)]
    pub rows: Option<Severity>,
    /// How many rows are still fine (default 0).
    #[serde(default)]
    pub rows_over: i64,
    /// Verdict when the step returns no rows (something expected is missing).
    #[serde(default)]
    pub empty: Option<Severity>,
    /// Numeric column compared with the thresholds below, on every row.
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub warning_above: Option<f64>,
    #[serde(default)]
    pub critical_above: Option<f64>,
    #[serde(default)]
    pub warning_below: Option<f64>,
    #[serde(default)]
    pub critical_below: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Render {
    /// Columns to show, in order; default all.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Rows to show before "and N more rows".
    #[serde(default = "default_limit")]
    pub limit: u32,
}

impl Default for Render {
    fn default() -> Self {
        Render {
            columns: Vec::new(),
            limit: default_limit(),
        }
    }
}

fn default_limit() -> u32 {
    10
}
