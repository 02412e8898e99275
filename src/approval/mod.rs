//! Escalation-gated remediation: an on-call engineer requests an action, the
//! bot computes and shows its exact plan, an approver clicks Approve (or
//! Deny), and the executor applies exactly that plan once.
//!
//! The rules are enforced here, on the click, not in the UI: only users at
//! the approver level; never the requester; each approver counts once;
//! expired requests cannot be approved; a denial is final. Every decision
//! and refusal is audited.

pub mod auth_admin;
mod consequences;
pub mod deploy;
pub mod effects;
pub mod executor;
pub mod followup;
pub mod notify;
pub mod plan;
pub mod render;
mod rls;
pub mod snapshot;
pub mod store;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::Connection;
use tracing::Instrument;

use crate::audit::{self, Event};
use crate::catalog::Entry;
use crate::catalog::args::Value;
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::origin::{Origin, Reply, Via};
use crate::state::AppState;
use crate::store::group::PersonTx;
use crate::targets::{StepError, classify};
use crate::throttle::Verdict;
use plan::{Plan, PlanError};
use snapshot::Snapshot;
use store::{Request, State};

/// `/rollback flag new-tenant-flow` and friends: plan, store, post the card.
pub async fn request(
    state: &Arc<AppState>,
    origin: &Origin,
    entry: Arc<Entry>,
    values: BTreeMap<String, Value>,
    words: Vec<String>,
    target: Option<String>,
) -> Result<Reply, CommandError> {
    let def = &entry.def;
    let approval = def.approval.clone().unwrap_or_default();
    let target = state.target_for(&entry, target.as_deref())?;
    rls::refuse_if_blind(target, &entry).await?;
    let snapshot = Snapshot::of(&entry, &values, &state.config.deploy_hooks)?;
    let snapshot = auth_admin::attach(snapshot, &target.name, &state.config.supabase_auth)?;
    let plan = compute_plan(&snapshot, &values, target).await?;
    auth_admin::preflight(target, &snapshot, &plan).await?;
    let hash = plan::request_hash(&plan, &snapshot);
    let now = state.clock.now_ms();
    let mut tx = state.store.begin_for_person().await?;
    let incident = crate::incident::room::incident_for_channel(&mut tx, origin.channel.as_str()).await?;
    let plan_json = serde_json::to_string(&plan).map_err(anyhow::Error::from)?;
    let new = store::NewRequest {
        command: &def.command,
        name: if def.standalone { "" } else { &def.name },
        words: &words,
        target: &target.name,
        channel: origin.channel.as_str(),
        incident_id: incident.as_ref().map(|i| i.id),
        requested_by: origin.user.as_str(),
        expires_at: now + i64::from(approval.expires_minutes) * 60_000,
        approver_level: approval.level,
        approvals_needed: i64::from(approval.approvals),
        plan: &plan_json,
        snapshot: &snapshot.canonical(),
        plan_hash: &hash,
    };
    let r = store::insert(&mut tx, new, now).await?;
    let detail = format!(
        "requested {} on {} (plan touches {} rows, hash {})",
        r.label(),
        r.target,
        plan.touched,
        plan::short(&hash)
    );
    let event = Event::new(origin, "action_requested", &detail).about(Some(r.id), r.incident_id);
    audit::record(&mut tx, event, now).await?;
    notify::new_card(&mut tx, state, &r, &snapshot, origin.response_url.as_deref()).await?;
    state.outbox.commit_person(tx).await?;
    state.metrics.approval("requested");
    crate::telemetry::record_request(r.id);
    if let Some(i) = r.incident_id {
        crate::telemetry::record_incident(i);
    }
    tracing::info!(request.id = r.id, command.name = %r.kind_name(), slack.user_id = %origin.user, "approval requested");
    Ok(Reply::new(requested_reply(
        origin,
        &r,
        &plan,
        &snapshot,
        approval.expires_minutes,
    )))
}

/// What the requester is told; a terminal also gets the whole plan and script.
fn requested_reply(origin: &Origin, r: &Request, plan: &Plan, snapshot: &Snapshot, minutes: u32) -> String {
    let head = format!(
        ":lock: Approval #{} requested: {} on *{}* touches {} rows (plan hash `{}`). It needs {} approval{} from level {} within {minutes} min.",
        r.id,
        r.label_md(),
        r.target,
        plan.touched,
        plan::short(&r.plan_hash),
        r.approvals_needed,
        if r.approvals_needed == 1 { "" } else { "s" },
        r.approver_level,
    );
    match origin.via {
        Via::Slack => head,
        Via::Terminal { .. } => format!("{head}\n\n{}", render::plan_terminal(plan, snapshot)),
    }
}

async fn compute_plan(
    snapshot: &Snapshot,
    values: &BTreeMap<String, Value>,
    target: &crate::targets::Target,
) -> Result<Plan, UserError> {
    if let Some(hook) = &snapshot.hook {
        return Ok(plan::for_deploy(&hook.service, &hook.method, &hook.endpoint));
    }
    let unreachable = |e: StepError| UserError::new(format!("Target {} {e}; nothing was requested.", target.name));
    let mut conn = target.acquire().await.map_err(unreachable)?;
    let mut tx = conn
        .begin_with("BEGIN READ ONLY")
        .await
        .map_err(|e| unreachable(classify(&e, 0)))?;
    let settings = format!("SET LOCAL statement_timeout = 10000; {}", plan::SESSION_SETTINGS);
    sqlx::raw_sql(sqlx::AssertSqlSafe(settings))
        .execute(&mut *tx)
        .await
        .map_err(|e| unreachable(classify(&e, 0)))?;
    let mut plan = plan::compute(&mut tx, &snapshot.def, values, 10_000)
        .await
        .map_err(|e| match e {
            PlanError::Target(t) => UserError::new(format!("Target {}: {t}; nothing was requested.", target.name)),
            other => UserError::new(format!("Refusing: {other}.")),
        })?;
    plan.database = consequences::of(&mut tx, &snapshot.def, &plan, 10_000).await;
    let _ = tx.rollback().await;
    Ok(plan)
}

/// Approve or Deny clicked on a card.
pub async fn decide(state: &Arc<AppState>, origin: &Origin, id: i64, approve: bool) -> Result<Reply, CommandError> {
    let user = origin.user.as_str();
    let level = state
        .roles
        .approver_level_of(&state.config.roles, &state.slack, user)
        .await;
    let now = state.clock.now_ms();
    let mut click = Click {
        origin,
        user,
        level,
        approve,
        now,
        unrecorded: 0,
    };
    click.unrecorded = throttle_refusal(state, &click, id).await?;
    let mut tx = state.store.begin_for_person().await?;
    // Serialize decisions on this request (a row lock on PostgreSQL; SQLite's
    // write lock already does): concurrent approvers then see each other's
    // votes, so a two-approval request cannot stall with both counted apart.
    store::lock(&mut tx, id).await?;
    let r = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| UserError::new(format!("There is no approval #{id}.")))?;
    if let Some(why) = refusal(&r, &click) {
        return Err(refuse(tx, &click, &r, why).await);
    }
    if approve {
        vote(tx, state, &r, &click).await
    } else {
        deny(tx, state, &r, &click).await
    }
}

/// One click on Approve or Deny.
struct Click<'a> {
    origin: &'a Origin,
    user: &'a str,
    level: Option<Level>,
    approve: bool,
    now: i64,
    /// Refusals of this user's clicks dropped by the throttle since the last
    /// one recorded; said in the next one recorded.
    unrecorded: u32,
}

impl Click<'_> {
    fn verb(&self) -> &'static str {
        if self.approve { "approve" } else { "deny" }
    }
}

/// A click by someone below the approver level is refused whatever else
/// holds; such refusals are recorded and answered once per window per user
/// (`abuse.refusal_window`), so a person hammering a button they may not
/// press writes no rows and holds no writer. Decided on a read, before the
/// write transaction. Returns how many were dropped since the last recorded.
async fn throttle_refusal(state: &AppState, click: &Click<'_>, id: i64) -> Result<u32, CommandError> {
    let mut conn = state.store.pool.acquire().await?;
    let Some(r) = store::get(&mut conn, id).await? else {
        return Ok(0);
    };
    drop(conn);
    if click.level >= Some(r.approver_level) || refusal(&r, click).is_none() {
        return Ok(0);
    }
    match state.refusals.check(click.user, click.now) {
        Verdict::Allow { suppressed } => Ok(suppressed),
        Verdict::Suppress => {
            state.metrics.throttled("refused_click");
            Err(CommandError::Throttled)
        }
    }
}

/// Why this click may not decide this request, if it may not. Pure: the
/// rules live here, on the server, whatever the card shows.
fn refusal(r: &Request, c: &Click<'_>) -> Option<String> {
    let (id, verb) = (r.id, c.verb());
    // A requester may withdraw (deny) their own request at any level.
    let withdrawing = !c.approve && r.requested_by == c.user;
    if r.state != State::Pending {
        Some(format!(
            "Approval #{id} {}; nothing to {verb}.",
            render::state_words(r.state)
        ))
    } else if c.approve && r.requested_by == c.user {
        Some(format!(
            "You requested #{id}; someone else at level {} must approve it.",
            r.approver_level
        ))
    } else if c.level < Some(r.approver_level) && !withdrawing {
        Some(format!(
            "Only level {} can {verb} #{id}; you have {}.",
            r.approver_level,
            c.level.map(|l| l.to_string()).unwrap_or_else(|| "no role".into())
        ))
    } else if c.now >= r.expires_at {
        Some(format!("Approval #{id} has expired; request it again."))
    } else {
        None
    }
}

/// A denial (or a requester's withdrawal): final.
async fn deny(mut tx: PersonTx, state: &AppState, r: &Request, c: &Click<'_>) -> Result<Reply, CommandError> {
    let id = r.id;
    if !store::deny(&mut tx, id, c.user, c.now).await? {
        return Err(refuse(tx, c, r, format!("Approval #{id} was decided meanwhile.")).await);
    }
    let detail = format!("denied #{id} {}", r.label());
    let event = Event::new(c.origin, "approval_denied", &detail).about(Some(id), r.incident_id);
    audit::record(&mut tx, event, c.now).await?;
    let reply = format!(":no_entry: <@{}> denied {}.", c.user, r.label_md());
    notify::card_and_reply(&mut tx, state, id, Some(reply), None).await?;
    state.outbox.commit_person(tx).await?;
    state.metrics.approval("denied");
    Ok(Reply::new(format!("Denied #{id}.")))
}

/// One approver's vote; the request is approved (and applied) once enough
/// approvers voted.
async fn vote(mut tx: PersonTx, state: &Arc<AppState>, r: &Request, c: &Click<'_>) -> Result<Reply, CommandError> {
    let id = r.id;
    if !store::vote(&mut tx, id, c.user, c.now).await? {
        return Err(refuse(
            tx,
            c,
            r,
            format!("You already approved #{id}; each approver counts once."),
        )
        .await);
    }
    let votes = store::votes(&mut tx, id).await?;
    let detail = format!("approved #{id} ({} of {})", votes.len(), r.approvals_needed);
    let event = Event::new(c.origin, "approval_vote", &detail).about(Some(id), r.incident_id);
    audit::record(&mut tx, event, c.now).await?;
    let decided = store::approve(&mut tx, id, c.user, c.now).await?;
    let reply = decided.then(|| format!(":gear: <@{}> approved {}; applying now.", c.user, r.label_md()));
    notify::card_and_reply(&mut tx, state, id, reply, None).await?;
    state.outbox.commit_person(tx).await?;
    if !decided {
        return Ok(Reply::new(format!(
            "Your approval of #{id} is recorded ({} of {}).",
            votes.len(),
            r.approvals_needed
        )));
    }
    state.metrics.approval("approved");
    let apply = executor::run_approved(state.clone(), id).instrument(tracing::Span::current());
    state.tasks.spawn(apply);
    Ok(Reply::new(format!("Approved #{id}; applying it now.")))
}

/// Audit a refused click, commit that, and return the refusal to show.
async fn refuse(mut tx: PersonTx, c: &Click<'_>, r: &Request, why: String) -> CommandError {
    let mut detail = format!("refused to {} #{}: {why}", c.verb(), r.id);
    if c.unrecorded > 0 {
        detail.push_str(&format!(
            " ({} more refused clicks since the last recorded one were not recorded)",
            c.unrecorded
        ));
    }
    let event = Event::new(c.origin, "approval_refused", &detail).about(Some(r.id), r.incident_id);
    let recorded = async {
        audit::record(&mut tx, event, c.now).await?;
        tx.commit().await?;
        anyhow::Ok(())
    };
    if let Err(e) = recorded.await {
        return e.into();
    }
    tracing::info!(request.id = r.id, slack.user_id = c.user, "approval click refused");
    UserError::new(why).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(state: State) -> Request {
        Request {
            id: 7,
            command: "/rollback".into(),
            name: "flag".into(),
            words: store::Words(vec!["x".into()]),
            target: "production".into(),
            channel: "C1".into(),
            incident_id: None,
            requested_by: "UREQ".into(),
            requested_at: 0,
            expires_at: 1_000,
            approver_level: Level::L3,
            approvals_needed: 1,
            plan: String::new(),
            plan_hash: String::new(),
            state,
            decided_by: None,
            result: None,
            snapshot: None,
            lease_until: None,
            target_xid: None,
        }
    }

    fn click(user: &'static str, level: Option<Level>, approve: bool, now: i64) -> Click<'static> {
        let origin = Box::leak(Box::new(Origin {
            user: crate::slack::ids::UserId::parse(user).unwrap(),
            channel: crate::slack::ids::ChannelId::parse("C0INC").unwrap(),
            response_url: None,
            via: Via::Slack,
        }));
        Click {
            origin,
            user,
            level,
            approve,
            now,
            unrecorded: 0,
        }
    }

    #[test]
    fn only_a_pending_request_can_be_decided() {
        let why = refusal(&request(State::Applied), &click("ULEAD", Some(Level::L3), true, 0)).unwrap();
        assert_eq!(why, "Approval #7 was applied and verified; nothing to approve.");
        let why = refusal(&request(State::Denied), &click("ULEAD", Some(Level::L3), false, 0)).unwrap();
        assert_eq!(why, "Approval #7 was denied; nothing to deny.");
    }

    #[test]
    fn the_requester_can_withdraw_but_never_approve() {
        let r = request(State::Pending);
        let why = refusal(&r, &click("UREQ", Some(Level::L3), true, 0)).unwrap();
        assert!(why.starts_with("You requested #7"), "{why}");
        assert_eq!(refusal(&r, &click("UREQ", Some(Level::L2), false, 0)), None);
    }

    #[test]
    fn approvers_need_the_level_and_time() {
        let r = request(State::Pending);
        assert_eq!(
            refusal(&r, &click("UONCALL", Some(Level::L2), true, 0)).unwrap(),
            "Only level l3 can approve #7; you have l2."
        );
        assert_eq!(
            refusal(&r, &click("UNOBODY", None, false, 0)).unwrap(),
            "Only level l3 can deny #7; you have no role."
        );
        assert_eq!(
            refusal(&r, &click("ULEAD", Some(Level::L3), true, 1_000)).unwrap(),
            "Approval #7 has expired; request it again."
        );
        assert_eq!(refusal(&r, &click("ULEAD", Some(Level::L3), true, 999)), None);
    }
}
