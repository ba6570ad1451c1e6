//! Every reason the operator gives, in one vocabulary: condition reasons, Event reasons and the
//! error metric's label are these names, spelled as Kubernetes spells reasons (CamelCase).
//! Code compares reasons as values, never as strings.

use std::fmt;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// A reason (condition, Event, metric label).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( $(#[$doc])* $name, )*
        }

        impl Reason {
            /// Every reason, for documentation and tests.
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            /// The reason a condition read back from the API server carries.
            pub fn parse(s: &str) -> Option<Reason> {
                Self::ALL.iter().copied().find(|r| r.as_str() == s)
            }

            /// The reason as Kubernetes shows it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    // --- failures only a change fixes, or time fixes ---
    /// The spec does not pass validation.
    InvalidSpec,
    /// A Secret the spec names (or a key in it) does not exist.
    SecretMissing,
    /// A Secret could not be read just now.
    SecretUnavailable,
    /// A model or extension source answered with an error.
    ModelSourceFailed,
    /// A downloaded file does not match its pinned sha256.
    ModelChecksumMismatch,
    /// A model URL is refused by the source policy (http, private address).
    ModelSourceRefused,
    /// The image recipe cannot be built as written.
    InvalidImageRecipe,
    /// The registry refused the push credentials.
    RegistryAuthFailed,
    /// The registry did not answer or failed.
    RegistryUnavailable,
    /// The base image cannot be resolved.
    BaseImageUnavailable,
    /// A build failed for another reason.
    BuildFailed,
    /// SaladCloud refused a request as invalid (or over quota).
    SaladValidation,
    /// A GPU class name is not known to the organization.
    SaladGpuClassNotFound,
    /// The SaladCloud client is misconfigured.
    SaladConfig,
    /// SaladCloud could not be reached.
    SaladNetwork,
    /// SaladCloud answered something the client cannot read.
    SaladProtocol,
    /// A container group name was used before.
    SaladNameConflict,
    /// SaladCloud refused the API key.
    SaladAuth,
    /// SaladCloud does not know the organization, project or group.
    SaladNotFound,
    /// Over the API key's request budget.
    SaladRateLimited,
    /// SaladCloud failed (5xx).
    SaladUnavailable,
    /// Another SaladCloud error.
    SaladApiError,
    /// The requested resources are outside what a chosen GPU class allows.
    GpuClassLimits,
    /// A group with the fixed name exists and was not created by this resource.
    GroupNotOwned,
    /// A change needs a new group but the name is pinned.
    ReplacementNeedsNewName,
    /// The pinned name was used before.
    NameUnavailable,
    /// SaladCloud could not prepare the image for the group.
    ContainerGroupFailed,
    /// A Kubernetes API call failed.
    KubernetesApi,
    /// A Kubernetes object lacks its name, namespace or uid.
    Malformed,

    // --- work in progress ---
    /// The image build is queued.
    BuildQueued,
    /// The image is being built.
    Building,
    /// A change is being sent to SaladCloud.
    Updating,
    /// Waiting for instances of the target group.
    RolloutInProgress,
    /// Waiting for retired groups to go away.
    Retiring,
    /// The group is being stopped.
    Stopping,
    /// The resource's groups are being deleted.
    Deleting,

    // --- steady states ---
    /// Serving the desired state.
    Serving,
    /// Stopped on request.
    Stopped,
    /// The image for the current spec is in the registry.
    Built,
    /// The group matches the spec.
    InSync,
    /// Changes were sent to SaladCloud.
    Applying,
    /// No container group exists yet.
    NoContainerGroup,
    /// The group runs an earlier image until the current one is built.
    ImageNotReady,
    /// The resource no longer manages a group.
    Released,

    // --- events ---
    /// A build was started.
    BuildStarted,
    /// The image was built.
    ImageBuilt,
    /// A group was created.
    Created,
    /// A derived name was used before; the next one is chosen.
    NameTaken,
    /// A group was updated for a spec change.
    Updated,
    /// A change made outside the operator was reverted.
    DriftCorrected,
    /// A group was started.
    Started,
    /// A group was deleted.
    Deleted,
    /// The target group serves the desired state.
    RolloutComplete,
    /// The smoke test passed.
    SmokeTestPassed,
    /// The smoke test failed.
    SmokeTestFailed,
    /// Deleted without an API key: no group was ever recorded.
    ReleasedWithoutApiKey,
    // --- the fleet (SaladCloud system events and slow-node reallocation) ---
    /// The operator moved a slow-downloading instance to another node.
    SlowNodeReallocated,
    /// SaladCloud refused a reallocation (quota, rate limit); it is tried again later.
    ReallocationDeferred,
    /// SaladCloud: the node went away (offline, or taken by a higher-priority workload).
    InstanceInterrupted,
    /// SaladCloud: an instance was moved to another node (by SaladCloud, or by someone other than
    /// this operator).
    InstanceReallocated,
    /// SaladCloud: an instance failed its readiness probe.
    InstanceNotReady,
    /// SaladCloud: an instance failed its startup or liveness probe and was restarted.
    InstanceProbeFailed,
    /// SaladCloud: the container exited (a Warning unless with code 0).
    InstanceExited,
    /// SaladCloud: a container runs, or an instance is ready again.
    InstanceStarted,
    /// SaladCloud: another system event.
    InstanceEvent,
    // --- scaling and the job queue ---
    /// The job queue was created.
    QueueCreated,
    /// The job queue was deleted.
    QueueDeleted,
    /// Serving through the queue with no instance running (the autoscaler is at 0).
    IdleAtZero,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The reason of a SaladCloud client error: the same names as [`saladcloud::Error::category`]
/// (a test holds them together), as values.
pub fn of_salad_error(e: &saladcloud::Error) -> Reason {
    use saladcloud::Error::*;
    match e {
        InvalidName { .. } => Reason::SaladValidation,
        GpuClassNotFound { .. } => Reason::SaladGpuClassNotFound,
        Config(_) => Reason::SaladConfig,
        Timeout { .. } | Network { .. } => Reason::SaladNetwork,
        Decode { .. } => Reason::SaladProtocol,
        Api { status, .. } => match status {
            400 if e.is_name_conflict() => Reason::SaladNameConflict,
            400 | 422 => Reason::SaladValidation,
            401 | 403 => Reason::SaladAuth,
            404 => Reason::SaladNotFound,
            408 => Reason::SaladNetwork,
            429 => Reason::SaladRateLimited,
            500..=599 => Reason::SaladUnavailable,
            _ => Reason::SaladApiError,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn salad_errors_have_the_reason_their_category_names() {
        let api = |status: u16, problem: Option<&str>| saladcloud::Error::Api {
            operation: "op",
            method: http::Method::POST,
            status,
            problem: problem.map(|t| {
                Box::new(saladcloud::model::ProblemDetails {
                    type_: Some(t.into()),
                    ..Default::default()
                })
            }),
            snippet: String::new(),
            retry_after: None,
        };
        let errors = [
            api(400, Some("https://docs.salad.com/errors/name_conflict")),
            api(400, None),
            api(422, None),
            api(401, None),
            api(403, None),
            api(404, None),
            api(408, None),
            api(429, None),
            api(503, None),
            api(418, None),
            saladcloud::Error::Config("x".into()),
        ];
        for e in &errors {
            assert_eq!(of_salad_error(e).as_str(), e.category(), "{e}");
            assert_eq!(Reason::parse(e.category()), Some(of_salad_error(e)));
        }
    }

    #[test]
    fn every_reason_is_camel_case_and_unique() {
        let names: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        for n in names {
            assert!(n.chars().next().unwrap().is_ascii_uppercase(), "{n}");
            assert!(n.chars().all(|c| c.is_ascii_alphanumeric()), "{n}");
        }
    }
}
