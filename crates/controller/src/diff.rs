//! Desired container group versus the one SaladCloud reports: which fields differ, of which
//! kind, and the merge patch that fixes the ones that can be fixed in place.

use saladcloud::model::{
    self as salad, ContainerGroup, ContainerGroupPatch, ContainerGroupPrototype,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[cfg(doc)]
use crate::fields::Field;
use crate::fields::{Cost, FIELDS};

/// Environment variable holding the revision (hash of the container definition) a group was
/// created or last patched for. How a BlueGreen rollout tells "the new group" from "the old one",
/// and drift from a spec change, without remembering anything.
pub const REVISION_ENV: &str = "SALAD_SD_REVISION";

/// The revision of a definition: a hash of every field whose change makes a new container
/// version or a new group ([`Field::in_revision`]), not of those patched in place (replicas,
/// countries, display name). Pull credentials are left out: SaladCloud does not return them,
/// and they are re-sent with every image change.
pub fn revision(proto: &ContainerGroupPrototype) -> String {
    let mut proto = proto.clone();
    proto.container.environment_variables.remove(REVISION_ENV);
    proto.container.registry_authentication = None;
    let all = serde_json::to_value(&proto).expect("a prototype serializes");
    let mut doc = serde_json::Map::new();
    let has_subfields = |parent: &str| {
        FIELDS
            .iter()
            .any(|f| f.in_revision() && f.name.split_once('.').is_some_and(|(p, _)| p == parent))
    };
    for f in FIELDS.iter().filter(|f| f.in_revision()) {
        let (parent, key) = match f.name.split_once('.') {
            Some((parent, key)) => (parent, Some(key)),
            None => (f.name, None),
        };
        // An absent object counts as null, whichever of its fields asks.
        let Some(present) = all.get(parent).filter(|v| !v.is_null()) else {
            if !f.omitted_when_absent {
                doc.insert(parent.into(), Value::Null);
            }
            continue;
        };
        let object = || Value::Object(serde_json::Map::new());
        match key {
            Some(key) => {
                if let (Value::Object(slot), Some(value)) =
                    (doc.entry(parent).or_insert_with(object), present.get(key))
                {
                    slot.insert(key.into(), value.clone());
                }
            }
            None if has_subfields(parent) || f.presence_only => {
                doc.entry(parent).or_insert_with(object);
            }
            None => {
                doc.insert(parent.into(), present.clone());
            }
        }
    }
    hex::encode(Sha256::digest(Value::Object(doc).to_string().as_bytes()))[..12].to_string()
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

/// Compares `desired` (with its name and image set) to `observed`, field by field as
/// [`FIELDS`] declares them.
pub fn diff(desired: &ContainerGroupPrototype, observed: &ContainerGroup) -> GroupDiff {
    let mut d = GroupDiff::default();
    for f in FIELDS {
        if (f.reconcile)(desired, observed, &mut d.patch) {
            match f.cost {
                Cost::Replace => d.immutable.push(f.name),
                Cost::NewVersion => d.versioned.push(f.name),
                Cost::InPlace => d.unversioned.push(f.name),
            }
        }
    }
    d
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{GpuChoice, group_definition};
    use crate::testing::{resolved_secrets, spec_from_yaml};

    /// The revision as it was computed before the field table, by hand. Groups created by an
    /// older operator carry it: if it moved, every BlueGreen resource would get a new group on
    /// upgrade.
    fn legacy_revision(proto: &ContainerGroupPrototype) -> String {
        let mut container = proto.container.clone();
        container.environment_variables.remove(REVISION_ENV);
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

    const EXAMPLES: [&str; 2] = [
        include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml"),
        include_str!("../../../manifests/examples/sdxl-lora.yaml"),
    ];

    #[test]
    fn the_field_table_keeps_the_revisions_groups_already_carry() {
        let gpu = GpuChoice {
            ids: vec!["cb6c1931-89b6-4f76-976f-54047320ccc6".into()],
            hourly_price: None,
        };
        let mut checked = 0;
        for yaml in EXAMPLES {
            let sdd = spec_from_yaml(yaml);
            let base =
                group_definition(&sdd.spec, "uid", "r/i@sha256:1", &gpu, &resolved_secrets());
            let mut variants = vec![base.clone()];
            let mut v = base.clone();
            v.networking = None;
            v.readiness_probe = None;
            variants.push(v);
            let mut v = base.clone();
            v.container.command = Some(vec!["/bin/sh".into(), "-c".into(), "serve".into()]);
            v.container.resources.storage_amount = Some(50 << 30);
            v.container.resources.shm_size = Some(2048);
            v.country_codes = vec!["us".into()];
            v.replicas = 7;
            v.display_name = Some("Shown".into());
            v.container
                .environment_variables
                .insert(REVISION_ENV.into(), "old".into());
            variants.push(v);
            for p in &variants {
                assert_eq!(revision(p), legacy_revision(p), "{:?}", p.name);
                checked += 1;
            }
        }
        assert_eq!(checked, 6);
    }

    #[test]
    fn in_place_fields_stay_out_of_the_revision_and_the_others_count() {
        let sdd = spec_from_yaml(EXAMPLES[0]);
        let gpu = GpuChoice {
            ids: vec![],
            hourly_price: None,
        };
        let base = group_definition(&sdd.spec, "uid", "r/i@sha256:1", &gpu, &resolved_secrets());
        let mut same = base.clone();
        same.replicas += 1;
        same.country_codes = vec!["de".into()];
        same.display_name = Some("Other".into());
        assert_eq!(
            revision(&base),
            revision(&same),
            "replicas, countries, display name"
        );
        let mut other = base.clone();
        other.container.image = "r/i@sha256:2".into();
        assert_ne!(revision(&base), revision(&other), "the image");
        let mut other = base.clone();
        other.networking.as_mut().unwrap().auth = true;
        assert_ne!(revision(&base), revision(&other), "the gateway's auth");
    }

    #[test]
    fn each_field_is_diffed_with_the_cost_it_declares() {
        let sdd = spec_from_yaml(EXAMPLES[0]);
        let gpu = GpuChoice {
            ids: vec![],
            hourly_price: None,
        };
        let want = group_definition(&sdd.spec, "uid", "r/i@sha256:1", &gpu, &resolved_secrets());
        let have = crate::fake::group_from(&want);
        assert!(diff(&want, &have).is_empty(), "{:?}", diff(&want, &have));
        type Edit = fn(&mut ContainerGroup);
        let cases: [(&str, Cost, Edit); 5] = [
            ("replicas", Cost::InPlace, |g| g.replicas = 9),
            ("container.image", Cost::NewVersion, |g| {
                g.container.image = "x".into()
            }),
            ("container.resources", Cost::NewVersion, |g| {
                g.container.resources.cpu = 9
            }),
            ("restart_policy", Cost::Replace, |g| {
                g.restart_policy = salad::RestartPolicy::Never
            }),
            ("networking.auth", Cost::Replace, |g| {
                g.networking.as_mut().unwrap().auth = true
            }),
        ];
        for (name, cost, edit) in cases {
            let mut h = have.clone();
            edit(&mut h);
            let d = diff(&want, &h);
            assert_eq!(d.fields(), vec![name], "{name}");
            let listed = match cost {
                Cost::InPlace => &d.unversioned,
                Cost::NewVersion => &d.versioned,
                Cost::Replace => &d.immutable,
            };
            assert_eq!(listed, &vec![name], "{name}");
            assert_eq!(
                d.patch.is_empty(),
                cost == Cost::Replace,
                "{name}: {:?}",
                d.patch
            );
        }
    }
}
