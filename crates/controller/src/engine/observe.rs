//! Observe: the facts a decision needs, read once per reconcile (Secrets, GPU classes, the
//! container groups and their instances, the image), or the one [`Failure`] that stopped the
//! reading. It decides nothing: what to read comes from [`decide::reads`],
//! [`decide::group_lookup`], [`decide::needs_instances`] and [`decide::queue_lookup`].

use std::sync::Arc;

use salad_sd_api::StableDiffusionDeployment;

use super::Engine;
use crate::builds::BuildState;
use crate::decide::{self, Facts, GroupLookup, Observation, Reads};
use crate::desired;
use crate::failure::Failure;
use crate::fleet::{self, FleetFacts};
use crate::plan::ObservedGroup;
use crate::salad::ContainerGroups;
use crate::secrets::{self, SecretStore};

/// What was read, and the SaladCloud scope it was read through (for the actions).
pub struct Gathered {
    /// The facts.
    pub observation: Observation,
    /// The resource's SaladCloud project, when the API key was read.
    pub scope: Option<Arc<dyn ContainerGroups>>,
    /// Nothing was read: the API key's rate budget is spent for this long, and a resource with
    /// a status keeps it and looks again then, rather than hold one of the operator's
    /// reconcile slots (and so other keys' resources) while it waits.
    pub deferred: Option<std::time::Duration>,
}

/// A wait for the rate budget longer than this is not waited out inside a reconcile.
pub const DEFER_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl Engine {
    /// Reads `sdd`'s world.
    pub(super) async fn observe<S: SecretStore>(
        &self,
        sdd: &StableDiffusionDeployment,
        store: &S,
    ) -> Result<Gathered, Failure> {
        let spec = &sdd.spec;
        let reads = decide::reads(sdd);
        let resolved = match reads {
            Reads::Nothing => {
                return Ok(Gathered {
                    observation: Observation::Nothing,
                    scope: None,
                    deferred: None,
                });
            }
            Reads::ForDeletion => secrets::resolve_api_key(spec, store).await,
            Reads::Everything => secrets::resolve(spec, store).await,
        };
        let secrets = match resolved {
            Ok(s) => s,
            Err(e) if reads == Reads::ForDeletion => {
                return Ok(Gathered {
                    observation: Observation::ApiKeyMissing(e),
                    scope: None,
                    deferred: None,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let api_key = secrets.api_key.as_ref().expect("resolve sets the API key");
        let scope = self.salad.scope(
            api_key,
            &spec.saladcloud.organization,
            &spec.saladcloud.project,
        )?;
        let budget_wait = scope.budget_free_in();
        if budget_wait > DEFER_AFTER && sdd.status.is_some() && reads == Reads::Everything {
            return Ok(Gathered {
                observation: Observation::Nothing,
                scope: None,
                deferred: Some(budget_wait),
            });
        }

        // GPU classes first: one cached list per organization, so after a restart the lookup is
        // not queued behind every resource's poll in the shared rate limiter.
        let gpu = match reads {
            Reads::Everything => scope.gpu_classes(&spec.resources.gpu_classes).await?,
            _ => Vec::new(),
        };
        let groups = observe_groups(scope.as_ref(), sdd).await?;
        let uid = sdd.metadata.uid.clone().unwrap_or_default();
        let fleet = self.observe_fleet(scope.as_ref(), sdd, &uid, &groups).await;
        let queue = match decide::queue_lookup(sdd) {
            Some(name) => scope.find_queue(&name).await?,
            None => None,
        };
        let burned = self.remember(&uid, |m| m.burned.clone());
        let recipe = (reads == Reads::Everything).then(|| desired::recipe(spec, &secrets));
        let build = match &recipe {
            Some(recipe) => {
                self.builds
                    .observe(&spec.image.repository, recipe, &secrets.push_credentials)
                    .await
            }
            None => BuildState::Unknown,
        };
        Ok(Gathered {
            observation: Observation::Facts(Box::new(Facts {
                secrets,
                gpu,
                groups,
                recipe,
                build,
                burned,
                fleet,
                queue,
            })),
            scope: Some(scope),
            deferred: None,
        })
    }
}

/// The resource's groups, looked up as [`decide::group_lookup`] says, with their instances
/// where [`decide::needs_instances`] asks for them.
async fn observe_groups(
    scope: &dyn ContainerGroups,
    sdd: &StableDiffusionDeployment,
) -> Result<Vec<ObservedGroup>, Failure> {
    let mut groups = Vec::new();
    let mut list = true;
    if let GroupLookup::ByName(names) = decide::group_lookup(sdd) {
        list = false;
        for name in &names {
            match scope.find(name).await? {
                Some(g) => groups.push(g),
                None => list = true,
            }
        }
    }
    if list {
        groups = scope
            .list()
            .await?
            .into_iter()
            .filter(|g| decide::is_candidate(sdd, g))
            .collect();
    }
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let instances = if decide::needs_instances(sdd, &group) {
            Some(scope.instances(&group.name).await?)
        } else {
            None
        };
        out.push(ObservedGroup { group, instances });
    }
    Ok(out)
}

/// The quota is read again after this long.
const QUOTA_TTL_SECONDS: i64 = 600;

impl Engine {
    /// The fleet's facts: system logs of the groups whose instances were listed, the
    /// reallocation quota (only while something downloads and reallocation is on, read at most
    /// every ten minutes), and what this operator asked before. A failure to read either is
    /// logged and left out: the fleet informs, it never blocks a reconcile.
    async fn observe_fleet(
        &self,
        scope: &dyn ContainerGroups,
        sdd: &StableDiffusionDeployment,
        uid: &str,
        groups: &[ObservedGroup],
    ) -> FleetFacts {
        let listed: Vec<&ObservedGroup> = groups.iter().filter(|g| g.instances.is_some()).collect();
        if listed.is_empty() {
            return FleetFacts::default();
        }
        let mut facts = FleetFacts {
            observed_at: Some(jiff::Timestamp::now()),
            ..FleetFacts::default()
        };
        let prev = sdd.status.as_ref().and_then(|s| s.fleet.as_ref());
        let every = self.poll_interval(sdd);
        for g in &listed {
            let name = &g.group.name;
            let last = self.remember(uid, |m| m.fleet.logs_read.get(name).copied());
            let instances = g.instances.as_deref().unwrap_or_default();
            let now = jiff::Timestamp::now();
            if !fleet::system_logs_due(name, instances, prev, last, now, every) {
                continue;
            }
            match scope.system_logs(name).await {
                Ok(logs) => {
                    self.remember(uid, |m| m.fleet.logs_read.insert(name.clone(), now));
                    facts.system_logs.insert(name.clone(), logs);
                }
                Err(e) => {
                    tracing::warn!(group = %g.group.name, error = %e, "cannot read system logs")
                }
            }
        }
        let downloading = listed.iter().any(|g| {
            g.instances
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|i| i.state == saladcloud::model::InstanceState::Downloading)
        });
        let now = jiff::Timestamp::now();
        let (cached, recent, blocked) = self.remember(uid, |m| {
            (
                m.fleet.quota,
                m.fleet.recent.clone(),
                m.fleet.blocked.clone(),
            )
        });
        facts.recent = recent;
        facts.blocked = blocked;
        facts.reallocations_per_minute = cached.and_then(|(q, _)| q);
        let stale =
            cached.is_none_or(|(_, at)| now.duration_since(at).as_secs() >= QUOTA_TTL_SECONDS);
        if downloading && sdd.spec.fleet.slow_node_reallocation.enabled && stale {
            match scope.reallocations_per_minute().await {
                Ok(q) => {
                    self.remember(uid, |m| m.fleet.quota = Some((q, now)));
                    facts.reallocations_per_minute = q;
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the reallocation quota"),
            }
        }
        facts
    }
}
