//! Running `[[auth_admin]]` steps once approved: for each approved key, the
//! user is read again, GoTrue is called, and the link goes to the requester.
//! The result names every user as sent, skipped (no longer qualified) or
//! failed, and the action counts as applied only when a link went out.

use super::{AuthEndpoint, deliver, email_of, gotrue, users};
use crate::approval::executor::{ApplyError, Approved};
use crate::approval::snapshot::Snapshot;
use crate::approval::store::Request;
use crate::config::SupabaseAuth;
use crate::slack::ids::UserId;
use crate::slack::text::visible;
use crate::state::AppState;
use crate::targets::Target;

/// How one approved user fared.
enum Outcome {
    Sent,
    /// The user no longer qualifies; nothing was called.
    Skipped(&'static str),
    Failed(String),
}

/// What every call of one request shares.
struct Call<'a> {
    state: &'a AppState,
    r: &'a Request,
    target: &'a Target,
    auth: &'a SupabaseAuth,
    requester: &'a UserId,
}

pub async fn run(state: &AppState, r: &Request, target: &Target, a: &Approved) -> Result<String, ApplyError> {
    let auth = configured(state, &a.snapshot)?;
    let requester = UserId::parse(&r.requested_by)
        .map_err(|_| ApplyError::Failed("the requester is not a Slack user; no link was generated".into()))?;
    let call = Call {
        state,
        r,
        target,
        auth,
        requester: &requester,
    };
    let mut lines = Vec::new();
    let mut sent = 0;
    for step in &a.snapshot.def.auth_admin {
        let table = a.plan.table(&step.plan).ok_or_else(|| {
            ApplyError::Failed(format!("the plan has no step `{}`; no link was generated", step.plan))
        })?;
        let mut outcomes = Vec::new();
        for key in table.keys() {
            let email = email_of(table, &key).unwrap_or_default();
            let outcome = one(&call, &key, &email).await;
            sent += usize::from(matches!(outcome, Outcome::Sent));
            outcomes.push((email, outcome));
        }
        lines.push(report(&step.title, &requester, &outcomes));
    }
    let text = lines.join("\n");
    if sent == 0 {
        return Err(ApplyError::Failed(text));
    }
    Ok(text)
}

/// The configured admin API, only when it is still the approved one.
fn configured<'a>(state: &'a AppState, snapshot: &Snapshot) -> Result<&'a SupabaseAuth, ApplyError> {
    let approved = snapshot.auth.as_ref().ok_or_else(|| {
        ApplyError::Failed("the request names no Supabase Auth endpoint — request again; no link was generated".into())
    })?;
    state
        .config
        .supabase_auth
        .get(&approved.target)
        .filter(|now| AuthEndpoint::of(&approved.target, now) == *approved)
        .ok_or_else(|| {
            ApplyError::Failed(format!(
                "the Supabase Auth endpoint of target `{}` (`supabase_url`) changed since approval — request again; \
                 no link was generated",
                approved.target
            ))
        })
}

/// Re-read, call, hand over: for one approved user.
async fn one(c: &Call<'_>, key: &str, email: &str) -> Outcome {
    if email.is_empty() {
        return Outcome::Failed("the approved row shows no email; no link was generated".into());
    }
    let unreachable = |e| Outcome::Failed(format!("target {}: {e}; no link was generated", c.target.name));
    let mut conn = match c.target.acquire().await {
        Ok(conn) => conn,
        Err(e) => return unreachable(e),
    };
    match users::ineligible(&mut conn, key, email).await {
        Err(e) => return unreachable(e),
        Ok(Some(why)) => return Outcome::Skipped(why),
        Ok(None) => {}
    }
    drop(conn);
    let generated = match gotrue::recovery_link(&c.auth.url, &c.auth.service_role_key, email, gotrue::TIMEOUT).await {
        Ok(generated) => generated,
        Err(e) => return Outcome::Failed(format!("{e}; no link was generated, nothing was sent")),
    };
    if !same_user(generated.user_id.as_deref(), key) {
        return Outcome::Failed(
            "Supabase Auth made the link for another user than the approved one (or did not say for whom); \
             it was not sent"
                .into(),
        );
    }
    match deliver::send(c.state, c.r, c.requester, email, &generated.link).await {
        Ok(()) => {
            tracing::info!(
                request.id = c.r.id,
                "password-recovery link generated and queued for the requester"
            );
            Outcome::Sent
        }
        Err(e) => {
            tracing::error!(request.id = c.r.id, error = ?e, "a generated recovery link could not be queued");
            Outcome::Failed(
                "a link was generated but could not be queued for the requester, so it was not sent; request again"
                    .into(),
            )
        }
    }
}

/// GoTrue looks users up by email: the user it answers for must be the
/// approved key, or an email that moved in the instant since the re-read
/// would hand someone else's link to the requester.
fn same_user(answered: Option<&str>, key: &str) -> bool {
    let id = |s: &str| uuid::Uuid::parse_str(s).ok();
    answered.and_then(id).is_some_and(|a| Some(a) == id(key))
}

/// One line per step, naming every approved user.
fn report(title: &str, requester: &UserId, outcomes: &[(String, Outcome)]) -> String {
    let parts: Vec<String> = outcomes
        .iter()
        .map(|(email, o)| match o {
            Outcome::Sent => deliver::sent_words(email, requester),
            Outcome::Skipped(why) => format!("skipped {}: {why}; no link was generated", visible(email)),
            Outcome::Failed(why) => format!("{}: {why}", visible(email)),
        })
        .collect();
    let body = if parts.is_empty() {
        "no approved user".to_string()
    } else {
        parts.join("; ")
    };
    format!("{} — {body}", visible(title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_every_user_and_never_a_link() {
        let requester = UserId::parse("U0ONCALL").unwrap();
        let r = report(
            "Password-recovery link",
            &requester,
            &[
                ("ann@acme.test".into(), Outcome::Sent),
                (
                    "bob@acme.test".into(),
                    Outcome::Skipped("the user's email changed since approval"),
                ),
                (
                    "cy@globex.test".into(),
                    Outcome::Failed("Supabase Auth is rate limiting".into()),
                ),
            ],
        );
        assert_eq!(
            r,
            "Password-recovery link — recovery link generated for ann@acme.test and sent privately to <@U0ONCALL>; \
             skipped bob@acme.test: the user's email changed since approval; no link was generated; \
             cy@globex.test: Supabase Auth is rate limiting"
        );
    }
}
