//! `deploy/` agrees with the code: the Kubernetes ConfigMaps carry exactly
//! `deploy/runbook-bot.toml` and `commands/`, the shipped container config
//! loads, and the image, unit and manifests agree on user, paths and health
//! checks. The schema checks of the manifests are `.ci/run`'s
//! (kubernetes-validate, docker-compose config, promtool).
//!
//! `UPDATE_DEPLOY=1 cargo test --test integration deploy::` rewrites the
//! generated parts after a catalog or config change.

use std::path::{Path, PathBuf};

use runbook_bot::catalog::Catalog;
use runbook_bot::config::Config;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file under `commands/`, as (path relative to it, content), sorted.
fn catalog_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let base = root().join("commands");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

/// ConfigMap keys may not contain "/".
fn key(rel: &str) -> String {
    rel.replace('/', "__")
}

/// A YAML literal block holding `text` exactly, under a key at indent 2.
fn block(text: &str) -> String {
    let chomp = match text.strip_suffix('\n') {
        None => "-",
        Some(t) if t.ends_with('\n') || t.is_empty() => "+",
        Some(_) => "",
    };
    let mut out = format!("|{chomp}\n");
    for line in text.lines() {
        assert!(
            line.is_empty() || !line.trim().is_empty(),
            "a whitespace-only line does not survive YAML: {line:?}"
        );
        if !line.is_empty() {
            out.push_str("    ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn configmap(name: &str, source: &str, data: &[(String, String)]) -> String {
    let mut out = format!(
        "# Generated from {source} by tests/integration/deploy.rs; do not edit.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: runbook-bot\ndata:\n"
    );
    for (k, text) in data {
        assert!(
            !text.starts_with([' ', '\t']),
            "{k}: a first line starting with a space"
        );
        out.push_str(&format!("  {k}: {}", block(text)));
    }
    out
}

/// The deployment's `items` between its BEGIN and END markers.
fn with_items(deployment: &str, files: &[(String, String)]) -> String {
    const BEGIN: &str = "              # BEGIN catalog items\n";
    const END: &str = "              # END catalog items\n";
    let (head, rest) = deployment.split_once(BEGIN).expect("BEGIN catalog items marker");
    let (_, tail) = rest.split_once(END).expect("END catalog items marker");
    let items: String = files
        .iter()
        .map(|(rel, _)| format!("              - {{ key: {}, path: {rel} }}\n", key(rel)))
        .collect();
    format!("{head}{BEGIN}{items}{END}{tail}")
}

/// Compare a generated file with what is committed, or rewrite it.
fn generated(rel: &str, want: &str) {
    let path = root().join(rel);
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        std::fs::write(&path, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{rel} is out of date; run `UPDATE_DEPLOY=1 cargo test --test integration deploy::`"
    );
}

#[test]
fn configmaps_carry_exactly_the_container_config_and_the_catalog() {
    let files = catalog_files();
    assert!(files.iter().any(|(r, _)| r == "diagnose/orphans.toml"), "{files:?}");
    let data: Vec<_> = files.iter().map(|(r, t)| (key(r), t.clone())).collect();
    generated(
        "deploy/kubernetes/catalog.yaml",
        &configmap("runbook-bot-catalog", "commands/", &data),
    );
    let config = vec![("runbook-bot.toml".to_string(), read("deploy/runbook-bot.toml"))];
    generated(
        "deploy/kubernetes/configmap.yaml",
        &configmap("runbook-bot-config", "deploy/runbook-bot.toml", &config),
    );
    generated(
        "deploy/kubernetes/deployment.yaml",
        &with_items(&read("deploy/kubernetes/deployment.yaml"), &files),
    );
}

#[test]
fn the_container_config_loads_with_the_secrets_keys_and_finds_the_mounted_catalog() {
    let secret = read("deploy/kubernetes/secret.example.yaml");
    let keys: Vec<&str> = secret
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(": ").map(|(k, _)| k))
        .filter(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(
        keys.contains(&"DATABASE_URL") && keys.contains(&"SLACK_BOT_TOKEN"),
        "{keys:?}"
    );
    let env = |name: &str| match name {
        n if n.ends_with("DATABASE_URL") => Some("postgres://u:p@db.example.internal/app".to_string()),
        n if keys.contains(&n) => Some("x".to_string()),
        _ => None,
    };
    let text = read("deploy/runbook-bot.toml");
    let cfg = Config::parse("deploy/runbook-bot.toml", &text, &env).unwrap_or_else(|p| panic!("{p:?}"));
    assert!(cfg.serve_problems().is_empty(), "{:?}", cfg.serve_problems());
    assert_eq!(cfg.commands_dir, Path::new("/usr/share/runbook-bot/commands"));
    let catalog = Catalog::load(&root().join("commands")).expect("the catalog loads");
    let targets = cfg.targets.keys().cloned().collect();
    assert!(catalog.unknown_targets(&targets).is_empty());

    let deployment = read("deploy/kubernetes/deployment.yaml");
    assert!(deployment.contains("mountPath: /usr/share/runbook-bot/commands, readOnly: true"));
    assert!(deployment.contains("mountPath: /etc/runbook-bot, readOnly: true"));
}

#[test]
fn image_unit_and_manifests_agree_on_user_health_and_read_only_catalog() {
    let dockerfile = read("deploy/Dockerfile");
    let healthcheck = dockerfile.lines().find(|l| l.starts_with("HEALTHCHECK")).unwrap();
    assert!(
        healthcheck.ends_with(r#"CMD ["runbook-bot", "health"]"#),
        "{healthcheck}"
    );
    assert!(!dockerfile.contains("/bin/sh") && !dockerfile.contains("/dev/tcp"));
    assert!(dockerfile.contains("\nUSER 10001:10001\n"));
    assert!(dockerfile.contains("COPY --from=build /src/commands /usr/share/runbook-bot/commands\n"));
    assert!(!dockerfile.contains("--chown"), "the catalog stays root's");

    let deployment = read("deploy/kubernetes/deployment.yaml");
    for needle in [
        "replicas: 2",
        "runAsNonRoot: true",
        "runAsUser: 10001",
        "readOnlyRootFilesystem: true",
        "httpGet: { path: /healthz, port: http }",
        "httpGet: { path: /readyz, port: http }",
        "containerPort: 3000",
        "value: \"0.0.0.0:3000\"",
    ] {
        assert!(deployment.contains(needle), "deployment.yaml lacks {needle}");
    }
    let unit = read("deploy/runbook-bot.service");
    let read_only = unit.lines().find(|l| l.starts_with("ReadOnlyPaths=")).unwrap();
    assert!(read_only.contains("-/usr/share/runbook-bot") && read_only.contains("/etc/runbook-bot"));
}

#[test]
fn kustomization_applies_every_manifest_but_the_example_secret() {
    let k = read("deploy/kubernetes/kustomization.yaml");
    let listed: Vec<&str> = k.lines().filter_map(|l| l.strip_prefix("  - ")).collect();
    let mut present: Vec<String> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml" && n != "secret.example.yaml")
        .collect();
    present.sort();
    let mut listed_sorted: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    listed_sorted.sort();
    assert_eq!(listed_sorted, present);
}

/// Every series name `/metrics` can serve: counters with `_total`, each
/// histogram's `_bucket`, `_sum` and `_count`. A family appears once it has
/// a sample, so every kind of event happens once here.
fn served_names() -> Vec<String> {
    use runbook_bot::metrics::{Format, Metrics};
    use std::time::Duration;
    let m = Metrics::new();
    let t = Duration::from_millis(1);
    m.slack_request("commands", "accepted");
    m.http_request("/slack/commands", 200, t);
    m.command("incident.declare", "ok", t);
    m.outbox_delivery("sent");
    m.outbox_sent("post", false, t, Some(t));
    m.set_outbox_backlog(None);
    m.incident_declared("p1");
    m.escalation("p1");
    m.alert_received("grafana", "accepted");
    m.alert("grafana", "posted");
    m.diagnostic("orphans", "ok");
    m.diagnostic_step("orphans", "production", "ok", Some(t));
    m.target_unreachable("production", "diagnostic");
    m.followup("done");
    m.approval("requested");
    m.alerts_grouped("grafana", 3);
    m.alert_storm("routes[0]");
    m.auto_diagnose("orphans", "started");
    m.http_connection("accepted");
    m.throttled("mention");
    m.socket("connected");
    let text = m.render(Format::Text);
    let mut names = Vec::new();
    for line in text.lines() {
        let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|l| l.split_once(' ')) else {
            continue;
        };
        match kind {
            "histogram" => names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"))),
            _ => names.push(name.to_string()),
        }
    }
    names
}

/// The `runbook_bot_*` names a dashboard or rules file uses.
fn used_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("runbook_bot_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_and_the_alert_rules_use_only_metrics_the_bot_serves() {
    let served = served_names();
    assert!(served.contains(&"runbook_bot_http_request_duration_seconds_bucket".to_string()));
    for file in [
        "deploy/grafana/runbook-bot.json",
        "deploy/prometheus/runbook-bot.rules.yml",
        "deploy/prometheus/runbook-bot.rules.test.yml",
    ] {
        let text = read(file);
        let used = used_names(&text);
        assert!(used.len() > 5, "{file}: {used:?}");
        for name in used {
            assert!(
                served.contains(&name),
                "{file} uses {name}, which /metrics does not serve"
            );
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/runbook-bot.json")).unwrap();
    assert_eq!(dashboard["uid"], "runbook-bot");
}
