//! One declaration per SaladCloud container-group field: its name, what changing it costs, and
//! how the desired value is compared with the observed one and patched. [`crate::diff`] (the
//! differences and the merge patch), [`crate::diff::revision`] (what makes a new group in a
//! BlueGreen rollout) and the planner's choice between a patch and a new group all follow from
//! this table; a field that is not declared here is neither compared nor patched.
//!
//! The values come from the spec through [`crate::desired::group_definition`]; the simulator
//! and the client's model carry the same fields.

use saladcloud::model::{
    ContainerGroup, ContainerGroupPatch, ContainerGroupPrototype, Nullable, Probe, UpdateContainer,
    UpdateNetworking, UpdateResources,
};

/// What a change of the field costs on SaladCloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// Patched in place; nothing restarts.
    InPlace,
    /// Patched, but it makes a new container version: every instance restarts at once.
    NewVersion,
    /// Cannot change after creation: a new group replaces the old one.
    Replace,
}

/// Compares the desired value with the observed one; when they differ, writes the change into
/// the patch (a [`Cost::Replace`] field writes nothing) and answers true.
pub type Reconcile =
    fn(&ContainerGroupPrototype, &ContainerGroup, &mut ContainerGroupPatch) -> bool;

/// One container-group field.
#[derive(Clone, Copy)]
pub struct Field {
    /// Its path in the API's JSON (`container.image`), as messages show it.
    pub name: &'static str,
    /// What a change costs.
    pub cost: Cost,
    /// Compare and patch.
    pub reconcile: Reconcile,
    /// Only whether the field is set counts in the revision, not its value.
    pub presence_only: bool,
    /// Absent, the field leaves the revision as it was before the field was declared: fields
    /// added later must not give every existing group a new revision (a rollout per resource
    /// when the operator is upgraded).
    pub omitted_when_absent: bool,
}

impl Field {
    /// Does the field count in the revision (a hash of what a new version or a new group needs)?
    pub fn in_revision(&self) -> bool {
        self.cost != Cost::InPlace
    }
}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Field")
            .field("name", &self.name)
            .field("cost", &self.cost)
            .finish()
    }
}

const fn field(name: &'static str, cost: Cost, reconcile: Reconcile) -> Field {
    Field {
        name,
        cost,
        reconcile,
        presence_only: false,
        omitted_when_absent: false,
    }
}

/// A field declared after revisions were first recorded ([`Field::omitted_when_absent`]).
const fn later(field: Field) -> Field {
    Field {
        omitted_when_absent: true,
        ..field
    }
}

/// A field whose presence alone is in the revision ([`Field::presence_only`]).
const fn presence(field: Field) -> Field {
    Field {
        presence_only: true,
        ..field
    }
}

/// Every field the operator manages, in the order messages list them.
pub const FIELDS: &[Field] = &[
    // Cannot change after creation.
    field("restart_policy", Cost::Replace, |w, h, _| {
        w.restart_policy != h.restart_policy
    }),
    field("networking", Cost::Replace, |w, h, _| {
        w.networking.is_some() != h.networking.is_some()
    }),
    field("networking.protocol", Cost::Replace, |w, h, _| {
        gateway(w, h).is_some_and(|(w, h)| w.protocol != h.protocol)
    }),
    field("networking.auth", Cost::Replace, |w, h, _| {
        gateway(w, h).is_some_and(|(w, h)| w.auth != h.auth)
    }),
    field("networking.load_balancer", Cost::Replace, |w, h, _| {
        gateway(w, h).is_some_and(|(w, h)| w.load_balancer.is_some_and(|lb| lb != h.load_balancer))
    }),
    field(
        "networking.single_connection_limit",
        Cost::Replace,
        |w, h, _| {
            gateway(w, h).is_some_and(|(w, h)| {
                w.single_connection_limit.is_some_and(|v| {
                    Some(v) != h.single_connection_limit
                        && (v || h.single_connection_limit.is_some())
                })
            })
        },
    ),
    field(
        "networking.client_request_timeout",
        Cost::Replace,
        |w, h, _| {
            gateway(w, h).is_some_and(|(w, h)| {
                w.client_request_timeout.is_some()
                    && w.client_request_timeout != h.client_request_timeout
            })
        },
    ),
    field(
        "networking.server_response_timeout",
        Cost::Replace,
        |w, h, _| {
            gateway(w, h).is_some_and(|(w, h)| {
                w.server_response_timeout.is_some()
                    && w.server_response_timeout != h.server_response_timeout
            })
        },
    ),
    // The queue connection is set only at creation.
    later(field("queue_connection", Cost::Replace, |w, h, _| {
        w.queue_connection != h.queue_connection
    })),
    // SaladCloud's patch cannot remove an autoscaler: adding or removing one makes a new group
    // (so that the revision tells groups with one from groups without); its settings are
    // patched in place.
    later(presence(field(
        "queue_autoscaler",
        Cost::Replace,
        |w, h, _| w.queue_autoscaler.is_some() != h.queue_autoscaler.is_some(),
    ))),
    // A new container version.
    field("networking.port", Cost::NewVersion, |w, h, p| {
        let differs = gateway(w, h).is_some_and(|(w, h)| w.port != h.port);
        if differs {
            p.networking = Some(UpdateNetworking {
                port: w.networking.as_ref().map(|n| n.port),
            });
        }
        differs
    }),
    field("container.image", Cost::NewVersion, |w, h, p| {
        let differs = w.container.image != h.container.image;
        if differs {
            let c = container(p);
            c.image = Some(w.container.image.clone());
            // The only time SaladCloud pulls: hand it the current pull credentials.
            c.registry_authentication = w.container.registry_authentication.clone();
        }
        differs
    }),
    field("container.command", Cost::NewVersion, |w, h, p| {
        let have = h.container.command.clone().filter(|c| !c.is_empty());
        let differs = w.container.command != have;
        if differs {
            container(p).command = w.container.command.clone().into();
        }
        differs
    }),
    field(
        "container.environment_variables",
        Cost::NewVersion,
        |w, h, p| {
            let differs = w.container.environment_variables != h.container.environment_variables;
            if differs {
                // Sent whole: merge patch merges maps, so a partial map would keep stale keys.
                container(p).environment_variables =
                    Some(w.container.environment_variables.clone());
            }
            differs
        },
    ),
    field("container.resources", Cost::NewVersion, |w, h, p| {
        let (wr, hr) = (&w.container.resources, &h.container.resources);
        let differs = wr.cpu != hr.cpu
            || wr.memory != hr.memory
            || wr.gpu_classes != hr.gpu_classes
            || (wr.storage_amount.is_some() && wr.storage_amount != hr.storage_amount)
            || (wr.shm_size.is_some() && wr.shm_size != hr.shm_size);
        if differs {
            container(p).resources = Some(UpdateResources {
                cpu: Some(wr.cpu),
                memory: Some(wr.memory),
                gpu_classes: Some(wr.gpu_classes.clone()),
                storage_amount: wr.storage_amount.map_or(Nullable::Absent, Nullable::Value),
                shm_size: wr.shm_size.map_or(Nullable::Absent, Nullable::Value),
            });
        }
        differs
    }),
    field("container.priority", Cost::NewVersion, |w, h, p| {
        let differs = w.container.priority.is_some() && w.container.priority != h.priority;
        if differs {
            container(p).priority = w.container.priority;
        }
        differs
    }),
    field("container.image_caching", Cost::NewVersion, |w, h, p| {
        let differs = matches!(
            (w.container.image_caching, h.container.image_caching),
            (Some(w), Some(h)) if w != h
        );
        if differs {
            container(p).image_caching = w.container.image_caching;
        }
        differs
    }),
    field("startup_probe", Cost::NewVersion, |w, h, p| {
        probe(&w.startup_probe, &h.startup_probe, &mut p.startup_probe)
    }),
    field("liveness_probe", Cost::NewVersion, |w, h, p| {
        probe(&w.liveness_probe, &h.liveness_probe, &mut p.liveness_probe)
    }),
    field("readiness_probe", Cost::NewVersion, |w, h, p| {
        probe(
            &w.readiness_probe,
            &h.readiness_probe,
            &mut p.readiness_probe,
        )
    }),
    // No restart.
    field("replicas", Cost::InPlace, |w, h, p| {
        let differs = w.replicas != h.replicas;
        if differs {
            p.replicas = Some(w.replicas);
        }
        differs
    }),
    field("country_codes", Cost::InPlace, |w, h, p| {
        let differs = w.country_codes != h.country_codes;
        if differs {
            p.country_codes = if w.country_codes.is_empty() {
                Nullable::Null
            } else {
                Nullable::Value(w.country_codes.clone())
            };
        }
        differs
    }),
    field("queue_autoscaler settings", Cost::InPlace, |w, h, p| {
        let differs = matches!(
            (&w.queue_autoscaler, &h.queue_autoscaler),
            (Some(w), Some(h)) if w != h
        );
        if differs {
            p.queue_autoscaler = w.queue_autoscaler.clone();
        }
        differs
    }),
    field("scaling-actions", Cost::InPlace, |w, h, p| {
        let differs = w.scaling_actions != h.scaling_actions;
        if differs {
            p.scaling_actions = Some(w.scaling_actions.clone());
        }
        differs
    }),
    field("scheduled-scaling-enabled", Cost::InPlace, |w, h, p| {
        let differs = w
            .scheduled_scaling_enabled
            .is_some_and(|v| v != h.scheduled_scaling_enabled);
        if differs {
            p.scheduled_scaling_enabled = w.scheduled_scaling_enabled;
        }
        differs
    }),
    field("display_name", Cost::InPlace, |w, h, p| {
        let differs = w
            .display_name
            .as_ref()
            .is_some_and(|n| *n != h.display_name);
        if differs {
            p.display_name = w.display_name.clone().into();
        }
        differs
    }),
];

/// Both gateways, when both exist (a gateway added or removed is the `networking` field).
fn gateway<'a>(
    w: &'a ContainerGroupPrototype,
    h: &'a ContainerGroup,
) -> Option<(
    &'a saladcloud::model::CreateNetworking,
    &'a saladcloud::model::ContainerGroupNetworking,
)> {
    w.networking.as_ref().zip(h.networking.as_ref())
}

fn container(p: &mut ContainerGroupPatch) -> &mut UpdateContainer {
    p.container.get_or_insert_with(UpdateContainer::default)
}

fn probe(want: &Option<Probe>, have: &Option<Probe>, slot: &mut Nullable<Probe>) -> bool {
    if want == have {
        return false;
    }
    *slot = match (want, have) {
        // Merge patch merges a probe into the old one; switching handler kinds (say exec to
        // http) would leave both set. Remove it first; the next reconcile sets the new one.
        (Some(w), Some(h)) if handler_kind(w) != handler_kind(h) => Nullable::Null,
        _ => want.clone().into(),
    };
    true
}

fn handler_kind(p: &Probe) -> u8 {
    u8::from(p.http.is_some())
        | u8::from(p.tcp.is_some()) << 1
        | u8::from(p.grpc.is_some()) << 2
        | u8::from(p.exec.is_some()) << 3
}
