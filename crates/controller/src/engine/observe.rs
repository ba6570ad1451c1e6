//! Observe: everything a plan needs, read once per reconcile (Secrets, GPU classes, the
//! container groups, the image), or the one [`Failure`] that stopped it. Changes nothing.

use std::collections::BTreeSet;

use salad_sd_api::names::group_name_prefix;
use salad_sd_api::{
    BuildStatus, DeletionPolicy, LayerProgress, StableDiffusionDeployment,
    StableDiffusionDeploymentStatus,
};
use saladcloud::{ApiKey, Client};

use super::{Engine, Event, Mode};
use crate::builds::BuildState;
use crate::desired::{self, GpuChoice};
use crate::failure::Failure;
use crate::plan::{self, Desired, ImageState, Observed, ObservedGroup};
use crate::secrets::{self, ResolvedSecrets, SecretStore};

/// Where a resource's container groups live: the client of its API key, its organization and
/// project.
pub struct GroupScope {
    /// The client (with the key's rate budget).
    pub client: Client,
    /// Organization.
    pub org: String,
    /// Project.
    pub project: String,
}

/// What one reconcile observed.
pub struct World {
    /// Where the groups live.
    pub scope: GroupScope,
    /// The API key (for the smoke test behind gateway auth).
    pub api_key: ApiKey,
    /// Secrets, read once.
    pub secrets: ResolvedSecrets,
    /// Where the image goes.
    pub repository: String,
    /// The image recipe of the spec.
    pub recipe: salad_sd_image::Recipe,
    /// What should exist.
    pub desired: Desired,
    /// What exists.
    pub observed: Observed,
    /// The image of the current recipe, when built.
    pub built: Option<salad_sd_image::BuiltImage>,
    /// Build progress, while building.
    pub building: Option<BuildStatus>,
    /// The build of the current recipe failed (planning goes on: a serving group keeps serving).
    pub build_failure: Option<Failure>,
    /// Hourly price of one instance at the spec's priority.
    pub hourly_price: Option<f64>,
}

/// The result of observing.
pub enum Observation {
    /// The world, ready to plan.
    World(Box<World>),
    /// Being deleted with nothing that needs deleting: release at once (with these Events).
    NothingToDelete(Vec<Event>),
}

impl Engine {
    /// Observes `sdd`'s world.
    pub(super) async fn observe<S: SecretStore>(
        &self,
        sdd: &StableDiffusionDeployment,
        store: &S,
        mode: Mode,
    ) -> Result<Observation, Failure> {
        let spec = &sdd.spec;
        let meta = &sdd.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let prev = sdd.status.clone().unwrap_or_default();
        let deleting = meta.deletion_timestamp.is_some();
        let generation = meta.generation.unwrap_or(1);

        // Orphan: nothing to do on SaladCloud, so nothing to read either (not even the API key).
        if deleting && spec.deletion_policy == DeletionPolicy::Orphan {
            return Ok(Observation::NothingToDelete(Vec::new()));
        }

        // Deleting needs only the API key: a `kubectl delete -f` that removed the other Secrets
        // first must not keep the resource from going away.
        let resolved = if deleting {
            secrets::resolve_api_key(spec, store).await
        } else {
            secrets::resolve(spec, store).await
        };
        let secrets = match resolved {
            Ok(s) => s,
            Err(e) if deleting && e.is_terminal() => {
                if !ever_had_a_group(&prev) {
                    return Ok(Observation::NothingToDelete(vec![Event::warning(
                        "ReleasedWithoutApiKey",
                        format!(
                            "{e}; no container group was ever recorded for this resource, so it is \
                             released without asking SaladCloud"
                        ),
                    )]));
                }
                return Err(Failure::stalled(
                    "SecretMissing",
                    format!(
                        "{e}; the container group cannot be deleted without it. Restore the \
                         Secret, or set spec.deletionPolicy: Orphan to leave the group running \
                         and release the resource"
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let api_key = secrets.api_key.clone().expect("resolve sets the API key");
        let (client, resolver) = self.client(&api_key)?;
        let scope = GroupScope {
            client,
            org: spec.saladcloud.organization.clone(),
            project: spec.saladcloud.project.clone(),
        };
        let prefix = group_name_prefix(&name, &uid);

        // GPU classes first: one cached list per organization, so after a restart the lookup is
        // not queued behind every resource's poll in the shared rate limiter.
        let gpu = if deleting {
            Vec::new()
        } else {
            resolver
                .resolve(&scope.org, &spec.resources.gpu_classes)
                .await?
        };

        let groups = self
            .observe_groups(&scope, sdd, &prefix, &prev, deleting)
            .await?;
        let burned = self.remember(&uid, |m| m.burned.clone());
        let mut desired = desired::desired(sdd, &prefix, generation, &prev);
        let mut observed = Observed {
            groups,
            image: ImageState::Missing,
            burned_names: burned,
        };

        let recipe = desired::recipe(spec, &secrets);
        let priority = desired::priority(spec.priority);
        let hourly_price = gpu
            .iter()
            .filter_map(|g| g.price(priority))
            .reduce(f64::max);
        let choice = GpuChoice {
            ids: gpu.iter().map(|g| g.id.clone()).collect(),
            hourly_price,
        };
        let mut built = None;
        let mut building = None;
        let mut build_failure = None;
        if !deleting {
            match self
                .builds
                .observe(&spec.image.repository, &recipe, &secrets.push_credentials)
                .await
            {
                BuildState::Ready(img) => {
                    observed.image = ImageState::Ready;
                    desired.group = Some(desired::group_definition(
                        spec,
                        &uid,
                        &img.reference,
                        &choice,
                        &secrets,
                    ));
                    built = Some(img);
                }
                BuildState::Running(progress) => {
                    observed.image = ImageState::Building;
                    building = Some(BuildStatus {
                        layers: progress
                            .into_iter()
                            .map(|(name, (done, total))| LayerProgress {
                                name,
                                bytes_done: done as i64,
                                bytes_total: total.map(|t| t as i64),
                            })
                            .collect(),
                    });
                }
                BuildState::Unknown => observed.image = ImageState::Missing,
                BuildState::Failed(failure) => {
                    observed.image = ImageState::Failed {
                        message: format!(
                            "{}; the running container group (if any) keeps serving",
                            failure.message()
                        ),
                    };
                    build_failure = Some(failure);
                }
            }
            // A dry run (`salad-sd diff`) also says what would happen to the group once the
            // image exists: plan against a placeholder digest in the target repository.
            if mode == Mode::DryRun && desired.group.is_none() {
                let placeholder = format!("{}@sha256:{}", spec.image.repository, "0".repeat(64));
                desired.group = Some(desired::group_definition(
                    spec,
                    &uid,
                    &placeholder,
                    &choice,
                    &secrets,
                ));
            }
        }
        Ok(Observation::World(Box::new(World {
            scope,
            api_key,
            secrets,
            repository: spec.image.repository.clone(),
            recipe,
            desired,
            observed,
            built,
            building,
            build_failure,
            hourly_price,
        })))
    }

    /// The resource's groups. Steady state costs one GET; instances are listed only where
    /// readiness is in question.
    async fn observe_groups(
        &self,
        scope: &GroupScope,
        sdd: &StableDiffusionDeployment,
        prefix: &str,
        prev: &StableDiffusionDeploymentStatus,
        deleting: bool,
    ) -> Result<Vec<ObservedGroup>, Failure> {
        let spec = &sdd.spec;
        let (client, org, project) = (&scope.client, &scope.org, &scope.project);
        let uid = sdd.metadata.uid.clone().unwrap_or_default();
        let fixed = spec.saladcloud.container_group_name.clone();
        let ready_before = prev.is_ready_at(sdd.metadata.generation);
        let known: Vec<String> = prev
            .container_group
            .iter()
            .map(|g| g.name.clone())
            .chain(fixed.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let steady = ready_before
            && !deleting
            && !known.is_empty()
            && prev.previous_container_group.is_none();
        let mut groups = Vec::new();
        let mut listed = false;
        if steady {
            for name in &known {
                match client.find_container_group(org, project, name).await? {
                    Some(g) => groups.push(g),
                    None => listed = true,
                }
            }
        }
        if !steady || listed {
            groups = client
                .list_container_groups(org, project)
                .await?
                .into_iter()
                .filter(|g| {
                    plan::owned_by(g, &uid)
                        || g.name.starts_with(prefix)
                        || fixed.as_deref() == Some(g.name.as_str())
                })
                .collect();
        }
        let replicas = spec.replicas.max(0) as u32;
        let mut out = Vec::new();
        for g in groups {
            let needs_instances = g.pending_change
                || g.current_state.instance_status_counts.running_count < replicas
                || !ready_before;
            let instances = if needs_instances && plan::owned_by(&g, &uid) {
                Some(
                    client
                        .list_container_group_instances(org, project, &g.name)
                        .await?,
                )
            } else {
                None
            };
            out.push(ObservedGroup {
                group: g,
                instances,
            });
        }
        Ok(out)
    }
}

/// Status recorded a container group at some point (created, adopted or being retired).
fn ever_had_a_group(prev: &StableDiffusionDeploymentStatus) -> bool {
    prev.container_group.is_some() || prev.previous_container_group.is_some()
}
