//! Turning user-typed text into safe mrkdwn and back.

/// Escape the three characters Slack's mrkdwn gives meaning to in angle
/// brackets, so user data can never become a mention (`<!channel>`), a link
/// or a user ping. Formatting characters are neutralised with a zero-width
/// space so `*bold*` typed by someone stays literal.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in escape_entities(text).chars() {
        out.push(c);
        if matches!(c, '*' | '_' | '~' | '`') {
            out.push('\u{200B}');
        }
    }
    out
}

/// Only the entity escaping (`&`, `<`, `>`): for text inside a code span,
/// where formatting characters are already literal.
pub fn escape_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Slack rejects a section whose text exceeds 3,000 characters; escaping
/// lengthens text, so blocks are cut to fit after escaping.
pub const SECTION_MAX: usize = 2990;

/// Cut `text` to at most `max` characters (on a character boundary).
pub fn fit(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// A configured URL as it may be shown in Slack: scheme, host, port and
/// path only — never user:password or a `?token=` query.
pub fn public_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}{}", u.scheme(), u.host_str().unwrap_or(""), u.path())
        }
        Err(_) => "(unparseable URL)".into(),
    }
}

/// A configured URL reduced to where it points: scheme, host and port.
/// Deploy providers put secrets in the path, so hooks are shown this way.
pub fn origin_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) => "(unparseable URL)".into(),
    }
}

/// Text as it really is: control characters, zero-width and bidirectional
/// marks, and the backslash itself written out (`\n`, `\u{1b}`, `\\`), so
/// a value from a database cannot forge extra lines in a plan, recolour or
/// rewrite a terminal, or reorder what an approver reads.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `visible` for each line, keeping the text's own line breaks.
pub fn visible_lines(text: &str) -> String {
    text.lines().map(visible).collect::<Vec<_>>().join("\n")
}

/// Characters that change how text around them is shown without showing
/// themselves: zero-width spaces and joiners, bidi embeddings and overrides.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Text for inside a ``` block: entities escaped, and a fence in the text
/// cannot close the block early.
pub fn escape_code_block(text: &str) -> String {
    escape_entities(text).replace("```", "'''")
}

/// Slash-command text arrives with Slack's own escaping: `&lt;`, `&gt;`,
/// `&amp;`, and `<@U1|name>`, `<#C1|chan>`, `<https://x|label>` links.
/// Decode it into what the person typed, for storage as plain text.
pub fn decode_command_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..start + end];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        let readable = match (target.chars().next(), label) {
            (Some('@'), Some(l)) => format!("@{l}"),
            (Some('#'), Some(l)) => format!("#{l}"),
            (Some('!'), _) => format!("@{}", target.trim_start_matches('!').split('^').next().unwrap_or("")),
            (_, Some(l)) => l.to_string(),
            _ => target.to_string(),
        };
        out.push_str(&readable);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_mentions_and_formatting() {
        assert_eq!(escape("<!channel> & <@U1>"), "&lt;!channel&gt; &amp; &lt;@U1&gt;");
        let e = escape("*boom*");
        assert_ne!(e, "*boom*");
        assert!(!e.contains("*boom"));
    }

    #[test]
    fn decode_turns_slack_escapes_into_plain_text() {
        assert_eq!(
            decode_command_text("Login &lt;fails&gt; &amp; more"),
            "Login <fails> & more"
        );
        assert_eq!(decode_command_text("ping <@U1|bob> in <#C1|ops>"), "ping @bob in #ops");
        assert_eq!(decode_command_text("see <https://x.io|the doc>"), "see the doc");
        assert_eq!(decode_command_text("<!channel> now"), "@channel now");
        assert_eq!(decode_command_text("a < b"), "a < b");
    }

    #[test]
    fn fit_cuts_on_character_boundaries() {
        assert_eq!(fit("héllo".into(), 10), "héllo");
        assert_eq!(fit("héllo".into(), 3), "hé…");
        let long = escape(&"&".repeat(2000));
        assert_eq!(fit(long, SECTION_MAX).chars().count(), SECTION_MAX);
    }

    #[test]
    fn public_urls_drop_credentials_and_queries() {
        assert_eq!(
            public_url("https://u:pw@api.example.com:8443/health?token=s3cret"),
            "https://api.example.com:8443/health"
        );
        assert_eq!(public_url("nonsense"), "(unparseable URL)");
    }

    #[test]
    fn hook_urls_show_only_where_they_point() {
        assert_eq!(
            origin_url("https://u:pw@hooks.example.com:8443/T0KEN/rollback?x=1"),
            "https://hooks.example.com:8443"
        );
    }

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(visible("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(visible("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(visible("abc\u{202E}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("C:\\path"), "C:\\\\path");
        assert_eq!(visible("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn decoded_then_escaped_cannot_mention() {
        let stored = decode_command_text("&lt;!channel&gt;");
        assert_eq!(stored, "<!channel>");
        assert!(!escape(&stored).contains("<!channel>"));
    }
}
