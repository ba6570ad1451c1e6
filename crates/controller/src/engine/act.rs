//! Act: one planned action against SaladCloud (or the build queue), as Events or one
//! [`Failure`].

use saladcloud::Deleted;

use super::{Engine, Event};
use crate::decide::Facts;
use crate::diff::revision;
use crate::failure::Failure;
use crate::fleet::Reallocation;
use crate::plan::{Action, DeleteReason, PatchReason};
use crate::reason::Reason;
use crate::salad::ContainerGroups;

/// What an action needs besides itself.
pub(super) struct Hands<'a> {
    /// The resource's SaladCloud project.
    pub scope: &'a dyn ContainerGroups,
    /// The facts (push credentials, the recipe).
    pub facts: &'a Facts,
    /// Where the image goes.
    pub repository: &'a str,
    /// `namespace/name` of the resource, for what SaladCloud shows.
    pub resource: &'a str,
}

impl Engine {
    /// Carries out `action`.
    pub(super) async fn act(
        &self,
        hands: &Hands<'_>,
        uid: &str,
        action: &Action,
    ) -> Result<Vec<Event>, Failure> {
        let client = hands.scope;
        let event = match action {
            Action::Build => {
                let repository = hands.repository;
                let Some(recipe) = hands.facts.recipe.clone() else {
                    return Ok(Vec::new());
                };
                self.builds.start(
                    repository,
                    recipe,
                    hands.facts.secrets.push_credentials.clone(),
                );
                Event::normal(
                    Reason::BuildStarted,
                    format!("building the image into {repository}"),
                )
            }
            Action::Create { group } => match client.create(group).await {
                Ok(g) => Event::normal(
                    Reason::Created,
                    format!(
                        "created container group `{}` (image {}, revision {})",
                        g.name,
                        group.container.image,
                        revision(group)
                    ),
                ),
                Err(e) if e.is_name_conflict() => {
                    self.remember(uid, |m| m.burned.insert(group.name.clone()));
                    Event::normal(
                        Reason::NameTaken,
                        format!(
                            "container group name `{}` was used before (names are never \
                                 reusable); choosing the next one",
                            group.name
                        ),
                    )
                }
                Err(e) => {
                    return Err(Failure::from(e).context(&action.describe()));
                }
            },
            Action::Patch {
                name,
                patch,
                fields,
                reason,
            } => {
                client
                    .update(name, patch)
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                let (r, verb) = match reason {
                    PatchReason::Drift => (Reason::DriftCorrected, "corrected drift in"),
                    PatchReason::SpecChange => (Reason::Updated, "updated"),
                };
                Event::normal(
                    r,
                    format!("{verb} container group `{name}`: {}", fields.join(", ")),
                )
            }
            Action::Start { name } => {
                client
                    .start(name)
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                Event::normal(Reason::Started, format!("started container group `{name}`"))
            }
            Action::Stop { name } => {
                client
                    .stop(name)
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                Event::normal(
                    Reason::Stopped,
                    format!("stopped container group `{name}` (no instances, no GPU billing)"),
                )
            }
            Action::Delete { name, reason } => {
                let gone = client
                    .delete(name)
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                let first = self.remember(uid, |m| m.deleted.insert(name.clone()));
                if gone != Deleted::Accepted || !first {
                    return Ok(Vec::new());
                }
                let why = match reason {
                    DeleteReason::Retired => "it was replaced",
                    DeleteReason::Cleanup => "the resource is being deleted",
                };
                Event::normal(
                    Reason::Deleted,
                    format!("deleting container group `{name}`: {why}"),
                )
            }
            Action::CreateQueue { name } => {
                client
                    .create_queue(name, &format!("job queue of {}", hands.resource))
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                Event::normal(Reason::QueueCreated, format!("created job queue `{name}`"))
            }
            Action::DeleteQueue { name, reason } => {
                let gone = client
                    .delete_queue(name)
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                if gone != Deleted::Accepted {
                    return Ok(Vec::new());
                }
                let why = match reason {
                    DeleteReason::Retired => "queue mode is off and no container group uses it",
                    DeleteReason::Cleanup => "the resource is being deleted",
                };
                Event::normal(
                    Reason::QueueDeleted,
                    format!("deleted job queue `{name}`: {why}"),
                )
            }
        };
        Ok(vec![event])
    }
}

/// A refused reallocation waits this long before the next try.
const REALLOCATION_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl Engine {
    /// Reallocates the slow nodes [`crate::fleet::decide`] chose, one at a time. A refusal (the
    /// per-minute quota, a rate limit) is remembered, announced once, and not tried again for a
    /// minute; it does not fail the reconcile, since the group itself is fine.
    pub(super) async fn reallocate(
        &self,
        scope: &dyn ContainerGroups,
        uid: &str,
        chosen: &[Reallocation],
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for r in chosen {
            let now = jiff::Timestamp::now();
            match scope.reallocate(&r.group, &r.instance).await {
                Ok(()) => {
                    self.remember(uid, |m| {
                        m.fleet.recent.push((r.instance.clone(), now));
                        m.fleet
                            .recent
                            .retain(|(_, t)| now.duration_since(*t).as_secs() < 600);
                    });
                    events.push(Event::normal(
                        Reason::SlowNodeReallocated,
                        format!("reallocated {}", r.why),
                    ));
                }
                Err(e) => {
                    let until = now
                        + jiff::SignedDuration::try_from(REALLOCATION_RETRY).unwrap_or_default();
                    let why = e.to_string();
                    let first = self.remember(uid, |m| {
                        let first = m.fleet.blocked.is_none();
                        m.fleet.blocked = Some((until, why.clone()));
                        first
                    });
                    if first {
                        events.push(Event::warning(
                            Reason::ReallocationDeferred,
                            format!(
                                "SaladCloud refused to reallocate instance {} of `{}`: {why}; trying again in a minute",
                                r.instance, r.group
                            ),
                        ));
                    }
                    break;
                }
            }
        }
        events
    }
}
