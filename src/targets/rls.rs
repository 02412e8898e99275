//! Row-level security as a target's role meets it. A role that is not a
//! superuser, has no BYPASSRLS, and does not own a table (or the table
//! forces RLS on its owner) reads only the rows some policy grants it: with
//! no policy for it, none, and never an error. So the bot asks, for the
//! relations its SQL reads, which ones hide rows from its role; callers
//! turn that into could-not-check or a refusal instead of trusting zero.
//!
//! Answers are cached per target for about a minute: every diagnostic asks,
//! and roles and table settings change far less often.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use super::{StepError, Target, Targets, classify};
use crate::catalog::relations::Relation;

/// How long an answer is reused.
pub const TTL: Duration = Duration::from_secs(60);

/// What a target's role sees of the relations asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    pub role: String,
    pub superuser: bool,
    pub bypassrls: bool,
    /// The relations asked about that hide rows, with their resolved
    /// `schema.table` names.
    pub hidden: BTreeMap<Relation, String>,
}

impl Visibility {
    /// Sees every row of every table, whatever its policies.
    pub fn bypasses(&self) -> bool {
        self.superuser || self.bypassrls
    }

    /// The resolved names, among `relations`, whose rows may be hidden.
    pub fn hidden_among<'a>(&self, relations: impl IntoIterator<Item = &'a Relation>) -> Vec<String> {
        let names: BTreeSet<&String> = relations.into_iter().filter_map(|r| self.hidden.get(r)).collect();
        names.into_iter().cloned().collect()
    }

    /// Every relation asked about whose rows may be hidden.
    pub fn hidden(&self) -> Vec<String> {
        self.hidden_among(self.hidden.keys())
    }
}

/// "public.users, auth.users and 3 more": enough names to act on.
pub fn some_of(names: &[String], max: usize) -> String {
    let shown = names.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(max) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// "role `x` does not bypass row-level security on public.users, auth.users
/// and 3 more", when some relation asked about hides rows from it.
pub fn blind_summary(v: &Visibility) -> Option<String> {
    let hidden = v.hidden();
    (!hidden.is_empty()).then(|| {
        format!(
            "role `{}` does not bypass row-level security on {}",
            v.role,
            some_of(&hidden, 5)
        )
    })
}

/// Log a warning for each target whose role row-level security blinds, so
/// an operator sees it at start (`serve` runs this in the background).
pub async fn warn_blind(targets: &Targets, relations: &BTreeSet<Relation>, within: Duration) {
    for (name, seen) in survey(targets, relations, within).await {
        match seen {
            Ok(v) => {
                if let Some(why) = blind_summary(&v) {
                    tracing::warn!(
                        target_name = name,
                        "{why}: diagnostics reading those tables report could-not-check and actions reading them are refused; grant the role BYPASSRLS"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(target_name = name, error = %e, "could not ask the target what row-level security hides from its role")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Role {
    name: String,
    superuser: bool,
    bypassrls: bool,
}

struct Known {
    at: Instant,
    role: Role,
    /// Relation → its resolved name when it hides rows, `None` when it
    /// does not (or does not exist).
    relations: HashMap<Relation, Option<String>>,
}

impl Known {
    fn visibility(&self, asked: &BTreeSet<Relation>) -> Visibility {
        let hidden = asked
            .iter()
            .filter_map(|r| Some((r.clone(), self.relations.get(r)?.clone()?)))
            .collect();
        Visibility {
            role: self.role.name.clone(),
            superuser: self.role.superuser,
            bypassrls: self.role.bypassrls,
            hidden,
        }
    }
}

/// One target's answers. The lock is never held across an await.
#[derive(Default)]
pub struct Cache {
    known: Mutex<Option<Known>>,
}

impl Cache {
    /// The answer for `asked` when a fresh one covers it.
    fn get(&self, asked: &BTreeSet<Relation>, now: Instant) -> Option<Visibility> {
        let known = self.known.lock().expect("rls cache lock");
        let k = known.as_ref().filter(|k| now.duration_since(k.at) < TTL)?;
        let bypasses = k.role.superuser || k.role.bypassrls;
        (bypasses || asked.iter().all(|r| k.relations.contains_key(r))).then(|| k.visibility(asked))
    }

    /// Remember what the target said and answer `asked` from it.
    fn put(
        &self,
        role: Role,
        answers: Vec<(Relation, Option<String>)>,
        asked: &BTreeSet<Relation>,
        now: Instant,
    ) -> Visibility {
        let mut known = self.known.lock().expect("rls cache lock");
        let keep = known
            .as_ref()
            .is_some_and(|k| now.duration_since(k.at) < TTL && k.role == role);
        if !keep {
            *known = Some(Known {
                at: now,
                role,
                relations: HashMap::new(),
            });
        }
        let k = known.as_mut().expect("just set");
        k.relations.extend(answers);
        k.visibility(asked)
    }
}

impl Target {
    /// What this target's role sees of `relations` (cached about a minute).
    pub async fn visibility(&self, relations: &BTreeSet<Relation>) -> Result<Visibility, StepError> {
        if let Some(v) = self.rls.get(relations, Instant::now()) {
            return Ok(v);
        }
        let mut conn = self.acquire().await?;
        let mut tx = conn.begin_with("BEGIN READ ONLY").await.map_err(|e| classify(&e, 0))?;
        tx.execute("SET LOCAL statement_timeout = 5000")
            .await
            .map_err(|e| classify(&e, 5000))?;
        let role = role(&mut tx).await?;
        let answers = if role.superuser || role.bypassrls {
            Vec::new()
        } else {
            hiding(&mut tx, relations).await?
        };
        let _ = tx.rollback().await;
        Ok(self.rls.put(role, answers, relations, Instant::now()))
    }
}

/// Every target's answer for `relations`, each within `within`, in name
/// order. Used by `check`, at `serve` start and by `/diagnose health`.
pub async fn survey<'a>(
    targets: &'a Targets,
    relations: &BTreeSet<Relation>,
    within: Duration,
) -> Vec<(&'a str, Result<Visibility, StepError>)> {
    let mut out = Vec::new();
    for name in targets.names() {
        let Some(t) = targets.get(name) else { continue };
        let seen = match tokio::time::timeout(within, t.visibility(relations)).await {
            Ok(r) => r,
            Err(_) => Err(StepError::Unreachable(format!(
                "no answer within {} s",
                within.as_secs()
            ))),
        };
        out.push((name, seen));
    }
    out
}

async fn role(conn: &mut PgConnection) -> Result<Role, StepError> {
    let (name, superuser, bypassrls): (String, bool, bool) =
        sqlx::query_as("SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify(&e, 5000))?;
    Ok(Role {
        name,
        superuser,
        bypassrls,
    })
}

/// For each relation, resolved on the role's search path: its name when
/// RLS is on and the role does not bypass it as owner (owners are exempt
/// unless FORCE ROW LEVEL SECURITY; membership in the owning role counts,
/// as PostgreSQL's own check does).
async fn hiding(
    conn: &mut PgConnection,
    relations: &BTreeSet<Relation>,
) -> Result<Vec<(Relation, Option<String>)>, StepError> {
    let asked: Vec<&Relation> = relations.iter().collect();
    let texts: Vec<String> = asked.iter().map(|r| r.regclass_text()).collect();
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT q.i, CASE WHEN c.relrowsecurity
                           AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
                          THEN format('%I.%I', n.nspname, c.relname) END
         FROM unnest($1::text[]) WITH ORDINALITY AS q(rel, i)
         LEFT JOIN pg_class c ON c.oid = to_regclass(q.rel)
         LEFT JOIN pg_namespace n ON n.oid = c.relnamespace",
    )
    .bind(texts)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e, 5000))?;
    Ok(rows
        .into_iter()
        .filter_map(|(i, name)| {
            let r = asked.get(usize::try_from(i).ok()?.checked_sub(1)?)?;
            Some(((*r).clone(), name))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str) -> Relation {
        let (s, n) = name.split_once('.').unwrap();
        Relation::new(Some(s), n)
    }

    fn reader() -> Role {
        Role {
            name: "reader".into(),
            superuser: false,
            bypassrls: false,
        }
    }

    #[test]
    fn answers_are_reused_for_a_minute_and_only_for_what_was_asked() {
        let cache = Cache::default();
        let t0 = Instant::now();
        let asked: BTreeSet<Relation> = [rel("public.users"), rel("public.notes")].into();
        assert_eq!(cache.get(&asked, t0), None);
        let answers = vec![
            (rel("public.users"), Some("public.users".to_string())),
            (rel("public.notes"), None),
        ];
        let v = cache.put(reader(), answers, &asked, t0);
        assert_eq!(v.hidden(), ["public.users"]);
        assert!(!v.bypasses());
        assert_eq!(cache.get(&asked, t0 + Duration::from_secs(59)), Some(v));
        assert_eq!(cache.get(&asked, t0 + TTL), None, "stale after a minute");
        let more: BTreeSet<Relation> = [rel("auth.users")].into();
        assert_eq!(cache.get(&more, t0), None, "never asked about");
        // A role that bypasses RLS needs no per-table answers.
        let owner = Role {
            bypassrls: true,
            ..reader()
        };
        let v = cache.put(owner, Vec::new(), &more, t0 + TTL);
        assert!(v.bypasses() && v.hidden().is_empty());
        assert!(cache.get(&more, t0 + TTL).is_some());
    }

    #[test]
    fn hidden_names_are_listed_once_and_cut_short() {
        let v = Visibility {
            role: "r".into(),
            superuser: false,
            bypassrls: false,
            hidden: [
                (Relation::new(None, "users"), "public.users".to_string()),
                (rel("public.users"), "public.users".to_string()),
                (rel("auth.users"), "auth.users".to_string()),
            ]
            .into(),
        };
        assert_eq!(v.hidden(), ["auth.users", "public.users"]);
        assert_eq!(v.hidden_among([&Relation::new(None, "users")]), ["public.users"]);
        let names: Vec<String> = (1..=5).map(|i| format!("t{i}")).collect();
        assert_eq!(some_of(&names, 3), "t1, t2, t3 and 2 more");
        assert_eq!(some_of(&names[..2], 3), "t1, t2");
        assert_eq!(
            blind_summary(&v).as_deref(),
            Some("role `r` does not bypass row-level security on auth.users, public.users")
        );
        assert_eq!(
            blind_summary(&Visibility {
                hidden: BTreeMap::new(),
                ..v
            }),
            None
        );
    }
}
