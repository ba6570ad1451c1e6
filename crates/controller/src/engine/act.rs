//! Act: one planned action against SaladCloud (or the build queue), as Events or one
//! [`Failure`].

use saladcloud::Deleted;

use super::{Engine, Event, World};
use crate::diff::revision;
use crate::failure::Failure;
use crate::plan::{Action, DeleteReason, PatchReason};

impl Engine {
    /// Carries out `action`.
    pub(super) async fn act(
        &self,
        world: &World,
        uid: &str,
        action: &Action,
    ) -> Result<Vec<Event>, Failure> {
        let s = &world.scope;
        let (client, org, project) = (&s.client, s.org.as_str(), s.project.as_str());
        let event = match action {
            Action::Build => {
                let repository = &world.repository;
                self.builds.start(
                    repository,
                    world.recipe.clone(),
                    world.secrets.push_credentials.clone(),
                );
                Event::normal(
                    "BuildStarted",
                    format!("building the image into {repository}"),
                )
            }
            Action::Create { group } => {
                match client.create_container_group(org, project, group).await {
                    Ok(g) => Event::normal(
                        "Created",
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
                            "NameTaken",
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
                }
            }
            Action::Patch {
                name,
                patch,
                fields,
                reason,
            } => {
                client
                    .update_container_group(org, project, name, patch)
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                let (r, verb) = match reason {
                    PatchReason::Drift => ("DriftCorrected", "corrected drift in"),
                    PatchReason::SpecChange => ("Updated", "updated"),
                };
                Event::normal(
                    r,
                    format!("{verb} container group `{name}`: {}", fields.join(", ")),
                )
            }
            Action::Start { name } => {
                client
                    .start_container_group(org, project, name)
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                Event::normal("Started", format!("started container group `{name}`"))
            }
            Action::Stop { name } => {
                client
                    .stop_container_group(org, project, name)
                    .await
                    .map_err(|e| Failure::from(e).context(&action.describe()))?;
                Event::normal(
                    "Stopped",
                    format!("stopped container group `{name}` (no instances, no GPU billing)"),
                )
            }
            Action::Delete { name, reason } => {
                let gone = client
                    .delete_container_group(org, project, name)
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
                    "Deleted",
                    format!("deleting container group `{name}`: {why}"),
                )
            }
        };
        Ok(vec![event])
    }
}
