//! `countersign send`: a sample event, signed the way the source's provider signs, posted to
//! the ingester — the first 200 is one command.
//!
//! The source comes from `--config` (or `COUNTERSIGN_CONFIG`), else from development mode's
//! built-in configuration. Taktikal and Legalesign's "upon event" callback are signed with the
//! source's own secret; Legalesign's "all" callback and Universign are signed by the provider's
//! private key, which only a test setup has: pass it with `--private-key`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use countersign::config::{Config, Role, SourceConfig};
use countersign::providers::{ProviderKind, legalesign, taktikal, universign};

/// Taktikal's documented example event (an AllSigned with its PDF).
const TAKTIKAL_EXAMPLE: &str = include_str!("../../shared/tests/fixtures/taktikal/all_signed.json");
const TAKTIKAL_EXAMPLE_PROCESS: &str = "sp231f52f87d6f4caaa2e29ecac92d055b";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source to send to (default: the first configured).
    source: Option<String>,
    /// The configuration that names the source; without it, development mode's.
    #[arg(long, env = "COUNTERSIGN_CONFIG")]
    config: Option<PathBuf>,
    /// The ingester's webhook address (default: from the configuration's ingester.listen).
    #[arg(long)]
    url: Option<String>,
    /// The worker's read API, for the line that shows where to read the event back (default:
    /// from the configuration's worker.listen).
    #[arg(long)]
    api_url: Option<String>,
    /// The provider's RSA private key (PKCS#8 PEM) where the provider, not the source, holds
    /// the signing key: Legalesign's "all" callback, Universign.
    #[arg(long)]
    private_key: Option<PathBuf>,
}

/// A request ready to post.
struct Sample {
    path: String,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    process_key: String,
}

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = match &args.config {
        Some(path) => Config::load_path(path, Role::Ingester),
        None => Config::from_toml(
            &crate::dev::config_text(&crate::dev::Args::defaults()),
            Role::Ingester,
            &crate::dev::dev_env,
        ),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("countersign send: invalid configuration: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let source = match &args.source {
        Some(name) => config.sources.iter().find(|s| &s.name == name),
        None => config.sources.first(),
    };
    let Some(source) = source else {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "countersign send: no source {:?} in the configuration (sources: {})",
            args.source.as_deref().unwrap_or_default(),
            names.join(", ")
        );
        return Ok(ExitCode::from(2));
    };
    let private_key = match &args.private_key {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--private-key {}", path.display()))?,
        ),
        None => None,
    };
    let sample = match sample(source, private_key.as_deref()) {
        Ok(sample) => sample,
        Err(message) => {
            eprintln!("countersign send: {message}");
            return Ok(ExitCode::from(2));
        }
    };

    let base = args
        .url
        .clone()
        .unwrap_or_else(|| http_base(config.ingester.listen));
    let url = format!("{}{}", base.trim_end_matches('/'), sample.path);
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", sample.content_type)
        .body(sample.body);
    for (name, value) in &sample.headers {
        request = request.header(*name, value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}: is the ingester running (countersign dev)?"))?;
    let status = response.status();
    let reply = response.text().await.unwrap_or_default();
    // The token of a URL-authenticated source is a secret: never printed.
    let shown = url.replace(&sample.path, &format!("/webhooks/{}", source.name));
    println!("POST {shown} -> {} {reply}", status.as_u16());
    if !status.is_success() {
        return Ok(ExitCode::FAILURE);
    }
    let api = args
        .api_url
        .clone()
        .unwrap_or_else(|| http_base(config.worker.listen));
    println!(
        "process {}: curl -s {}/signing/activity/{}?source={}",
        sample.process_key,
        api.trim_end_matches('/'),
        sample.process_key,
        source.name
    );
    Ok(ExitCode::SUCCESS)
}

/// `http://host:port` of a listen address (an unspecified address is reached on loopback).
fn http_base(listen: std::net::SocketAddr) -> String {
    let address = if listen.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    format!("http://{address}")
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh sample event for the source, signed as its provider signs.
fn sample(source: &SourceConfig, private_key: Option<&str>) -> Result<Sample, String> {
    let path = format!("/webhooks/{}", source.name);
    let needs_key = || {
        private_key.ok_or_else(|| {
            format!(
                "source {} ({}) is signed with the provider's private key: pass --private-key \
                 (a test key whose public half the source is configured with)",
                source.name,
                source.provider.name()
            )
        })
    };
    let secret = || {
        source
            .secrets
            .first()
            .ok_or_else(|| format!("source {} has no secret to sign with", source.name))
    };
    match source.provider {
        ProviderKind::Taktikal => {
            let process_key = format!("sp{}", new_id());
            let text = TAKTIKAL_EXAMPLE.replace(TAKTIKAL_EXAMPLE_PROCESS, &process_key);
            let mut event: serde_json::Value =
                serde_json::from_str(&text).expect("the example is JSON");
            event["Id"] = new_id().into();
            let key = secret()?.expose();
            let guid = uuid::Uuid::new_v4().to_string();
            let ticks = taktikal::ticks_of(SystemTime::now());
            let event = taktikal::with_signature(event, key, ticks, &guid);
            Ok(Sample {
                path,
                body: serde_json::to_vec(&event).expect("JSON"),
                content_type: "application/json",
                headers: Vec::new(),
                process_key,
            })
        }
        ProviderKind::LegalesignEvent => {
            let document = new_id();
            let token = std::str::from_utf8(secret()?.expose())
                .map_err(|_| "the URL token is not UTF-8".to_owned())?
                .to_owned();
            let body = form(&[
                ("resource_uri", &format!("/api/v1/document/{document}/")),
                ("group", "/api/v1/group/sample/"),
                ("name", "Sample agreement"),
                ("uuid", &document),
                ("tag", "countersign-sample"),
            ]);
            Ok(Sample {
                path: format!("{path}/{token}"),
                body: body.into_bytes(),
                content_type: "application/x-www-form-urlencoded",
                headers: Vec::new(),
                process_key: document,
            })
        }
        ProviderKind::Legalesign => {
            let document = new_id();
            let signer = new_id();
            // Legalesign writes UTC times without a zone.
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
            let data = serde_json::json!([
                {"timestamp": now, "name": "status", "value": "40", "resource_uri": format!("/api/v1/signer/{signer}/")},
                {"timestamp": now, "name": "status", "value": "30", "resource_uri": format!("/api/v1/document/{document}/")},
            ])
            .to_string();
            let body = legalesign::signed_form(needs_key()?, &data)?;
            Ok(Sample {
                path,
                body: body.into_bytes(),
                content_type: "application/x-www-form-urlencoded",
                headers: Vec::new(),
                process_key: document,
            })
        }
        ProviderKind::Universign => {
            let key = needs_key()?;
            let jwks = source
                .jwks
                .as_ref()
                .ok_or_else(|| format!("source {} names no jwks", source.name))?;
            let kid = universign::load_jwks(jwks)?
                .into_iter()
                .find_map(|(kid, _)| kid)
                .unwrap_or_default();
            let transaction = format!("tx_{}", new_id());
            let created_at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs();
            let body = serde_json::to_vec(&serde_json::json!({
                "object": "event",
                "id": format!("evt_{}", new_id()),
                "type": "transaction.lifecycle.completed",
                "createdAt": created_at,
                "payload": {"object": {"object": "transaction", "id": transaction}},
            }))
            .expect("JSON");
            let signature = universign::sign_detached(key, &kid, "PS256", &body)?;
            Ok(Sample {
                path,
                body,
                content_type: "application/json",
                headers: vec![("x-jws-signature", signature)],
                process_key: transaction,
            })
        }
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign::providers::{Headers, Origin, Sources};

    struct Pairs<'a>(&'a [(&'static str, String)]);

    impl Headers for Pairs<'_> {
        fn get(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
    }

    /// Every provider's sample verifies for the source it was made for and parses into events:
    /// `send` reaches a 200 whatever the source.
    #[test]
    fn every_providers_sample_verifies_and_parses() {
        let dir = tempfile::tempdir().unwrap();
        let pem = countersign_testkit::rsa_key_pem();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, universign::jwks_of(&pem, "k1").unwrap().to_string()).unwrap();
        let (key, certificate) = countersign_testkit::self_signed_certificate(dir.path());
        let text = format!(
            "[[sources]]\nname = \"acme\"\nprovider = \"taktikal\"\nsecrets = [\"env:K\"]\n\
             [[sources]]\nname = \"fr\"\nprovider = \"universign\"\njwks = \"{}\"\n\
             [[sources]]\nname = \"uk\"\nprovider = \"legalesign\"\ncertificate = \"{}\"\n\
             [[sources]]\nname = \"uk-events\"\nprovider = \"legalesign_event\"\nsecrets = [\"env:T\"]\n",
            jwks.display(),
            certificate.display()
        );
        let config = Config::from_toml(&text, Role::Ingester, &|name| match name {
            "K" => Some("taktikal-key".to_owned()),
            "T" => Some("url-token".to_owned()),
            _ => None,
        })
        .unwrap();
        let sources = Sources::from_config(&config).unwrap();
        for source in &config.sources {
            let private_key = match source.provider {
                ProviderKind::Universign => Some(pem.as_str()),
                ProviderKind::Legalesign => Some(key.as_str()),
                _ => None,
            };
            let sample = sample(source, private_key).unwrap();
            let token = sample
                .path
                .strip_prefix(&format!("/webhooks/{}/", source.name));
            let verified = sources
                .verify(
                    sources.get(&source.name).unwrap(),
                    sample.body.clone().into(),
                    &Pairs(&sample.headers),
                    Origin {
                        path_token: token,
                        peer: None,
                    },
                    SystemTime::now(),
                )
                .unwrap_or_else(|e| panic!("{}: {e:?}", source.name));
            assert_eq!(verified.source(), source.name);
            let events = source.provider.parse(&sample.body).unwrap();
            assert!(
                events.iter().any(|e| e.process_key == sample.process_key),
                "{}: {events:?}",
                source.name
            );
        }
        // Without the provider's private key, the two it cannot sign say so.
        for name in ["fr", "uk"] {
            let source = config.sources.iter().find(|s| s.name == name).unwrap();
            let refused = sample(source, None).err().expect("refused without a key");
            assert!(refused.contains("--private-key"), "{refused}");
        }
    }
}
