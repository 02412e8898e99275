//! The frame every console page shares, and the bare page errors use.
//! maud escapes every interpolated value, so text from Slack users, alerts
//! and customer databases cannot become markup.

use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::console::Viewer;

/// A rendered page.
pub struct Page(pub Markup);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        Html(self.0.into_string()).into_response()
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · runbook-bot console" }
            link rel="stylesheet" href="/console/static/app.css";
        }
    }
}

/// A signed-in page: navigation, who is signed in at which level, sign out.
pub fn page(v: &Viewer, title: &str, body: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    nav {
                        a.brand href="/console/incidents" { "runbook-bot" }
                        a href="/console/incidents" { "Incidents" }
                        a href="/console/metrics" { "Metrics" }
                        a href="/console/catalog" { "Catalog" }
                        @if v.can_audit {
                            a href="/console/approvals" { "Approvals" }
                        }
                    }
                    div.who {
                        span { (v.session.user) " · " (v.level) }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(v.session.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    })
}

/// A page outside a session: refusals, the sign-in button.
pub fn bare(title: &str, text: &str) -> Page {
    bare_with(title, html! { p { (text) } })
}

pub fn bare_with(title: &str, body: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main.narrow {
                    h1 { (title) }
                    (body)
                }
            }
        }
    })
}
