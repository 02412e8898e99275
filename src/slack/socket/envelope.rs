//! Socket Mode frames: what Slack sends over the WebSocket (`hello`,
//! `disconnect`, and envelopes carrying a slash command, an interaction or
//! an Events API callback) and the ack we send back. Payloads decode into
//! slack-morphism's models, the same types the HTTP routes decode into.
//!
//! Parsing is tolerant in two steps: the envelope's own fields first, then
//! the payload by type. A payload that does not decode still yields its
//! `envelope_id`, so it can be acknowledged: it will not parse better when
//! Slack sends it again.

use serde::Deserialize;
use serde_json::value::RawValue;
use slack_morphism::prelude::*;

/// One text frame from Slack.
#[derive(Debug)]
pub enum Frame {
    /// The connection is ready.
    Hello,
    /// Slack will close this connection (`refresh_requested`, `link_disabled`)
    /// or warns that it soon will (`warning`).
    Disconnect {
        reason: String,
    },
    Envelope(Envelope),
    /// Not something we can act on; acknowledged when it names an envelope.
    Unreadable {
        envelope_id: Option<String>,
        why: String,
    },
}

#[derive(Debug)]
pub struct Envelope {
    pub id: String,
    /// False when Slack will ignore a payload in the ack (then a command's
    /// reply goes through its `response_url`).
    pub accepts_response_payload: bool,
    /// Set by Slack on a redelivery.
    pub retry_attempt: Option<u32>,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    Command(Box<SlackCommandEvent>),
    Interaction(Box<SlackInteractionEvent>),
    Event(Box<SlackPushEventCallback>),
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Command(_) => "slash_commands",
            Body::Interaction(_) => "interactive",
            Body::Event(_) => "events_api",
        }
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    envelope_id: Option<String>,
    #[serde(default)]
    accepts_response_payload: bool,
    retry_attempt: Option<u32>,
    reason: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

pub fn parse(text: &str) -> Frame {
    let raw: RawFrame<'_> = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            return Frame::Unreadable {
                envelope_id: None,
                why: format!("not a JSON object: {e}"),
            };
        }
    };
    let unreadable = |why: String| Frame::Unreadable {
        envelope_id: raw.envelope_id.clone(),
        why,
    };
    let kind = raw.kind.as_deref().unwrap_or("");
    match kind {
        "hello" => return Frame::Hello,
        "disconnect" => {
            return Frame::Disconnect {
                reason: raw.reason.clone().unwrap_or_else(|| "unspecified".into()),
            };
        }
        _ => {}
    }
    let Some(id) = raw.envelope_id.clone().filter(|id| !id.trim().is_empty()) else {
        return unreadable(format!("a `{kind}` frame without an envelope_id"));
    };
    let Some(payload) = raw.payload else {
        return unreadable(format!("a `{kind}` envelope without a payload"));
    };
    let body = match kind {
        "slash_commands" => decode(payload).map(|c| Body::Command(Box::new(c))),
        "interactive" => decode(payload).map(|i| Body::Interaction(Box::new(i))),
        "events_api" => decode(payload).map(|e| Body::Event(Box::new(e))),
        other => Err(format!("unknown envelope type `{other}`")),
    };
    match body {
        Ok(body) => Frame::Envelope(Envelope {
            id,
            accepts_response_payload: raw.accepts_response_payload,
            retry_attempt: raw.retry_attempt,
            body,
        }),
        Err(why) => unreadable(format!("`{kind}` payload: {why}")),
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &RawValue) -> Result<T, String> {
    serde_json::from_str(payload.get()).map_err(|e| e.to_string())
}

/// What we answer an envelope with.
#[derive(Debug, Clone, PartialEq)]
pub enum Ack {
    /// Received; nothing to show.
    Bare,
    /// A slash command's inline reply, exactly what the HTTP route returns
    /// as its 200 body.
    Command(Box<SlackCommandEventResponse>),
}

/// The ack frame for an envelope: `{"envelope_id": …, "payload": …}`.
/// (slack-morphism's ack models are not exported: its `socket_mode` module
/// name shadows them.)
pub fn ack_frame(envelope_id: &str, ack: &Ack) -> String {
    let frame = match ack {
        Ack::Bare => serde_json::json!({ "envelope_id": envelope_id }),
        Ack::Command(reply) => serde_json::json!({ "envelope_id": envelope_id, "payload": reply }),
    };
    frame.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn command_payload() -> Value {
        json!({
            "token": "legacy", "team_id": "T0TEAM", "team_domain": "acme",
            "channel_id": "C0INC", "channel_name": "incidents",
            "user_id": "U0ONCALL", "user_name": "someone",
            "command": "/incident", "text": "p1 Login failing",
            "api_app_id": "A0APP", "is_enterprise_install": "false",
            "response_url": "https://hooks.slack.com/commands/T0/1/x",
            "trigger_id": "1.2.abc"
        })
    }

    fn envelope(kind: &str, payload: Value) -> String {
        json!({"type": kind, "envelope_id": "env-1", "accepts_response_payload": true, "payload": payload}).to_string()
    }

    #[test]
    fn hello_and_disconnect_are_control_frames() {
        let hello = r#"{"type":"hello","num_connections":1,"connection_info":{"app_id":"A0"}}"#;
        assert!(matches!(parse(hello), Frame::Hello));
        let bye = r#"{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"x"}}"#;
        assert!(matches!(parse(bye), Frame::Disconnect { reason } if reason == "refresh_requested"));
        assert!(matches!(parse(r#"{"type":"disconnect"}"#), Frame::Disconnect { reason } if reason == "unspecified"));
    }

    #[test]
    fn a_slash_command_envelope_decodes_into_slack_morphisms_command() {
        let Frame::Envelope(e) = parse(&envelope("slash_commands", command_payload())) else {
            panic!("not an envelope");
        };
        assert_eq!(e.id, "env-1");
        assert!(e.accepts_response_payload);
        assert_eq!(e.retry_attempt, None);
        let Body::Command(c) = e.body else {
            panic!("not a command")
        };
        assert_eq!(c.command.0, "/incident");
        assert_eq!(c.text.as_deref(), Some("p1 Login failing"));
        assert_eq!(c.trigger_id.0, "1.2.abc");
    }

    #[test]
    fn interactions_and_events_decode_with_their_ids() {
        let click = json!({
            "type": "block_actions", "team": {"id": "T0TEAM", "domain": "acme"},
            "user": {"id": "U0LEAD", "username": "lead", "team_id": "T0TEAM"},
            "api_app_id": "A0APP", "trigger_id": "9.9.z",
            "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0INC", "is_ephemeral": false},
            "channel": {"id": "C0INC", "name": "incidents"},
            "actions": [{"type": "button", "action_id": "incident_ack", "block_id": "b", "value": "1", "action_ts": "1.3"}]
        });
        let Frame::Envelope(e) = parse(&envelope("interactive", click)) else {
            panic!()
        };
        assert!(matches!(e.body, Body::Interaction(ref i) if matches!(**i, SlackInteractionEvent::BlockActions(_))));
        let event = json!({
            "type": "event_callback", "team_id": "T0TEAM", "api_app_id": "A0APP", "event_id": "Ev01", "event_time": 1700000000,
            "event": {"type": "app_mention", "user": "U0ONCALL", "text": "<@U0BOT> help", "ts": "1.5", "channel": "C0INC", "event_ts": "1.5"}
        });
        let text = json!({"type": "events_api", "envelope_id": "env-2", "accepts_response_payload": false,
            "retry_attempt": 1, "retry_reason": "timeout", "payload": event})
        .to_string();
        let Frame::Envelope(e) = parse(&text) else { panic!() };
        assert_eq!(
            (e.id.as_str(), e.retry_attempt, e.body.kind()),
            ("env-2", Some(1), "events_api")
        );
        let Body::Event(cb) = e.body else { panic!() };
        assert_eq!(cb.event_id.0, "Ev01");
    }

    #[test]
    fn garbage_is_unreadable_and_keeps_an_envelope_id_when_there_is_one() {
        assert!(matches!(parse("not json"), Frame::Unreadable { envelope_id: None, .. }));
        assert!(matches!(parse("[1,2]"), Frame::Unreadable { envelope_id: None, .. }));
        let bad = envelope("slash_commands", json!({"user_id": "U0"}));
        let Frame::Unreadable { envelope_id, why } = parse(&bad) else {
            panic!()
        };
        assert_eq!(envelope_id.as_deref(), Some("env-1"));
        assert!(why.contains("slash_commands"), "{why}");
        let unknown = envelope("shiny_new_thing", json!({}));
        assert!(
            matches!(parse(&unknown), Frame::Unreadable { envelope_id: Some(_), why } if why.contains("unknown envelope type"))
        );
        let no_id = json!({"type": "slash_commands", "payload": command_payload()}).to_string();
        assert!(matches!(parse(&no_id), Frame::Unreadable { envelope_id: None, .. }));
        let no_payload = json!({"type": "events_api", "envelope_id": "env-3"}).to_string();
        assert!(matches!(
            parse(&no_payload),
            Frame::Unreadable {
                envelope_id: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn acks_name_the_envelope_and_carry_a_commands_reply() {
        let bare: Value = serde_json::from_str(&ack_frame("env-1", &Ack::Bare)).unwrap();
        assert_eq!(bare, json!({"envelope_id": "env-1"}));
        let reply = SlackCommandEventResponse::new(SlackMessageContent::new().with_text("Declared".into()))
            .with_response_type(SlackMessageResponseType::Ephemeral);
        let ack: Value = serde_json::from_str(&ack_frame("env-1", &Ack::Command(Box::new(reply)))).unwrap();
        assert_eq!(
            ack,
            json!({"envelope_id": "env-1", "payload": {"text": "Declared", "response_type": "ephemeral"}})
        );
    }
}
