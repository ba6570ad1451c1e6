//! Act: one planned action against SaladCloud (or the build queue), as Events or one
//! [`Failure`].

use saladcloud::Deleted;

use super::{Engine, Event};
use crate::decide::Facts;
use crate::diff::revision;
use crate::failure::Failure;
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
        };
        Ok(vec![event])
    }
}
