//! Query strings the console accepts, parsed into typed filters before any
//! SQL sees them (every value is then a bound parameter). An empty field is
//! "no filter", as HTML forms send every field; anything else that does not
//! parse is refused with what was wrong.

use chrono::NaiveDate;

use crate::incident::model::State;
use crate::severity::Severity;

/// Longest service name or search text accepted.
pub const TEXT_MAX: usize = 100;
const DAY_MS: i64 = 86_400_000;

/// The incident list's filters and its keyset cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    pub severity: Option<Severity>,
    pub state: Option<State>,
    pub service: Option<String>,
    /// Declared on or after this day (UTC), as ms.
    pub from: Option<i64>,
    /// Declared before the end of this day (UTC), as ms.
    pub to: Option<i64>,
    /// Show incidents with a smaller id (the next page).
    pub before: Option<i64>,
}

/// A parsed query string: its pairs, each value trimmed.
pub fn pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let v: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|_| "The query string does not parse.".to_string())?;
    Ok(v.into_iter().map(|(k, v)| (k, v.trim().to_string())).collect())
}

fn day(field: &str, v: &str) -> Result<i64, String> {
    let d =
        NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| format!("`{field}` must be a date like 2026-01-31."))?;
    Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
}

/// A positive number (an id, a page).
pub fn positive(field: &str, v: &str) -> Result<i64, String> {
    v.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{field}` must be a positive number."))
}

/// Free text (a service, a search): bounded, printable.
pub fn text(field: &str, v: &str) -> Result<String, String> {
    if v.chars().count() > TEXT_MAX {
        return Err(format!("`{field}` is too long; keep it under {TEXT_MAX} characters."));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("`{field}` must not contain control characters."));
    }
    Ok(v.to_string())
}

impl IncidentFilter {
    pub fn parse(pairs: &[(String, String)]) -> Result<IncidentFilter, String> {
        let mut f = IncidentFilter::default();
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            match k.as_str() {
                "severity" => {
                    f.severity = Some(
                        Severity::parse(&v.to_ascii_lowercase())
                            .map_err(|_| "`severity` must be one of p0, p1, p2, p3.".to_string())?,
                    )
                }
                "state" => {
                    f.state = Some(
                        State::parse(v)
                            .ok_or_else(|| "`state` must be one of declared, acknowledged, resolved.".to_string())?,
                    )
                }
                "service" => f.service = Some(text("service", v)?),
                "from" => f.from = Some(day("from", v)?),
                "to" => f.to = Some(day("to", v)? + DAY_MS),
                "before" => f.before = Some(positive("before", v)?),
                other => {
                    return Err(format!(
                        "Unknown filter `{}`.",
                        other.chars().take(30).collect::<String>()
                    ));
                }
            }
        }
        if let (Some(a), Some(b)) = (f.from, f.to)
            && a >= b
        {
            return Err("`from` must not be after `to`.".into());
        }
        Ok(f)
    }

    /// The same filters as a query string, with another cursor.
    pub fn query(&self, before: Option<i64>) -> String {
        let date = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        let mut out: Vec<(&str, String)> = Vec::new();
        if let Some(s) = self.severity {
            out.push(("severity", s.as_str().into()));
        }
        if let Some(s) = self.state {
            out.push(("state", s.as_str().into()));
        }
        if let Some(s) = &self.service {
            out.push(("service", s.clone()));
        }
        if let Some(ms) = self.from {
            out.push(("from", date(ms)));
        }
        if let Some(ms) = self.to {
            out.push(("to", date(ms - DAY_MS)));
        }
        if let Some(b) = before {
            out.push(("before", b.to_string()));
        }
        serde_urlencoded::to_string(out).unwrap_or_default()
    }

    /// The date fields as typed, for the form.
    pub fn from_text(&self) -> String {
        self.from.map(ymd).unwrap_or_default()
    }

    pub fn to_text(&self) -> String {
        self.to.map(|t| ymd(t - DAY_MS)).unwrap_or_default()
    }
}

fn ymd(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `?page=N` (1-based) and optional free-text `q`, for paged tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    pub page: i64,
    pub q: Option<String>,
}

impl Paging {
    /// `max_page` bounds the OFFSET a request can make the database skip;
    /// a page beyond it is refused like any other bad parameter.
    pub fn parse(pairs: &[(String, String)], allow_q: bool, max_page: i64) -> Result<Paging, String> {
        let mut p = Paging { page: 1, q: None };
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            match k.as_str() {
                "page" => {
                    p.page = positive("page", v)?;
                    if p.page > max_page {
                        return Err(format!("`page` must be at most {max_page}."));
                    }
                }
                "q" if allow_q => p.q = Some(text("q", v)?),
                "posted" => {}
                other => {
                    return Err(format!(
                        "Unknown parameter `{}`.",
                        other.chars().take(30).collect::<String>()
                    ));
                }
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<IncidentFilter, String> {
        IncidentFilter::parse(&pairs(Some(q)).unwrap())
    }

    #[test]
    fn filters_parse_and_round_trip() {
        let f = parse("severity=P1&state=resolved&service=api&from=2026-01-01&to=2026-01-31&before=40").unwrap();
        assert_eq!(f.severity, Some(Severity::P1));
        assert_eq!(f.state, Some(State::Resolved));
        assert_eq!(f.service.as_deref(), Some("api"));
        assert_eq!(f.from, Some(1_767_225_600_000));
        assert_eq!(f.to, Some(1_767_225_600_000 + 31 * DAY_MS));
        assert_eq!(parse(&f.query(Some(40))).unwrap(), f);
        assert_eq!(f.to_text(), "2026-01-31");
        assert_eq!(parse("severity=&state=&service=").unwrap(), IncidentFilter::default());
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        assert!(parse("severity=p9").unwrap_err().contains("`severity`"));
        assert!(parse("state=open").unwrap_err().contains("`state`"));
        assert!(parse("from=yesterday").unwrap_err().contains("`from`"));
        assert!(parse("to=2026-13-01").unwrap_err().contains("`to`"));
        assert!(parse("from=2026-02-01&to=2026-01-01").unwrap_err().contains("after"));
        assert!(parse("before=0").unwrap_err().contains("positive"));
        assert!(parse("before=1%3BDROP").unwrap_err().contains("positive"));
        assert!(
            parse(&format!("service={}", "x".repeat(101)))
                .unwrap_err()
                .contains("too long")
        );
        assert!(parse("service=a%00b").unwrap_err().contains("control"));
        assert!(parse("sort=id").unwrap_err().contains("Unknown filter `sort`"));
    }

    #[test]
    fn paging() {
        let p = Paging::parse(&pairs(Some("page=3&q=abc")).unwrap(), true, 200).unwrap();
        assert_eq!(
            p,
            Paging {
                page: 3,
                q: Some("abc".into())
            }
        );
        assert!(Paging::parse(&pairs(Some("q=abc")).unwrap(), false, 200).is_err());
        assert!(Paging::parse(&pairs(Some("page=-1")).unwrap(), true, 200).is_err());
        assert_eq!(Paging::parse(&[], true, 200).unwrap().page, 1);
        assert_eq!(
            Paging::parse(&pairs(Some("page=200")).unwrap(), true, 200)
                .unwrap()
                .page,
            200
        );
        let too_far = Paging::parse(&pairs(Some("page=201")).unwrap(), true, 200).unwrap_err();
        assert!(too_far.contains("at most 200"), "{too_far}");
        assert!(Paging::parse(&pairs(Some("page=99999999999999999999")).unwrap(), true, 200).is_err());
    }
}
