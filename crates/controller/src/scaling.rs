//! Who owns the replica count, and the job queue, as status reports them. Pure: the owner and
//! the queue come from the spec ([`salad_sd_api::scaling`] has the precedence), the counts from
//! the observed groups and queue; [`crate::report`] writes what this returns.

use salad_sd_api::{
    QueueStatus, ReplicasOwner, ScalingStatus, StableDiffusionDeploymentSpec,
    StableDiffusionDeploymentStatus,
};

use crate::plan::ObservedQueue;

/// What the decision knows of scaling, for the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScalingFacts {
    /// Who sets the replica count.
    pub owner: ReplicasOwner,
    /// spec.replicas.
    pub spec_replicas: i32,
    /// The autoscaler's bounds, when it owns the count.
    pub bounds: Option<(i32, i32)>,
    /// Scheduled actions.
    pub scheduled_actions: usize,
    /// The queue, in queue mode (or while one is left to delete).
    pub queue: Option<QueueFacts>,
}

/// The queue as status shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueFacts {
    /// Its name.
    pub name: String,
    /// It exists on SaladCloud.
    pub exists: bool,
    /// Jobs waiting.
    pub length: Option<u32>,
    /// `POST {path}` on port {port}.
    pub job_path: String,
    /// The resource's name, for the submit hint.
    pub resource: String,
}

/// The facts, from the spec and the observed queue.
pub fn facts(
    spec: &StableDiffusionDeploymentSpec,
    resource: &str,
    queue_name: Option<&str>,
    observed: Option<&ObservedQueue>,
) -> ScalingFacts {
    let owner = spec.replicas_owner();
    ScalingFacts {
        owner,
        spec_replicas: spec.replicas,
        bounds: spec
            .queue
            .autoscaler
            .as_ref()
            .filter(|_| owner == ReplicasOwner::QueueAutoscaler)
            .map(|a| (a.min_replicas, a.max_replicas)),
        scheduled_actions: spec.scaling.schedule.len(),
        queue: queue_name.map(|name| QueueFacts {
            name: name.to_string(),
            exists: observed.is_some(),
            length: observed.and_then(|q| q.length),
            job_path: format!(
                "POST {} on port {}",
                spec.queue_job_path().unwrap_or_default(),
                spec.queue_port()
            ),
            resource: resource.to_string(),
        }),
    }
}

/// `status.scaling` and `status.queue`. `replicas` is what SaladCloud holds for the serving
/// group; `applied` says whether this reconcile applied spec.replicas (no failure).
pub fn status(
    f: &ScalingFacts,
    prev: &StableDiffusionDeploymentStatus,
    replicas: u32,
    applied: bool,
) -> (Option<ScalingStatus>, Option<QueueStatus>) {
    let queue = f.queue.as_ref().filter(|q| q.exists).map(|q| QueueStatus {
        name: q.name.clone(),
        length: q.length.map(rounded),
        job_path: q.job_path.clone(),
        submit: format!(
            "salad-sd submit {} --prompt '…' (or POST a job to SaladCloud's queue `{}`)",
            q.resource, q.name
        ),
    });
    if f.owner == ReplicasOwner::Spec && f.queue.is_none() {
        return (None, queue);
    }
    let spec_replicas_applied = match f.owner {
        ReplicasOwner::Schedule if applied => Some(f.spec_replicas),
        ReplicasOwner::Schedule => prev.scaling.as_ref().and_then(|s| s.spec_replicas_applied),
        _ => None,
    };
    let message = match (f.owner, f.bounds) {
        (ReplicasOwner::QueueAutoscaler, Some((min, max))) => format!(
            "SaladCloud's queue autoscaler sets replicas ({min}-{max}) by queue length; spec.replicas \
             ({}) is not applied: change spec.queue.autoscaler to scale",
            f.spec_replicas
        ),
        (ReplicasOwner::Schedule, _) => format!(
            "{} scheduled action(s) set replicas (UTC); a change of spec.replicas is applied once \
             and holds until the next action",
            f.scheduled_actions
        ),
        _ => "spec.replicas sets the replica count".to_string(),
    };
    (
        Some(ScalingStatus {
            owner: f.owner,
            replicas: replicas as i32,
            spec_replicas_applied,
            message,
        }),
        queue,
    )
}

/// A queue length in steps, so that status is not rewritten for every job: exact below 10,
/// then to the ten below, then to the hundred below.
pub fn rounded(length: u32) -> i32 {
    let l = length.min(i32::MAX as u32);
    (match l {
        0..10 => l,
        10..100 => l / 10 * 10,
        _ => l / 100 * 100,
    }) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_length_moves_in_steps() {
        assert_eq!(
            [0, 9, 10, 19, 99, 100, 1234].map(rounded),
            [0, 9, 10, 10, 90, 100, 1200]
        );
    }

    #[test]
    fn a_schedule_records_the_applied_spec_replicas_only_when_applied() {
        let f = ScalingFacts {
            owner: ReplicasOwner::Schedule,
            spec_replicas: 4,
            scheduled_actions: 2,
            ..Default::default()
        };
        let mut prev = StableDiffusionDeploymentStatus::default();
        let (s, q) = status(&f, &prev, 7, true);
        let s = s.unwrap();
        assert_eq!(
            (s.owner, s.replicas, s.spec_replicas_applied),
            (ReplicasOwner::Schedule, 7, Some(4))
        );
        assert!(q.is_none());
        prev.scaling = Some(ScalingStatus {
            spec_replicas_applied: Some(3),
            ..s
        });
        let (s, _) = status(&f, &prev, 7, false);
        assert_eq!(
            s.unwrap().spec_replicas_applied,
            Some(3),
            "a failed apply keeps the old value"
        );
    }

    #[test]
    fn the_spec_owning_replicas_without_a_queue_adds_nothing_to_status() {
        let f = ScalingFacts::default();
        assert_eq!(
            status(&f, &StableDiffusionDeploymentStatus::default(), 3, true),
            (None, None)
        );
    }
}
