//! `countersign send`: a sample event, signed the way the source's provider signs, posted to
//! the ingester — the first 200 is one command.
//!
//! The source comes from `--config` (or `COUNTERSIGN_CONFIG`), else from development mode's
//! built-in configuration. Taktikal and Legalesign's "upon event" callback are signed with the
//! source's own secret; Legalesign's "all" callback and Universign are signed by the provider's
//! private key, which only a test setup has: pass it with `--private-key`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use countersign::config::SourceConfig;
use countersign_providers::{ProviderKind, Sample};

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

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match crate::dev::config_or_dev(args.config.as_deref()) {
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
    let process_key = sample.process_key.clone();
    let status = post(&base, &source.name, sample).await?;
    if !status.is_success() {
        return Ok(ExitCode::FAILURE);
    }
    let api = args
        .api_url
        .clone()
        .unwrap_or_else(|| http_base(config.worker.listen));
    println!(
        "process {}: curl -s{} {}/signing/activity/{}?source={}",
        process_key,
        bearer_option(&config.worker.api_token_references),
        api.trim_end_matches('/'),
        process_key,
        source.name
    );
    Ok(ExitCode::SUCCESS)
}

/// The `curl` option that sends the read API's first token — named by where it is
/// (`$NAME`, `$(cat /path)`), never its value; empty where the API takes no token.
fn bearer_option(references: &[String]) -> String {
    let Some(reference) = references.first() else {
        return String::new();
    };
    let token = match reference.split_once(':') {
        Some(("env", name)) => format!("${name}"),
        Some(("file", path)) => format!("$(cat '{}')", path.replace('\'', "'\\''")),
        _ => "<token>".to_owned(),
    };
    format!(" -H \"Authorization: Bearer {token}\"")
}

/// Posts `sample` to source `name` at `base`; prints the reply (never a URL token).
#[allow(clippy::print_stdout)]
async fn post(base: &str, name: &str, sample: Sample) -> anyhow::Result<reqwest::StatusCode> {
    let path = match &sample.path_token {
        Some(token) => format!("/webhooks/{}/{token}", name),
        None => format!("/webhooks/{}", name),
    };
    let base = base.trim_end_matches('/');
    // What is shown: the source's endpoint, never a URL token.
    let shown = format!("{base}/webhooks/{}", name);
    let url = match &sample.query {
        Some(query) => format!("{base}{path}?{query}"),
        None => format!("{base}{path}"),
    };
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
        .with_context(|| format!("POST {shown}: is the ingester running (countersign dev)?"))?;
    let status = response.status();
    let reply = response.text().await.unwrap_or_default();
    // The token of a URL-authenticated source is a secret: never printed.
    println!("POST {shown} -> {} {reply}", status.as_u16());
    Ok(status)
}

/// `http://host:port` of a listen address (an unspecified address is reached on loopback).
pub(crate) fn http_base(listen: std::net::SocketAddr) -> String {
    let address = if listen.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    format!("http://{address}")
}

/// A fresh sample event for the source, signed as its provider signs.
fn sample(source: &SourceConfig, private_key: Option<&str>) -> Result<Sample, String> {
    let provider = ProviderKind::named(&source.provider)
        .map_err(|message| format!("source {}: {message}", source.name))?;
    provider.sample(source, private_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_providers::{Headers, Origin, universign};
    use std::time::SystemTime;

    #[test]
    fn the_read_back_command_names_the_token_never_its_value() {
        assert_eq!(bearer_option(&[]), "");
        assert_eq!(
            bearer_option(&["env:COUNTERSIGN_API_TOKEN".to_owned()]),
            " -H \"Authorization: Bearer $COUNTERSIGN_API_TOKEN\""
        );
        assert_eq!(
            bearer_option(&["file:/run/secrets/api token".to_owned(), "env:X".to_owned()]),
            " -H \"Authorization: Bearer $(cat '/run/secrets/api token')\""
        );
    }

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
        let mut text = format!(
            "[[sources]]\nname = \"acme\"\nprovider = \"taktikal\"\nsecrets = [\"env:K\"]\n\
             [[sources]]\nname = \"fr\"\nprovider = \"universign\"\njwks = \"{}\"\n\
             [[sources]]\nname = \"uk\"\nprovider = \"legalesign\"\ncertificate = \"{}\"\n\
             [[sources]]\nname = \"uk-events\"\nprovider = \"legalesign_event\"\nsecrets = [\"env:T\"]\n\
             [[sources]]\nname = \"sw\"\nprovider = \"standard_webhooks\"\nsecrets = [\"env:W\"]\n",
            jwks.display(),
            certificate.display()
        );
        // Every other provider needs only a secret: a source of its own name.
        let covered = [
            "taktikal",
            "universign",
            "legalesign",
            "legalesign_event",
            "standard_webhooks",
        ];
        for provider in countersign_providers::REGISTRY {
            if !covered.contains(&provider.name()) {
                text.push_str(&format!(
                    "[[sources]]\nname = \"{0}\"\nprovider = \"{0}\"\nsecrets = [\"env:S\"]\n\
                     allow_shared_secrets = true\nallow_ips = [\"127.0.0.1/32\"]\n",
                    provider.name()
                ));
            }
        }
        let config = countersign::config::Config::from_toml(
            &text,
            countersign::config::Role::Ingester,
            &|name| match name {
                "K" => Some("taktikal-signing-key".to_owned()),
                "T" => Some("legalesign-url-token".to_owned()),
                "W" => Some("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned()),
                "S" => Some("whsec_provider-secret".to_owned()),
                _ => None,
            },
        )
        .unwrap();
        assert_eq!(
            config.sources.len(),
            countersign_providers::REGISTRY.len(),
            "a source per provider"
        );
        let sources = config.build_sources().unwrap();
        for source in &config.sources {
            let private_key = match source.name.as_str() {
                "fr" => Some(pem.as_str()),
                "uk" => Some(key.as_str()),
                _ => None,
            };
            let sample = sample(source, private_key).unwrap();
            let token = sample.path_token.as_deref();
            // As `send` posts it: with the sample's content type.
            let mut headers = sample.headers.clone();
            headers.push(("content-type", sample.content_type.to_owned()));
            let verified = sources
                .verify(
                    sources.get(&source.name).unwrap(),
                    sample.body.clone().into(),
                    &Pairs(&headers),
                    Origin {
                        path_token: token,
                        query: sample.query.as_deref(),
                        peer: Some(std::net::Ipv4Addr::LOCALHOST.into()),
                    },
                    SystemTime::now(),
                )
                .unwrap_or_else(|e| panic!("{}: {e:?}", source.name));
            assert_eq!(verified.source(), source.name);
            let provider = ProviderKind::from_name(&source.provider).unwrap();
            let events = provider.parse(&sample.body).unwrap();
            assert_eq!(
                provider.signature_id(&sample.body).is_some(),
                !provider.signs_body(),
                "{}: a signature that does not cover the body has an identity",
                source.name
            );
            assert!(
                events.iter().any(|e| e.process_key == sample.process_key),
                "{}: {events:?}",
                source.name
            );
        }
        // Without the provider's private key, the two it cannot sign say so.
        for name in ["fr", "uk"] {
            let source = config.sources.iter().find(|s| s.name == name).unwrap();
            let refused = sample(source, None).expect_err("refused without a key");
            assert!(refused.contains("--private-key"), "{refused}");
        }
    }
}
