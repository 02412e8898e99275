//! Approval flows as a person drives them: request, click, wait for the state.

use std::time::{Duration, Instant};

use sqlx::Row;

use super::{L2, L3, TestApp};

pub async fn request_state(t: &TestApp, id: i64) -> String {
    sqlx::query_scalar::<_, String>("SELECT state FROM approval_requests WHERE id = $1")
        .bind(id)
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap()
}

pub async fn wait_state(t: &TestApp, id: i64, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = request_state(t, id).await;
        if s == want {
            return;
        }
        if Instant::now() >= deadline {
            let result: Option<String> = sqlx::query_scalar("SELECT result FROM approval_requests WHERE id = $1")
                .bind(id)
                .fetch_one(&t.state().store.pool)
                .await
                .unwrap();
            panic!("request {id} is `{s}`, wanted `{want}`: {result:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The last ephemeral text the fake Slack got through a response_url.
pub fn last_ephemeral(t: &TestApp) -> String {
    t.slack
        .ok_calls("response_url")
        .last()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

pub async fn click_reply(t: &TestApp, user: &str, action: &str, id: i64) -> String {
    let before = t.slack.ok_calls("response_url").len();
    assert_eq!(t.click(user, action, &id.to_string()).await.status(), 200);
    t.slack
        .wait_for(10, "the click's reply", |c| {
            c.iter().filter(|c| c.ok && c.method == "response_url").count() > before
        })
        .await;
    last_ephemeral(t)
}

pub async fn audit_kinds(t: &TestApp, id: i64) -> Vec<String> {
    sqlx::query("SELECT kind FROM audit_events WHERE request_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(&t.state().store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("kind"))
        .collect()
}

/// Request, approve as the tech lead, wait for `applied`.
pub async fn request_and_apply(t: &TestApp, command: &str, text: &str) -> String {
    let reply = t.slash(L2, command, text).await;
    assert!(reply.contains("Approval #"), "{reply}");
    let id: i64 = reply
        .split("Approval #")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        click_reply(t, L3, "approval_approve", id).await,
        format!("Approved #{id}; applying it now.")
    );
    wait_state(t, id, "applied").await;
    reply
}

/// Everything Slack got once approval `id`'s card has been posted (the
/// card goes through the outbox, so it may trail the command's reply).
pub async fn with_card(t: &TestApp, id: i64) -> String {
    let card = format!("Approval #{id}: ");
    t.slack
        .wait_for(10, "the approval card", |c| {
            c.iter()
                .any(|c| c.ok && c.method == "chat.postMessage" && c.body.to_string().contains(&card))
        })
        .await
        .iter()
        .map(|c| c.body.to_string())
        .collect()
}
