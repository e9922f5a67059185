//! Every provider Countersign knows ([`REGISTRY`]), and the handle the rest of Countersign holds
//! instead of matching on a provider ([`ProviderKind`]).

use crate::provider::Provider;
use crate::{
    adobe_sign, boldsign, documenso, docuseal, docusign, dropbox_sign, legalesign, pandadoc,
    standard_webhooks, taktikal, universign, yousign, zoho_sign,
};

/// Every provider Countersign knows, by its configuration name.
pub static REGISTRY: &[&dyn Provider] = &[
    &taktikal::Taktikal,
    &universign::Universign,
    &legalesign::Legalesign,
    &legalesign::LegalesignEvent,
    &standard_webhooks::StandardWebhooks,
    &yousign::Yousign,
    &documenso::Documenso,
    &docuseal::DocuSeal,
    &zoho_sign::ZohoSign,
    &boldsign::BoldSign,
    &pandadoc::PandaDoc,
    &dropbox_sign::DropboxSign,
    &adobe_sign::AdobeSign,
    &docusign::DocuSign,
];

/// A provider, by its place in [`REGISTRY`]: what configuration, messages and stored rows name.
#[derive(Clone, Copy)]
pub struct ProviderKind(&'static dyn Provider);

impl ProviderKind {
    /// The provider of that name (a source's `provider`, the `x-provider` header).
    pub fn from_name(name: &str) -> Option<Self> {
        REGISTRY
            .iter()
            .find(|p| p.name() == name)
            .map(|p| ProviderKind(*p))
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// [`ProviderKind::from_name`], or why not in one sentence that lists the registered names.
    pub fn named(name: &str) -> Result<Self, String> {
        Self::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = REGISTRY.iter().map(|p| p.name()).collect();
            format!("unknown provider {name:?} (one of: {})", names.join(", "))
        })
    }
}

impl std::ops::Deref for ProviderKind {
    type Target = dyn Provider;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for ProviderKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for ProviderKind {}

impl std::fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_provider_is_found_by_its_own_name_once() {
        for provider in REGISTRY {
            let found = ProviderKind::from_name(provider.name()).expect("registered");
            assert_eq!(found.name(), provider.name());
            assert_eq!(
                REGISTRY
                    .iter()
                    .filter(|p| p.name() == provider.name())
                    .count(),
                1,
                "{} registered twice",
                provider.name()
            );
        }
        assert!(ProviderKind::from_name("nosuch").is_none());
    }
}
