//! `countersign-providers` — the e-signature providers Countersign verifies and reads, and
//! nothing else: no broker, no database, no runtime. A provider does no I/O and knows no broker;
//! this crate has no dependency through which it could (no tokio, lapin, sqlx, actix,
//! prometheus), so that rule is a compile error here rather than a review comment.
//!
//! Providers: one module each, one line each in [`REGISTRY`], and the configured
//! sources that use them.
//!
//! A provider is a unit struct implementing [`Provider`] in `<name>.rs`: it checks a
//! source's configuration and makes the source's [`Verify`] (which verifies a request over the raw
//! bytes and headers and says what the event is, parsing only what verification needs), says how
//! the provider wants its webhook answered, and parses a verified body into the normalized model
//! ([`crate::event`]) for the worker. Nothing else in Countersign matches on a provider: it holds a
//! [`ProviderKind`] (a handle into the registry) and asks it. [`Sources`] holds the configured
//! endpoints and is the only way to turn received bytes into a [`VerifiedWebhook`] — the one type
//! the ingester can publish.
//!
//! Adding a provider: its module with its `impl Provider`, one line in [`REGISTRY`], its tests
//! and its page, `docs/providers/<name>.md`.
//!
//! # Layout
//!
//! - [`Provider`], [`Verify`], [`Reconcile`] (`provider.rs`): the contract.
//! - [`REGISTRY`], [`ProviderKind`] (`registry.rs`): every provider, and the handle to one.
//! - [`Sources`] (`sources.rs`): the configured endpoints, the only way to a [`VerifiedWebhook`].
//! - [`settings`]: a source's settings as configuration resolves them ([`settings::SourceConfig`]).
//! - [`event`]: the normalized model (`SigningEvent`: process, signees, status, documents,
//!   activity) that every provider parses into.
//! - [`signature_memory`]: memory of recently seen signatures, for schemes whose signature does
//!   not cover the body (Taktikal), so that a captured signature cannot carry another body.
//! - [`forwarded`]: the bounds on the headers a verified request forwards into its message.
//! - `support.rs`: HMAC, hex, signed timestamps and JSON shapes several providers share.

pub mod adobe_sign;
pub mod boldsign;
pub mod documenso;
pub mod docuseal;
pub mod docusign;
pub mod dropbox_sign;
pub mod event;
pub mod forwarded;
pub mod legalesign;
pub mod pandadoc;
mod provider;
mod registry;
pub mod settings;
pub mod signature_memory;
mod sources;
pub mod standard_webhooks;
mod support;
pub mod taktikal;
#[cfg(test)]
mod testing;
pub mod universign;
pub mod yousign;
pub mod zoho_sign;

pub use provider::{
    FUTURE_SKEW, Gap, Headers, MIN_SECRET_BYTES, NoHeaders, Origin, Provider, Reconcile, Rejection,
    Reply, Request, Sample, SignatureUse, Verified, Verify,
};
pub use registry::{ProviderKind, REGISTRY};
pub use settings::Setting;
pub use sources::{Source, SourceLimits, Sources, VerifiedWebhook};
pub use support::hex;
