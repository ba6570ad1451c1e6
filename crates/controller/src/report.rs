//! From what happened to `status`: conditions (kstatus-compatible, with observedGeneration and
//! transition times kept when nothing changed), phase, summaries. Pure: `now` is passed in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use salad_sd_api::{
    ContainerGroupStatus, ImageStatus, InstanceCounts, Phase, StableDiffusionDeploymentStatus,
};
use saladcloud::model::ContainerGroup;

use crate::diff::ready_instances;
use crate::plan::{ObservedGroup, Outcome};

/// The condition types we write.
pub const READY: &str = "Ready";
/// kstatus: work in progress.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: stuck until the spec changes.
pub const STALLED: &str = "Stalled";
/// The image for the current recipe exists.
pub const IMAGE_READY: &str = "ImageReady";
/// The container group matches the spec.
pub const SYNCED: &str = "Synced";

/// A condition before times are settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Type.
    pub type_: String,
    /// True / False / Unknown.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// For humans.
    pub message: String,
}

impl Cond {
    /// A condition.
    pub fn new(
        type_: &str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Conditions with `observedGeneration`, keeping `lastTransitionTime` of a condition whose status
/// did not change.
pub fn merge_conditions(
    previous: &[Condition],
    new: Vec<Cond>,
    generation: i64,
    now: Time,
) -> Vec<Condition> {
    new.into_iter()
        .map(|c| {
            let old = previous.iter().find(|p| p.type_ == c.type_);
            let last_transition_time = match old {
                Some(o) if o.status == c.status => o.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: c.type_,
                status: c.status,
                reason: c.reason,
                message: c.message,
                observed_generation: Some(generation),
                last_transition_time,
            }
        })
        .collect()
}

/// Two statuses equal but for condition times: no write needed.
pub fn same_ignoring_times(
    a: &StableDiffusionDeploymentStatus,
    b: &StableDiffusionDeploymentStatus,
) -> bool {
    let strip = |s: &StableDiffusionDeploymentStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

/// A group as status shows it.
pub fn group_status(g: &ObservedGroup) -> ContainerGroupStatus {
    let group: &ContainerGroup = &g.group;
    let counts = group.current_state.instance_status_counts;
    ContainerGroupStatus {
        name: group.name.clone(),
        id: Some(group.id.clone()).filter(|s| !s.is_empty()),
        version: Some(group.version as i32),
        state: Some(format!("{:?}", group.current_state.status).to_ascii_lowercase()),
        pending_change: group.pending_change,
        instances: InstanceCounts {
            allocating: counts.allocating_count as i32,
            creating: counts.creating_count as i32,
            running: counts.running_count as i32,
            ready: ready_instances(group, g.instances.as_deref()) as i32,
            stopping: counts.stopping_count as i32,
        },
        access_url: group
            .networking
            .as_ref()
            .filter(|n| !n.dns.is_empty())
            .map(|n| format!("https://{}", n.dns)),
    }
}

/// The image part of status.
pub fn image_status(
    image: Option<&salad_sd_image::BuiltImage>,
    building: Option<salad_sd_api::BuildStatus>,
) -> Option<ImageStatus> {
    if image.is_none() && building.is_none() {
        return None;
    }
    let mut s = ImageStatus {
        build: building,
        ..ImageStatus::default()
    };
    if let Some(img) = image {
        s.reference = Some(img.reference.clone());
        s.short_digest = Some(
            img.digest
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect(),
        );
        s.recipe_hash = Some(img.recipe_hash.clone());
        s.layers = img
            .layers
            .iter()
            .map(|l| salad_sd_api::LayerStatus {
                name: l.name.clone(),
                digest: l.digest.clone(),
                size: l.size as i64,
                sha256: Some(l.file_sha256.clone()),
            })
            .collect();
    }
    Some(s)
}

/// Phase and the three kstatus conditions from a plan outcome.
pub fn phase_and_conditions(
    outcome: &Outcome,
    image_ready: bool,
    created_yet: bool,
    rolling: bool,
    deleting: bool,
) -> (Phase, Vec<Cond>) {
    let (phase, ready, reconciling, stalled) = match outcome {
        Outcome::Converged => (
            Phase::Running,
            Cond::new(READY, true, "Serving", "serving the desired state"),
            None,
            None,
        ),
        Outcome::Stopped => (
            Phase::Stopped,
            // Stopped is the desired state: kstatus (Flux `wait: true`) sees it as Current.
            Cond::new(READY, true, "Stopped", "stopped on request (spec.stopped)"),
            None,
            None,
        ),
        Outcome::Released => (
            Phase::Deleting,
            Cond::new(READY, false, "Deleting", "deleted"),
            None,
            None,
        ),
        Outcome::Progressing { reason, message } => {
            let phase = if deleting {
                Phase::Deleting
            } else if !image_ready {
                Phase::Building
            } else if !created_yet {
                Phase::Deploying
            } else if rolling {
                Phase::Updating
            } else {
                Phase::Deploying
            };
            (
                phase,
                Cond::new(READY, false, *reason, message.clone()),
                Some(Cond::new(RECONCILING, true, *reason, message.clone())),
                None,
            )
        }
        Outcome::Stalled { reason, message } => (
            Phase::Failed,
            Cond::new(READY, false, *reason, message.clone()),
            None,
            Some(Cond::new(STALLED, true, *reason, message.clone())),
        ),
    };
    let mut conds = vec![ready];
    conds.extend(reconciling);
    conds.extend(stalled);
    (phase, conds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = merge_conditions(
            &[],
            vec![Cond::new(READY, false, "Building", "building")],
            1,
            t(100),
        );
        let same = merge_conditions(
            &first,
            vec![Cond::new(READY, false, "Deploying", "creating")],
            2,
            t(200),
        );
        assert_eq!(
            same[0].last_transition_time,
            t(100),
            "False → False keeps the time"
        );
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge_conditions(
            &same,
            vec![Cond::new(READY, true, "Serving", "ok")],
            2,
            t(300),
        );
        assert_eq!(flipped[0].last_transition_time, t(300));
    }

    #[test]
    fn statuses_differing_only_in_times_need_no_write() {
        let a = StableDiffusionDeploymentStatus {
            conditions: merge_conditions(
                &[],
                vec![Cond::new(READY, true, "Serving", "ok")],
                1,
                t(1),
            ),
            ..Default::default()
        };
        let mut b = a.clone();
        b.conditions[0].last_transition_time = t(2);
        assert!(same_ignoring_times(&a, &b));
        b.ready_replicas = 1;
        assert!(!same_ignoring_times(&a, &b));
    }

    #[test]
    fn stalled_is_failed_and_not_reconciling() {
        let (phase, conds) = phase_and_conditions(
            &Outcome::Stalled {
                reason: "InvalidSpec",
                message: "fix it".into(),
            },
            false,
            false,
            false,
            false,
        );
        assert_eq!(phase, Phase::Failed);
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == STALLED && c.status == "True")
        );
        assert!(!conds.iter().any(|c| c.type_ == RECONCILING));
    }
}
