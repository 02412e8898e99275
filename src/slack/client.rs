//! The slack-morphism Web API client, built so that `SLACK_API_URL` may be a
//! plain `http://` base (the tests' fake Slack) as well as Slack itself.

use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::prelude::*;

pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;
pub type Client = SlackClient<Connector>;

/// Install ring as rustls' process-wide crypto provider. Both reqwest and
/// hyper-rustls are built without a provider of their own; installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Clone)]
pub struct SlackApi {
    pub client: Arc<Client>,
    token: SlackApiToken,
}

impl SlackApi {
    pub fn new(api_url: &str, bot_token: &SecretString) -> anyhow::Result<Self> {
        install_crypto_provider();
        // `SlackClientHyperConnector::new()` refuses http:// bases; build the
        // rustls connector ourselves with https_or_http.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        // The connector appends `/{method}` itself, so the base loses its trailing slash.
        let connector =
            SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url.trim_end_matches('/'));
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(SlackApiTokenValue::new(bot_token.expose_secret().to_string())),
        })
    }

    pub fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.token)
    }
}
