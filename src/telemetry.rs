//! Log subscriber setup. Log lines carry identifiers in fields
//! (`incident.id`, `command.name`, `slack.user_id`, `request.id` for an
//! approval request, `http.request_id` for one HTTP request), never tokens,
//! secrets or message text typed by people.
//!
//! `LOG_FORMAT=json` writes one JSON object per line, with each enclosing
//! span's fields under `spans` (outermost first) and the innermost under
//! `span`; otherwise human-readable text, coloured on a terminal.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT`'s value; anything but `json` or `text` is refused.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!("LOG_FORMAT `{other}` is neither `json` nor `text`")),
        }
    }
}

pub fn init() {
    let (format, problem) = match LogFormat::parse(std::env::var("LOG_FORMAT").ok().as_deref()) {
        Ok(f) => (f, None),
        Err(why) => (LogFormat::Text, Some(why)),
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,slack_morphism=warn,hyper=warn"));
    let ansi = std::io::stdout().is_terminal();
    let _ = tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stdout, ansi));
    if let Some(why) = problem {
        tracing::warn!("{why}; writing text logs");
    }
}

/// The subscriber `init` installs, writing to `writer`; tests capture it.
pub fn subscriber<W>(format: LogFormat, filter: EnvFilter, writer: W, ansi: bool) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().with_current_span(true).with_span_list(true).finish()),
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
    }
}

/// The incident the current command acts on, for its span's `incident.id`.
pub fn record_incident(id: i64) {
    tracing::Span::current().record("incident.id", id);
}

/// The approval request the current command made or decides.
pub fn record_request(id: i64) {
    tracing::Span::current().record("request.id", id);
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_request_command_incident_and_approval_ids() {
        let out = Captured::default();
        let writer = out.clone();
        let sub = subscriber(LogFormat::Json, EnvFilter::new("info"), move || writer.clone(), false);
        tracing::subscriber::with_default(sub, || {
            let http = tracing::info_span!("http", http.request_id = "r-1", http.route = "/slack/commands");
            let _h = http.enter();
            let cmd = tracing::info_span!(
                "command",
                command.name = "approval.approve",
                incident.id = tracing::field::Empty,
                request.id = tracing::field::Empty
            );
            let _c = cmd.enter();
            record_incident(42);
            record_request(7);
            tracing::info!(outbox.id = 3, "something happened");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = &lines[0];
        assert_eq!(line["fields"]["message"], "something happened");
        assert_eq!(line["fields"]["outbox.id"], 3);
        assert_eq!(line["spans"][0]["http.request_id"], "r-1");
        assert_eq!(line["span"]["command.name"], "approval.approve");
        assert_eq!(line["span"]["incident.id"], 42);
        assert_eq!(line["span"]["request.id"], 7);
    }

    #[test]
    fn log_format_is_json_or_text() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert!(LogFormat::parse(Some("yaml")).unwrap_err().contains("yaml"));
    }
}
