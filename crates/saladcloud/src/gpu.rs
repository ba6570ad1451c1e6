//! GPU class name → id resolution with a per-organization TTL cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;
use crate::model::{GpuClass, GpuClassPrice, Priority};

/// Default cache lifetime of an organization's GPU class list.
pub const DEFAULT_GPU_CLASS_TTL: Duration = Duration::from_secs(3600);

/// An unknown name triggers a refetch only when the cached list is at least this old.
const REFRESH_ON_MISS_AFTER: Duration = Duration::from_secs(60);

/// A GPU class the container can request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedGpuClass {
    /// Id to put in `resources.gpu_classes`.
    pub id: String,
    /// Name as SaladCloud spells it (the id itself for an id not in the list).
    pub name: String,
    /// Prices per priority (empty for an id not in the list).
    pub prices: Vec<GpuClassPrice>,
    /// Fewest vCPUs a container on this class may request (`None`: not given, or an id not in
    /// the list).
    pub min_vcpu: Option<u32>,
    /// Most vCPUs a container on this class may request.
    pub max_vcpu: Option<u32>,
    /// Least memory (MB) a container on this class may request.
    pub min_ram_mb: Option<u32>,
    /// Most memory (MB) a container on this class may request.
    pub max_ram_mb: Option<u32>,
    /// Least storage (bytes) a container on this class may request.
    pub min_storage_bytes: Option<u64>,
    /// Most storage (bytes) a container on this class may request.
    pub max_storage_bytes: Option<u64>,
}

impl ResolvedGpuClass {
    /// The hourly price at `priority`, parsed from the API's decimal string.
    pub fn price(&self, priority: Priority) -> Option<f64> {
        self.prices
            .iter()
            .find(|p| p.priority == priority)
            .and_then(|p| p.price.trim().parse().ok())
    }

    /// A raw id that is not in the organization's list: named by itself, no prices, no limits.
    pub fn unlisted(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            prices: Vec::new(),
            min_vcpu: None,
            max_vcpu: None,
            min_ram_mb: None,
            max_ram_mb: None,
            min_storage_bytes: None,
            max_storage_bytes: None,
        }
    }
}

impl From<&GpuClass> for ResolvedGpuClass {
    fn from(c: &GpuClass) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            prices: c.prices.clone(),
            min_vcpu: c.min_vcpu,
            max_vcpu: c.max_vcpu,
            min_ram_mb: c.min_ram,
            max_ram_mb: c.max_ram,
            min_storage_bytes: c.min_storage,
            max_storage_bytes: c.max_storage,
        }
    }
}

#[derive(Debug)]
struct Entry {
    fetched: Instant,
    classes: Arc<Vec<GpuClass>>,
}

/// Resolves GPU class names (case-insensitive, trimmed) or raw ids to ids, caching each
/// organization's list for a TTL (default one hour).
#[derive(Debug, Clone)]
pub struct GpuClassResolver {
    client: Client,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, Entry>>>,
}

impl GpuClassResolver {
    /// A resolver with the default TTL.
    pub fn new(client: Client) -> Self {
        Self::with_ttl(client, DEFAULT_GPU_CLASS_TTL)
    }

    /// A resolver with a custom TTL.
    pub fn with_ttl(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Drops the cached list of an organization.
    pub async fn invalidate(&self, org: &str) {
        self.cache.lock().await.remove(org);
    }

    /// The organization's GPU classes, from cache when fresh.
    pub async fn classes(&self, org: &str) -> Result<Arc<Vec<GpuClass>>, Error> {
        self.classes_inner(org, false).await.map(|(c, _)| c)
    }

    /// Returns `(classes, fetched_now_or_age_ok_for_refresh)`.
    async fn classes_inner(
        &self,
        org: &str,
        force: bool,
    ) -> Result<(Arc<Vec<GpuClass>>, Duration), Error> {
        let mut cache = self.cache.lock().await;
        if !force
            && let Some(e) = cache.get(org)
            && e.fetched.elapsed() < self.ttl
        {
            return Ok((e.classes.clone(), e.fetched.elapsed()));
        }
        let classes = Arc::new(self.client.list_gpu_classes(org).await?);
        cache.insert(
            org.to_owned(),
            Entry {
                fetched: Instant::now(),
                classes: classes.clone(),
            },
        );
        Ok((classes, Duration::ZERO))
    }

    /// Resolves each name or id, in order. Ids (UUIDs) are accepted as they are; names are
    /// matched case-insensitively after trimming. An unknown name is a terminal
    /// [`Error::GpuClassNotFound`] listing the known names.
    pub async fn resolve(
        &self,
        org: &str,
        names: &[impl AsRef<str>],
    ) -> Result<Vec<ResolvedGpuClass>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let (mut classes, mut age) = self.classes_inner(org, false).await?;
        let mut out = Vec::with_capacity(names.len());
        for raw in names {
            let wanted = raw.as_ref().trim();
            let mut found = lookup(&classes, wanted);
            if found.is_none() && age >= REFRESH_ON_MISS_AFTER {
                (classes, age) = self.classes_inner(org, true).await?;
                found = lookup(&classes, wanted);
            }
            match found {
                Some(r) => out.push(r),
                None => {
                    let mut known: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
                    known.sort();
                    known.dedup();
                    return Err(Error::GpuClassNotFound {
                        organization: org.to_owned(),
                        name: wanted.to_owned(),
                        known,
                    });
                }
            }
        }
        Ok(out)
    }
}

fn lookup(classes: &[GpuClass], wanted: &str) -> Option<ResolvedGpuClass> {
    if let Ok(id) = uuid::Uuid::parse_str(wanted) {
        return Some(
            classes
                .iter()
                .find(|c| uuid::Uuid::parse_str(&c.id).is_ok_and(|cid| cid == id))
                .map(ResolvedGpuClass::from)
                .unwrap_or_else(|| ResolvedGpuClass::unlisted(wanted)),
        );
    }
    if let Some(exact) = classes
        .iter()
        .find(|c| c.name.trim().eq_ignore_ascii_case(wanted))
    {
        return Some(exact.into());
    }
    // "RTX 3060 Ti" names "RTX 3060 Ti (8 GB)": the memory suffix is optional, as long as only
    // one class matches without it.
    let mut short = classes
        .iter()
        .filter(|c| without_memory_suffix(&c.name).eq_ignore_ascii_case(wanted));
    match (short.next(), short.next()) {
        (Some(one), None) => Some(one.into()),
        _ => None,
    }
}

fn without_memory_suffix(name: &str) -> &str {
    let name = name.trim();
    match name.rfind(" (") {
        Some(i) if name.ends_with(')') => name[..i].trim_end(),
        _ => name,
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    fn class(id: &str, name: &str) -> GpuClass {
        serde_json::from_value(serde_json::json!({"id": id, "name": name, "prices": []})).unwrap()
    }

    #[test]
    fn a_name_matches_with_or_without_its_memory_suffix_when_unambiguous() {
        let classes = vec![
            class("cb6c1931-89b6-4f76-976f-54047320ccc6", "RTX 3060 Ti (8 GB)"),
            class("f51baccc-dc95-40fb-a5d1-6d0ee0db31d2", "RTX 3060 (12 GB)"),
            class("a5db5c50-cbcb-4596-ae80-6a0c8090d80f", "RTX 3090 (24 GB)"),
            class(
                "9998fe42-04a5-4807-b3a5-849943f16c38",
                "RTX 3090 (24 GB, secure)",
            ),
        ];
        let id = |name: &str| lookup(&classes, name).map(|c| c.id);
        assert_eq!(
            id("rtx 3060 ti").as_deref(),
            Some("cb6c1931-89b6-4f76-976f-54047320ccc6")
        );
        assert_eq!(
            id("RTX 3060 Ti (8 GB)").as_deref(),
            Some("cb6c1931-89b6-4f76-976f-54047320ccc6")
        );
        assert_eq!(
            id("RTX 3060").as_deref(),
            Some("f51baccc-dc95-40fb-a5d1-6d0ee0db31d2"),
            "not the Ti"
        );
        assert_eq!(
            id("RTX 3090"),
            None,
            "two classes share the short name: ambiguous"
        );
        assert_eq!(id("RTX 9090"), None);
    }
}
