//! `[targets.<name>] supabase_url` and `service_role_key`: the Supabase
//! Auth (GoTrue) admin API of the project a target database belongs to,
//! used by catalog steps that call it (`[[auth_admin]]`, e.g. a
//! password-recovery link). Both or neither; the key is a secret.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::RawTarget;

/// One target's Supabase Auth admin API.
#[derive(Debug, Clone)]
pub struct SupabaseAuth {
    /// `https://<ref>.supabase.co`, without a trailing `/`.
    pub url: String,
    /// Grants every admin call; `Debug` never shows it.
    pub service_role_key: SecretString,
}

type Push<'a> = &'a mut dyn FnMut(&str, String);

/// The targets that have Supabase Auth settings, by target name. One
/// problem per field: a URL that is not http(s), an empty key, or one of
/// the two without the other.
pub(super) fn auth(raw: &BTreeMap<String, RawTarget>, push: Push<'_>) -> BTreeMap<String, SupabaseAuth> {
    let mut out = BTreeMap::new();
    for (name, t) in raw {
        let field = |k: &str| format!("targets.{name}.{k}");
        let url = t.supabase_url.as_deref().map(|u| base_url(u).ok_or(u));
        let key = t.service_role_key.as_ref();
        match (url, key) {
            (None, None) => {}
            (Some(_), None) => push(
                &field("service_role_key"),
                "missing: `supabase_url` is set, and calling Supabase Auth needs the project's service role key".into(),
            ),
            (None, Some(_)) => push(
                &field("supabase_url"),
                "missing: `service_role_key` is set; name the project as `https://<ref>.supabase.co`".into(),
            ),
            (Some(url), Some(key)) => {
                let key_ok = !key.expose_secret().trim().is_empty();
                if !key_ok {
                    push(&field("service_role_key"), "must not be empty".into());
                }
                match url {
                    // Still `${…}`: its missing variable is already reported.
                    Err(raw) if raw.contains("${") => {}
                    Err(_) => push(
                        &field("supabase_url"),
                        "must be an https URL like https://<ref>.supabase.co (http only to localhost; no query, no credentials)".into(),
                    ),
                    Ok(url) if key_ok => {
                        let service_role_key = key.clone();
                        out.insert(name.clone(), SupabaseAuth { url, service_role_key });
                    }
                    Ok(_) => {}
                }
            }
        }
    }
    out
}

/// An https URL (plain http only to this machine: a local Supabase or a
/// test) with a host and nothing a base URL must not carry (user info, a
/// query, a fragment), without its trailing `/`. The service role key and
/// the recovery links it fetches never cross a network in clear text.
fn base_url(raw: &str) -> Option<String> {
    let u = url::Url::parse(raw.trim()).ok()?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let plain = (u.scheme() == "https" || (u.scheme() == "http" && loopback))
        && u.host_str().is_some_and(|h| !h.is_empty())
        && u.username().is_empty()
        && u.password().is_none()
        && u.query().is_none()
        && u.fragment().is_none();
    plain.then(|| u.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = r#"
        [slack]
        bot_token = "t"
        incident_channel = "C0INC"
        [targets.production]
        url = "postgres://bot@db/app"
    "#;

    fn parse(extra: &str, env: &[(&str, &str)]) -> Result<Config, Vec<crate::config::Problem>> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Config::parse("f.toml", &format!("{BASE}{extra}"), &lookup)
    }

    #[test]
    fn a_target_may_name_its_supabase_auth_and_the_key_stays_secret() {
        let c = parse(
            "supabase_url = \"https://abcd.supabase.co/\"\nservice_role_key = \"${SUPABASE_SERVICE_ROLE_KEY}\"\n",
            &[("SUPABASE_SERVICE_ROLE_KEY", "eyJ-service-role")],
        )
        .unwrap();
        let auth = &c.supabase_auth["production"];
        assert_eq!(auth.url, "https://abcd.supabase.co");
        assert_eq!(auth.service_role_key.expose_secret(), "eyJ-service-role");
        assert!(!format!("{c:?}").contains("eyJ-service-role"));
        assert!(parse("", &[]).unwrap().supabase_auth.is_empty());
    }

    #[test]
    fn each_bad_supabase_field_is_one_problem() {
        let problems = |extra: &str, env: &[(&str, &str)]| -> Vec<String> {
            parse(extra, env)
                .unwrap_err()
                .iter()
                .map(|p| format!("{}: {}", p.field, p.why))
                .collect()
        };
        let e = problems(
            "supabase_url = \"ftp://abcd.supabase.co\"\nservice_role_key = \" \"\n",
            &[],
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("targets.production.service_role_key: must not be empty"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("targets.production.supabase_url: must be an https URL"),
            "{e:?}"
        );
        let e = problems("supabase_url = \"https://abcd.supabase.co\"\n", &[]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("targets.production.service_role_key: missing"),
            "{e:?}"
        );
        let e = problems("service_role_key = \"k\"\n", &[]);
        assert!(e[0].starts_with("targets.production.supabase_url: missing"), "{e:?}");
        let e = problems("supabase_url = \"${NOPE}\"\nservice_role_key = \"k\"\n", &[]);
        assert_eq!(
            e,
            ["targets.production.supabase_url: environment variable NOPE is not set"]
        );
    }

    #[test]
    fn base_urls_are_http_with_a_host_and_nothing_else() {
        assert_eq!(
            base_url("https://abcd.supabase.co/").as_deref(),
            Some("https://abcd.supabase.co")
        );
        assert_eq!(
            base_url("http://127.0.0.1:54321").as_deref(),
            Some("http://127.0.0.1:54321")
        );
        for bad in [
            "http://abcd.supabase.co",
            "http://10.0.0.5:8000",
            "abcd.supabase.co",
            "ftp://abcd.supabase.co",
            "https://user:pw@abcd.supabase.co",
            "https://abcd.supabase.co/?apikey=x",
            "file:///etc/passwd",
        ] {
            assert_eq!(base_url(bad), None, "{bad}");
        }
    }
}
