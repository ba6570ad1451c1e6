//! Desired container group versus the one SaladCloud reports: which fields differ, of which
//! kind, and the merge patch that fixes the ones that can be fixed in place.

use saladcloud::model::{
    self as salad, ContainerGroup, ContainerGroupPatch, ContainerGroupPrototype, Nullable,
    UpdateContainer, UpdateNetworking, UpdateResources,
};
use sha2::{Digest, Sha256};

/// Environment variable holding the revision (hash of the container definition) a group was
/// created or last patched for. How a BlueGreen rollout tells "the new group" from "the old one",
/// and drift from a spec change, without remembering anything.
pub const REVISION_ENV: &str = "SALAD_SD_REVISION";

/// The revision of a definition: a hash of everything that makes a new container version or
/// cannot change at all (not replicas, countries or display name).
pub fn revision(proto: &ContainerGroupPrototype) -> String {
    let mut container = proto.container.clone();
    container.environment_variables.remove(REVISION_ENV);
    // Pull credentials are not returned by SaladCloud; they are re-sent with every image change.
    container.registry_authentication = None;
    let doc = serde_json::json!({
        "container": container,
        "restart_policy": proto.restart_policy,
        "networking": proto.networking,
        "startup_probe": proto.startup_probe,
        "liveness_probe": proto.liveness_probe,
        "readiness_probe": proto.readiness_probe,
    });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))[..12].to_string()
}

/// The revision recorded in an observed group.
pub fn observed_revision(group: &ContainerGroup) -> Option<&str> {
    group
        .container
        .environment_variables
        .get(REVISION_ENV)
        .map(String::as_str)
}

/// How the observed group differs from the desired definition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupDiff {
    /// Fields SaladCloud cannot change: a new group is needed.
    pub immutable: Vec<&'static str>,
    /// Fields whose change makes a new container version (all instances restart).
    pub versioned: Vec<&'static str>,
    /// Fields that change without restarting anything.
    pub unversioned: Vec<&'static str>,
    /// Merge patch with every versioned and unversioned difference.
    pub patch: ContainerGroupPatch,
}

impl GroupDiff {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.immutable.is_empty() && self.versioned.is_empty() && self.unversioned.is_empty()
    }

    /// Every differing field, for messages.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut all = self.immutable.clone();
        all.extend(&self.versioned);
        all.extend(&self.unversioned);
        all
    }
}

/// Compares `desired` (with its name and image set) to `observed`.
pub fn diff(desired: &ContainerGroupPrototype, observed: &ContainerGroup) -> GroupDiff {
    let mut d = GroupDiff::default();
    let mut container = UpdateContainer::default();
    let want = &desired.container;
    let have = &observed.container;

    // Cannot change after creation.
    if desired.restart_policy != observed.restart_policy {
        d.immutable.push("restart_policy");
    }
    match (&desired.networking, &observed.networking) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => d.immutable.push("networking"),
        (Some(w), Some(h)) => {
            if w.auth != h.auth {
                d.immutable.push("networking.auth");
            }
            if w.load_balancer.is_some_and(|lb| lb != h.load_balancer) {
                d.immutable.push("networking.load_balancer");
            }
            if w.single_connection_limit.is_some_and(|v| {
                Some(v) != h.single_connection_limit && (v || h.single_connection_limit.is_some())
            }) {
                d.immutable.push("networking.single_connection_limit");
            }
            if w.client_request_timeout.is_some()
                && w.client_request_timeout != h.client_request_timeout
            {
                d.immutable.push("networking.client_request_timeout");
            }
            if w.server_response_timeout.is_some()
                && w.server_response_timeout != h.server_response_timeout
            {
                d.immutable.push("networking.server_response_timeout");
            }
            if w.port != h.port {
                d.versioned.push("networking.port");
                d.patch.networking = Some(UpdateNetworking { port: Some(w.port) });
            }
        }
    }

    // New container version.
    if want.image != have.image {
        d.versioned.push("container.image");
        container.image = Some(want.image.clone());
        // The only time SaladCloud pulls: hand it the current pull credentials.
        container.registry_authentication = want.registry_authentication.clone();
    }
    let have_command = have.command.clone().filter(|c| !c.is_empty());
    if want.command != have_command {
        d.versioned.push("container.command");
        container.command = want.command.clone().into();
    }
    if want.environment_variables != have.environment_variables {
        d.versioned.push("container.environment_variables");
        // Sent whole: merge patch merges maps, so a partial map would keep stale keys.
        container.environment_variables = Some(want.environment_variables.clone());
    }
    let wr = &want.resources;
    let hr = &have.resources;
    let resources_differ = wr.cpu != hr.cpu
        || wr.memory != hr.memory
        || wr.gpu_classes != hr.gpu_classes
        || (wr.storage_amount.is_some() && wr.storage_amount != hr.storage_amount)
        || (wr.shm_size.is_some() && wr.shm_size != hr.shm_size);
    if resources_differ {
        d.versioned.push("container.resources");
        container.resources = Some(UpdateResources {
            cpu: Some(wr.cpu),
            memory: Some(wr.memory),
            gpu_classes: Some(wr.gpu_classes.clone()),
            storage_amount: wr.storage_amount.map_or(Nullable::Absent, Nullable::Value),
            shm_size: wr.shm_size.map_or(Nullable::Absent, Nullable::Value),
        });
    }
    if want.priority.is_some() && want.priority != observed.priority {
        d.versioned.push("container.priority");
        container.priority = want.priority;
    }
    if let (Some(w), Some(h)) = (want.image_caching, have.image_caching)
        && w != h
    {
        d.versioned.push("container.image_caching");
        container.image_caching = Some(w);
    }
    for (field, w, h, slot) in [
        (
            "startup_probe",
            &desired.startup_probe,
            &observed.startup_probe,
            &mut d.patch.startup_probe,
        ),
        (
            "liveness_probe",
            &desired.liveness_probe,
            &observed.liveness_probe,
            &mut d.patch.liveness_probe,
        ),
        (
            "readiness_probe",
            &desired.readiness_probe,
            &observed.readiness_probe,
            &mut d.patch.readiness_probe,
        ),
    ] {
        if w != h {
            d.versioned.push(field);
            *slot = match (w, h) {
                // Merge patch merges a probe into the old one; switching handler kinds (say exec to
                // http) would leave both set. Remove it first; the next reconcile sets the new one.
                (Some(w), Some(h)) if handler_kind(w) != handler_kind(h) => Nullable::Null,
                _ => w.clone().into(),
            };
        }
    }

    // No restart.
    if desired.replicas != observed.replicas {
        d.unversioned.push("replicas");
        d.patch.replicas = Some(desired.replicas);
    }
    if desired.country_codes != observed.country_codes {
        d.unversioned.push("country_codes");
        d.patch.country_codes = if desired.country_codes.is_empty() {
            Nullable::Null
        } else {
            Nullable::Value(desired.country_codes.clone())
        };
    }
    if let Some(name) = &desired.display_name
        && *name != observed.display_name
    {
        d.unversioned.push("display_name");
        d.patch.display_name = Nullable::Value(name.clone());
    }
    if container != UpdateContainer::default() {
        d.patch.container = Some(container);
    }
    d
}

fn handler_kind(p: &salad::Probe) -> u8 {
    u8::from(p.http.is_some())
        | u8::from(p.tcp.is_some()) << 1
        | u8::from(p.grpc.is_some()) << 2
        | u8::from(p.exec.is_some()) << 3
}

/// Instances that run the group's current version and pass readiness.
pub fn ready_instances(
    group: &ContainerGroup,
    instances: Option<&[salad::ContainerGroupInstance]>,
) -> u32 {
    match instances {
        Some(list) => list
            .iter()
            .filter(|i| {
                i.state == salad::InstanceState::Running
                    && i.version == group.version
                    && i.ready.unwrap_or(true)
                    && i.started.unwrap_or(true)
            })
            .count() as u32,
        // Without the instance list, trust the counts only when no change is pending.
        None if !group.pending_change => group.current_state.instance_status_counts.running_count,
        None => 0,
    }
}
